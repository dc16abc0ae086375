"""Peak memory of the bot while it streams a 1 GiB file shared in Slack to JoggAI.

What it measures: how much the bot process's resident memory grows while a 1 GiB video (1,073,741,824
bytes; `--quick`: 256 MiB) goes from Slack's file download into JoggAI's signed upload PUT, plus the
transfer time and throughput. The bot must stream it chunk by chunk (bot/slack/transfer.py), never holding it.

How: a real Redis and the fake Slack and JoggAI (tests/fakes) on 127.0.0.1, and the real bot as in
production: `python -m bot` in HTTP mode (tests.harness.BotProcess + bot_env, MAX_FILE_MB=2000). FakeSlack
hosts a message sharing the video, generated on the fly by its `content_factory` (numbered 1 MiB chunks:
never on disk, never whole in memory), and a small audio file; the bench POSTs the signed `message` event
(subtype file_share) Slack would send, via tests.harness.send_event and tests.payloads.event_callback.
A small share goes through first, so every code path of a transfer is loaded before the baseline.
While the big one transfers, a thread reads the bot's VmRSS from /proc/<pid>/status every 50 ms; VmHWM
(the kernel's high-water mark) is read before the event and after the upload. Growth = peak during the
transfer (the highest sample, or VmHWM after if it rose above both) minus the RSS just before. The upload
FakeJogg received must have the size and SHA-256 of what FakeSlack served.

Target: growth < 64 MiB.

Run from the repo root: `.venv/bin/python -m bench.streaming_memory [--quick] [--size-mib N]`. The exit
status is 1 if the upload did not arrive complete and intact.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.common import Stack, print_machine, print_table, stack, status_kb, verdict
from tests.fakes.jogg_api import Upload
from tests.fakes.server import wait_until
from tests.harness import BotProcess, send_event
from tests.payloads import event_callback

MIB = 1024 * 1024
SIZE_MIB = 1024
QUICK_SIZE_MIB = 256
TARGET_GROWTH_MIB = 64.0
SAMPLE_SECONDS = 0.05
CHANNEL = "C0MEDIA"
USER = "U0ALICE"
PATTERN = bytes(range(256)) * (MIB // 256)


def chunks(count: int) -> Iterator[bytes]:
    """`count` MiB, each numbered, so a lost, repeated or reordered chunk changes the hash."""
    for index in range(count):
        yield index.to_bytes(8, "big") + PATTERN[8:]


def sha256_of(count: int) -> str:
    digest = hashlib.sha256()
    for chunk in chunks(count):
        digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Sampler:
    """Samples a process's VmRSS every SAMPLE_SECONDS in a thread, and notes when the download starts."""

    pid: int
    watch_download: Any  # () -> bool: has the big file's download begun?
    samples: list[tuple[float, int]] = field(default_factory=list)  # (perf_counter, VmRSS kB)
    download_started: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.perf_counter()
            self.samples.append((now, status_kb(self.pid, "VmRSS")))
            if self.download_started is None and self.watch_download():
                self.download_started = now
            self._stop.wait(SAMPLE_SECONDS)

    @property
    def max_gap(self) -> float:
        times = [t for t, _ in self.samples]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def share(stack_: Stack, tag: str, video_mib: int, audio_bytes: int) -> dict[str, Any]:
    """Seed FakeSlack with a message sharing a generated video and an audio file; returns the event."""
    slack = stack_.slack
    video = slack.add_file(
        f"FVID{tag}",
        f"talk-{tag}.mp4",
        "video/mp4",
        "mp4",
        size=video_mib * MIB,
        content_factory=lambda: chunks(video_mib),
        user=USER,
    )
    audio = slack.add_file(
        f"FAUD{tag}", f"voice-{tag}.mp3", "audio/mpeg", "mp3", os.urandom(audio_bytes), user=USER
    )
    message = slack.add_message(CHANNEL, "French version please", user=USER, files=[video, audio])
    return {**message, "channel": CHANNEL, "channel_type": "channel", "event_ts": message["ts"]}


def upload_named(stack_: Stack, name: str) -> Upload | None:
    with stack_.jogg.lock:
        return next((u for u in stack_.jogg.uploads if u.filename == name), None)


def mib(kb: int | float) -> str:
    return f"{kb / 1024:.1f} MiB"


@dataclass
class Transfer:
    """What was seen of the bot while it streamed the big share to JoggAI."""

    sampler: Sampler
    rss_before: int  # kB
    hwm_before: int
    rss_after: int
    hwm_after: int
    sent: float  # perf_counter() when the event was sent
    done: float  # ... when the big upload was stored
    upload: Upload
    audio: Upload
    log_tail: list[str]


