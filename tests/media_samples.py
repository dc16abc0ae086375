"""Small real media files, built in memory (tests/fakes/media_server.py serves them).

Each format function returns the bytes of a file of the given duration. Only what a container parser reads
is real (headers, indexes, frame headers, page checksums); the coded samples are filler, so the files are
tiny and no binary is checked in. `filler` (mp4) and `packet_size` (opus) make a file larger than the
preflight's head and tail windows.
"""

from __future__ import annotations

import io
import math
import struct
import wave

# -- WAV --------------------------------------------------------------------------------------------


def wav(seconds: float, rate: int = 8000) -> bytes:
    """16-bit mono PCM silence; the duration is the data size over the byte rate."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * round(seconds * rate))
    return out.getvalue()


# -- MP4 / MOV / M4A (ISO base media file format) ---------------------------------------------------

_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


def _trak(track_id: int, video: bool, seconds: float, movie_scale: int, listed: bool) -> bytes:
    # Video: 25 frames/s, timescale 12800. Audio: AAC frames of 1024 samples at 44.1 kHz.
    scale, delta = (12800, 512) if video else (44100, 1024)
    count = math.ceil(seconds * scale / delta)
    media_duration = count * delta
    tkhd = _full(
        b"tkhd",
        0,
        3,
        struct.pack(">IIIII", 0, 0, track_id, 0, round(media_duration * movie_scale / scale)),
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0 if video else 0x100, 0),
        _MATRIX,
        struct.pack(">II", (320 << 16) if video else 0, (240 << 16) if video else 0),
    )
    mdhd = _full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, scale, media_duration, 0x55C4, 0))
    handler = b"vide" if video else b"soun"
    hdlr = _full(b"hdlr", 0, 0, struct.pack(">I4s", 0, handler), bytes(12), b"filler\x00")
    if video:
        entry = _box(
            b"avc1",
            bytes(6),
            struct.pack(">H", 1),
            bytes(16),
            struct.pack(">HHII", 320, 240, 0x480000, 0x480000),
            bytes(4),
            struct.pack(">H", 1),
            bytes(32),
            struct.pack(">Hh", 0x18, -1),
        )
        header = _full(b"vmhd", 0, 1, bytes(8))
    else:
        entry = _box(
            b"mp4a",
            bytes(6),
            struct.pack(">H", 1),
            bytes(8),
            struct.pack(">HHHHI", 2, 16, 0, 0, 44100 << 16),
        )
        header = _full(b"smhd", 0, 0, bytes(4))
    stbl = _box(
        b"stbl",
        _full(b"stsd", 0, 0, struct.pack(">I", 1), entry),
        _full(b"stts", 0, 0, struct.pack(">III", 1, count, delta)),
        _full(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, count, 1)),
        # Every sample 1 byte: said once, or listed per sample as encoders write it (4 bytes a sample).
        _full(b"stsz", 0, 0, struct.pack(">II", 0, count) + struct.pack(">I", 1) * count)
        if listed
        else _full(b"stsz", 0, 0, struct.pack(">II", 1, count)),
        _full(b"stco", 0, 0, struct.pack(">II", 1, 0)),
    )
    dinf = _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))
    minf = _box(b"minf", header, dinf, stbl)
    return _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf))


def _moov(seconds: float, video: bool, audio: bool, listed: bool) -> bytes:
    scale = 1000
    duration = round(seconds * scale)
    mvhd = _full(
        b"mvhd",
        0,
        0,
        struct.pack(">IIIIIH", 0, 0, scale, duration, 0x10000, 0x100),
        bytes(10),
        _MATRIX,
        bytes(24),
        struct.pack(">I", 3),
    )
    tracks = []
    if video:
        tracks.append(_trak(1, True, seconds, scale, listed))
    if audio:
        tracks.append(_trak(2, False, seconds, scale, listed))
    return _box(b"moov", mvhd, *tracks)


def mp4(
    seconds: float,
    *,
    moov_at_end: bool = False,
    filler: int = 4096,
    video: bool = True,
    audio: bool = True,
    brand: bytes = b"isom",
    listed_sizes: bool = False,
) -> bytes:
    """An MP4 (or, by brand, MOV / M4A) with `filler` bytes of sample data.

    `moov_at_end` puts the index after the data, as many encoders do unless asked for "fast start": a
    reader then needs the end of the file. `listed_sizes` makes the index as large as a real one (a
    10-minute video's is ~160 KB).
    """
    ftyp = _box(b"ftyp", brand, struct.pack(">I", 0x200), brand, b"isom", b"mp41")
    mdat = _box(b"mdat", bytes(filler))
    moov = _moov(seconds, video, audio, listed_sizes)
    return ftyp + mdat + moov if moov_at_end else ftyp + moov + mdat


def mov(seconds: float, **options: bool | int) -> bytes:
    return mp4(seconds, brand=b"qt  ", **options)  # type: ignore[arg-type]


def m4a(seconds: float, **options: bool | int) -> bytes:
    return mp4(seconds, brand=b"M4A ", video=False, **options)  # type: ignore[arg-type]


# -- MP3 --------------------------------------------------------------------------------------------

# MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, mono, no CRC: frames of 1152 samples, 417.96 bytes on average.
_MP3_HEADER = 0xFFFB90C0
_MP3_PADDING = 0x200  # the header's padding bit: this frame is one byte longer


def mp3(seconds: float) -> bytes:
    """Constant-bitrate frames of silence (zero side info and main data): duration = size / bitrate.

    As encoders do, a frame is padded by one byte whenever the byte count falls behind 128 kbit/s."""
    frames = []
    exact = 144 * 128_000 / 44_100
    for n in range(round(seconds * 44_100 / 1152)):
        padded = math.floor((n + 1) * exact) - math.floor(n * exact) > math.floor(exact)
        header = _MP3_HEADER | (_MP3_PADDING if padded else 0)
        frames.append(struct.pack(">I", header) + bytes(math.floor(exact) + padded - 4))
    return b"".join(frames)


# -- Ogg (Opus, Vorbis) -----------------------------------------------------------------------------


def _ogg_crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC_TABLE = _ogg_crc_table()


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ byte]
    return crc


def _ogg_page(packets: list[bytes], granule: int, sequence: int, flags: int) -> bytes:
    lacing = bytearray()
    for packet in packets:
        lacing += b"\xff" * (len(packet) // 255) + bytes([len(packet) % 255])
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, 0x5EED, sequence, 0, len(lacing))
    page = header + bytes(lacing) + b"".join(packets)
    return page[:22] + struct.pack("<I", _ogg_crc(page)) + page[26:]


def _ogg(
    headers: list[bytes], packet: bytes, samples_per_packet: int, total_samples: int, skip: int
) -> bytes:
    pages = [_ogg_page([headers[0]], 0, 0, 0x02)]
    pages += [_ogg_page([h], 0, i + 1, 0) for i, h in enumerate(headers[1:])]
    per_page = 50
    done = 0
    while done < total_samples:
        count = min(per_page, math.ceil((total_samples - done) / samples_per_packet))
        done = min(total_samples, done + count * samples_per_packet)
        last = done >= total_samples
        pages.append(_ogg_page([packet] * count, skip + done, len(pages), 0x04 if last else 0))
    return b"".join(pages)


def opus(seconds: float, packet_size: int = 3) -> bytes:
    """Ogg Opus: 20 ms packets (CELT, mono); the duration is the last page's granule minus pre-skip."""
    pre_skip = 312
    head = struct.pack("<8sBBHIhB", b"OpusHead", 1, 1, pre_skip, 48000, 0, 0)
    tags = struct.pack("<8sI", b"OpusTags", 4) + b"test" + struct.pack("<I", 0)
    packet = b"\xf8" + bytes(packet_size - 1)
    return _ogg([head, tags], packet, 960, round(seconds * 48000), pre_skip)


def vorbis(seconds: float) -> bytes:
    """Ogg Vorbis headers (identification, comment, a stub setup) and 1024-sample packets of filler."""
    rate = 44100
    ident = struct.pack("<B6sIBIiiiBB", 1, b"vorbis", 0, 1, rate, 0, 64000, 0, 0xB8, 1)
    comment = struct.pack("<B6sI", 3, b"vorbis", 4) + b"test" + struct.pack("<IB", 0, 1)
    setup = struct.pack("<B6s", 5, b"vorbis") + bytes(32)
    return _ogg([ident, comment, setup], b"\x00" * 8, 1024, round(seconds * rate), 0)


# -- WebM (Matroska) --------------------------------------------------------------------------------


def _ebml(element_id: int, payload: bytes) -> bytes:
    size = len(payload)
    id_bytes = element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")
    return id_bytes + (0x01 << 56 | size).to_bytes(8, "big") + payload  # 8-byte size field


def _uint(element_id: int, value: int) -> bytes:
    return _ebml(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def webm(seconds: float, video: bool = True) -> bytes:
    """EBML header, Segment Info with Duration (ms at the default 1 ms timecode scale), one track."""
    header = _ebml(
        0x1A45DFA3,
        _uint(0x4286, 1)
        + _uint(0x42F7, 1)
        + _uint(0x42F2, 4)
        + _uint(0x42F3, 8)
        + _ebml(0x4282, b"webm")
        + _uint(0x4287, 4)
        + _uint(0x4285, 2),
    )
    info = _ebml(
        0x1549A966,
        _uint(0x2AD7B1, 1_000_000)
        + _ebml(0x4489, struct.pack(">d", seconds * 1000))
        + _ebml(0x4D80, b"tests")
        + _ebml(0x5741, b"tests"),
    )
    if video:
        track = _uint(0xD7, 1) + _uint(0x73C5, 1) + _uint(0x83, 1) + _ebml(0x86, b"V_VP8")
        track += _ebml(0xE0, _uint(0xB0, 320) + _uint(0xBA, 240))
    else:
        track = _uint(0xD7, 1) + _uint(0x73C5, 1) + _uint(0x83, 2) + _ebml(0x86, b"A_OPUS")
        track += _ebml(0xE1, _uint(0x9F, 1) + _ebml(0xB5, struct.pack(">d", 48000.0)))
    tracks = _ebml(0x1654AE6B, _ebml(0xAE, track))
    block = b"\x81" + struct.pack(">hB", 0, 0x80) + bytes(16)
    cluster = _ebml(0x1F43B675, _uint(0xE7, 0) + _ebml(0xA3, block))
    return header + _ebml(0x18538067, info + tracks + cluster)
