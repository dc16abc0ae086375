"""What a container parser makes of a file of which we have some bytes: the duration, the format and the
kinds of tracks (libmediainfo: the copy pymediainfo's wheel bundles, called directly), and which bytes it
wanted that we did not have. `probe` is blocking and runs in the parser process
(bot/money/parser_process.py); the rest is read from the head's own headers before any parse
(`tail_foreseen`).
"""

from __future__ import annotations

import ctypes
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pymediainfo

log = logging.getLogger(__name__)

Piece = tuple[int, bytes | memoryview]  # bytes of the file, from this offset

# Zeros the parser may read where we have no bytes before it sees the end of the file. libmediainfo
# reads a few hundred KB of an unknown region (WAV, Ogg) and up to 16 MB of a WebM's clusters; this
# bounds its CPU time whatever size the server claims.
_GAP_BUDGET = 4 * 1024 * 1024

# Top-level boxes of an MP4/MOV/M4A file that may come first (QuickTime files may start without `ftyp`).
_MP4_FIRST_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"})


def tail_foreseen(head: bytes, size: int, tail_bytes: int) -> tuple[int, int] | None:
    """The [start, end) past the head that the parser will want, where the head's own headers say so
    before any parse: the same window `Preflight._tail_window` finds after one. Fetching it first spares
    a second parse (it costs as much as the first).

    An MP4 whose top-level boxes run past the head without a `moov` among them: its index starts where
    they end. An Ogg file (its duration is on its last page) and an MP3 (tags at the end): the last
    `tail_bytes`. Anything else: None, and the parse decides.
    """
    have = len(head)
    if size <= have:
        return None
    if head[4:8] in _MP4_FIRST_BOXES:
        index = _mp4_box_past(head)
        return None if index is None or index >= size else (index, min(size, index + tail_bytes))
    if head.startswith((b"OggS", b"ID3")) or (head[:1] == b"\xff" and head[1:2] >= b"\xe0"):
        return max(have, size - tail_bytes), size
    return None


def _mp4_box_past(head: bytes) -> int | None:
    """Where the first top-level box past the head starts, if no `moov` came before it."""
    offset = 0
    while offset + 8 <= len(head):
        box_size, kind = int.from_bytes(head[offset : offset + 4], "big"), head[offset + 4 : offset + 8]
        if box_size == 1 and offset + 16 <= len(head):  # a 64-bit size follows the type
            box_size = int.from_bytes(head[offset + 8 : offset + 16], "big")
        if kind == b"moov" or box_size < 8 or not kind.isalnum():
            return None  # the index is here, or the box runs to the end (0), or this is not a box
        offset += box_size
    return offset if offset >= len(head) else None


@dataclass(frozen=True)
class Probe:
    """What libmediainfo made of the bytes we have."""

    duration_s: Decimal | None
    format: str | None  # "MPEG-4", "PDF"…; None when not recognised
    tracks: frozenset[str]  # "Video", "Audio", "Image", "Text"…
    missing: tuple[tuple[int, int], ...]  # [start, end) spans it read where we had no bytes
    jumps: tuple[int, ...]  # where it sought to and read, where we had no bytes

    def wanted(self, start: int, end: int) -> bool:
        """Did the parser read anywhere in [start, end) that we did not have?"""
        return any(s < end and e > start for s, e in self.missing)

    @property
    def not_media(self) -> bool:
        """Recognised as something else (a PDF, an image). An unrecognised file passes: a media file cut
        to its first bytes (an mp3 behind a large cover picture) may not be recognisable."""
        return not self.tracks & {"Video", "Audio"} and bool(self.tracks & {"Image", "Text"})


# What libmediainfo reports, as one line: asking for just these fields instead of its full XML report
# saves a third of a parse's CPU (bench/preflight.py), which bursts of jobs pay in the bot's process.
_REPORT = "General;%Duration%|%Format%|%VideoCount%|%AudioCount%|%ImageCount%|%TextCount%"
_COUNTED = ("Video", "Audio", "Image", "Text")
# How much the parser is handed at a time. It works through each piece it is handed before it looks at
# whether it knows enough, so pieces of 16 KB instead of pymediainfo's usual 64 KB cost an MP3 half the CPU, a
# WAV a third less (bench/preflight.py), and tell us more closely which bytes it wanted.
PARSE_STEP = 16 * 1024


def probe(size: int, pieces: Sequence[Piece]) -> Probe:
    """Run libmediainfo over a file of `size` bytes of which we have `pieces` (offset, bytes). Blocking."""
    sparse = SparseFile(size=size, pieces=pieces)
    try:
        report = _library().report(sparse, size)
    except (OSError, AttributeError) as exc:  # the library would not load, or lacks a function
        log.warning("preflight: libmediainfo failed: %s", exc)
        return Probe(None, None, frozenset(), (), ())
    duration, format_, *counts = (report.strip().split("|") + [""] * 6)[:6]
    return Probe(
        duration_s=_seconds(duration or None),
        format=format_ or None,
        tracks=frozenset(
            kind for kind, count in zip(_COUNTED, counts, strict=True) if count not in ("", "0")
        ),
        missing=tuple(sparse.missing),
        jumps=tuple(sparse.jumps),
    )