def transfer(stack_: Stack, size_mib: int) -> Transfer:
    """A warm-up share, then the big one, through a real bot; the bot's memory sampled meanwhile."""
    stack_.jogg.require_content_length = True  # as S3-style signed URLs do
    env = stack_.bot_env(MAX_FILE_MB="2000")
    bot = BotProcess(env, stack_.workdir).start()
    try:
        # Warm-up: a small share runs every code path of a transfer once, so the baseline has them.
        warm = share(stack_, "WARM", 4, 50_000)
        assert send_event(bot.url, event_callback(warm)).status_code == 200
        wait_until(lambda: len(stack_.jogg.uploads) >= 2, timeout=60, message="warm-up uploads")
        time.sleep(1.0)

        event = share(stack_, "BIG", size_mib, 200_000)
        video_name = "talk-BIG.mp4"
        download_path = f"/files-pri/{stack_.slack.team_id}-FVIDBIG/"

        def download_begun() -> bool:
            with stack_.slack.lock:
                return any(d.path.startswith(download_path) for d in stack_.slack.downloads)

        rss_before = status_kb(bot.pid, "VmRSS")
        hwm_before = status_kb(bot.pid, "VmHWM")
        sampler = Sampler(bot.pid, download_begun).start()
        sent = time.perf_counter()
        try:
            assert send_event(bot.url, event_callback(event)).status_code == 200
            upload = wait_until(
                lambda: upload_named(stack_, video_name), timeout=600, message="the big upload"
            )
            done = time.perf_counter()
            hwm_after = status_kb(bot.pid, "VmHWM")
            rss_after = status_kb(bot.pid, "VmRSS")
        finally:
            sampler.stop()
        audio = wait_until(lambda: upload_named(stack_, "voice-BIG.mp3"), timeout=60, message="audio")
    finally:
        bot.stop()
    log_tail = bot.log.read_text().splitlines()[-5:]
    return Transfer(
        sampler, rss_before, hwm_before, rss_after, hwm_after, sent, done, upload, audio, log_tail
    )


def report(seen: Transfer, size_mib: int, expected: str) -> bool:
    """Print the figures; True when both uploads arrived intact."""
    size = size_mib * MIB
    sampler, upload, audio = seen.sampler, seen.upload, seen.audio
    sampled_peak = max(kb for _, kb in sampler.samples)
    # VmHWM only rises during the transfer if the transfer set a new peak; the kernel updates it lazily, so
    # a sample can exceed it.
    peak = max(sampled_peak, seen.hwm_after if seen.hwm_after > seen.hwm_before else 0)
    growth = (peak - seen.rss_before) / 1024
    begun = sampler.download_started or seen.sent
    seconds = seen.done - begun
    intact = upload.size == size and upload.declared_size == size and upload.sha256 == expected
    audio_ok = audio.size == 200_000

    print(f"\nstreaming a {size_mib} MiB ({size:,} bytes) shared Slack file to JoggAI through the bot")
    rows = [
        ["baseline RSS (VmRSS before the event)", mib(seen.rss_before), ""],
        ["peak RSS sampled during the transfer", mib(sampled_peak), f"{len(sampler.samples)} samples"],
        [
            "VmHWM before -> after",
            f"{mib(seen.hwm_before)} -> {mib(seen.hwm_after)}",
            "the kernel's high-water mark",
        ],
        ["RSS after the upload", mib(seen.rss_after), ""],
        [
            "growth (peak - baseline)",
            f"{growth:.1f} MiB",
            f"target < {TARGET_GROWTH_MIB:.0f} MiB: {verdict(growth < TARGET_GROWTH_MIB)}",
        ],
        ["transfer time", f"{seconds:.2f} s", "first download request -> upload stored"],
        ["throughput", f"{size / seconds / 1e6:.0f} MB/s", f"{size / seconds / MIB:.0f} MiB/s"],
        ["event sent -> upload stored", f"{seen.done - seen.sent:.2f} s", ""],
        [
            "upload at JoggAI",
            "intact" if intact else "WRONG",
            f"size {upload.size:,}, sha256 {upload.sha256[:16]}…",
        ],
        ["audio upload", "intact" if audio_ok else "WRONG", f"size {audio.size:,}"],
    ]
    print_table(["figure", "value", "note"], rows)
    print(
        f"(VmRSS sampled every {SAMPLE_SECONDS * 1000:.0f} ms; "
        f"longest gap between samples {sampler.max_gap * 1000:.0f} ms)"
    )
    if not intact:
        print("bot log tail:\n  " + "\n  ".join(seen.log_tail))
    return intact and audio_ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SIZE_MIB} MiB instead of {SIZE_MIB}")
    parser.add_argument("--size-mib", type=int, help=f"video size in MiB (default {SIZE_MIB})")
    args = parser.parse_args()
    size_mib = args.size_mib or (QUICK_SIZE_MIB if args.quick else SIZE_MIB)
    if not os.path.exists("/proc/self/status"):
        sys.exit("needs Linux /proc (VmRSS, VmHWM)")

    with stack("stream") as stack_:
        print_machine(stack_.redis_url)
        started = time.perf_counter()
        expected = sha256_of(size_mib)
        print(f"SHA-256 of the {size_mib} MiB video computed in {time.perf_counter() - started:.1f} s")
        seen = transfer(stack_, size_mib)
    sys.exit(0 if report(seen, size_mib, expected) else 1)


if __name__ == "__main__":
    main()