class _MediaInfo:
    """libmediainfo (the copy pymediainfo's wheel bundles, else the system's), loaded once per process, with
    one handle set up once and reused for every file: pymediainfo's `MediaInfo.parse` loads the library,
    declares its functions, opens a handle and sets its options again on every call, a fifth of a
    parse's CPU (BENCHMARKS.md, "CPU per job"). The calls are pymediainfo's own, in its order."""

    def __init__(self) -> None:
        bundled = Path(pymediainfo.__file__).with_name("libmediainfo.so.0")
        self._lib = ctypes.CDLL(str(bundled) if bundled.is_file() else "libmediainfo.so.0")
        self._declare()
        self._handle = self._lib.MediaInfo_New()
        options = {
            "CharSet": "UTF-8",
            "Inform": _REPORT,
            "Complete": "1",
            "ParseSpeed": "0",  # read what the headers say (a WAV's length) without scanning on
            "LegacyStreamDisplay": "",
            "Cover_Data": "",
        }
        for name, value in options.items():
            self._lib.MediaInfo_Option(self._handle, name, value)

    def _declare(self) -> None:
        lib, handle, size = self._lib, ctypes.c_void_p, ctypes.c_size_t
        for name, arguments, result in (
            ("MediaInfo_New", [], handle),
            ("MediaInfo_Option", [handle, ctypes.c_wchar_p, ctypes.c_wchar_p], ctypes.c_wchar_p),
            ("MediaInfo_Open_Buffer_Init", [handle, ctypes.c_uint64, ctypes.c_uint64], size),
            ("MediaInfo_Open_Buffer_Continue", [handle, ctypes.c_char_p, size], size),
            ("MediaInfo_Open_Buffer_Continue_GoTo_Get", [handle], ctypes.c_uint64),
            ("MediaInfo_Open_Buffer_Finalize", [handle], size),
            ("MediaInfo_Inform", [handle, size], ctypes.c_wchar_p),
            ("MediaInfo_Close", [handle], None),
        ):
            function = getattr(lib, name)
            function.argtypes, function.restype = arguments, result

    def report(self, file: io.RawIOBase, size: int) -> str:
        """The report line for `file`, handed to the library PARSE_STEP bytes at a time."""
        lib, handle = self._lib, self._handle
        lib.MediaInfo_Open_Buffer_Init(handle, size, 0)
        while buffer := file.read(PARSE_STEP):
            if lib.MediaInfo_Open_Buffer_Continue(handle, buffer, len(buffer)) & _FINISHED:
                break
            seek = lib.MediaInfo_Open_Buffer_Continue_GoTo_Get(handle)
            if seek != _NO_SEEK:  # it wants to read on from elsewhere
                lib.MediaInfo_Open_Buffer_Init(handle, size, file.seek(seek))
        lib.MediaInfo_Open_Buffer_Finalize(handle)
        report: str = lib.MediaInfo_Inform(handle, 0) or ""
        lib.MediaInfo_Close(handle)
        return report


_FINISHED = 0x08  # Open_Buffer_Continue's bit: it knows enough
_NO_SEEK = ctypes.c_uint64(-1).value
_loaded: _MediaInfo | None = None


def _library() -> _MediaInfo:
    global _loaded
    if _loaded is None:
        _loaded = _MediaInfo()
    return _loaded


def _seconds(milliseconds: object) -> Decimal | None:
    """libmediainfo's duration (ms: an int, or a string such as "12346.667") in seconds."""
    if milliseconds is None:
        return None
    try:
        seconds = (Decimal(str(milliseconds)) / 1000).quantize(Decimal("0.001"))
    except InvalidOperation:
        return None
    return seconds if seconds > 0 else None


class SparseFile(io.RawIOBase):
    """A read-only file of `size` bytes of which only `pieces` are known; the rest reads as zeros.

    Reads that touch an unknown span are recorded in `missing`, and in `jumps` when the parser sought
    there (rather than read on): that is how we learn it wanted an index or the end of the file. After
    _GAP_BUDGET bytes of zeros the file reads as ended.
    """

    def __init__(self, *, size: int, pieces: Sequence[Piece]) -> None:
        super().__init__()
        self._size = size
        self._pieces = pieces
        self._position = 0
        self._gap_budget = _GAP_BUDGET
        self._sought = False
        self.missing: list[tuple[int, int]] = []
        self.jumps: list[int] = []

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        position = max(0, base + offset)
        self._sought = self._sought or position != self._position
        self._position = position
        return position

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        start = self._position
        end = min(self._size, start + len(buffer))
        if end <= start:
            return 0
        out = memoryview(buffer).cast("B")
        out[: end - start] = bytes(end - start)
        known = 0
        for offset, data in self._pieces:
            low, high = max(offset, start), min(offset + len(data), end)
            if low < high:
                out[low - start : high - start] = data[low - offset : high - offset]
                known += high - low
        sought, self._sought = self._sought, False
        if known < end - start:
            self.missing.append((start, end))
            if sought:
                self.jumps.append(start)
            self._gap_budget -= end - start - known
            if self._gap_budget < 0:
                return 0
        self._position = end
        return end - start
