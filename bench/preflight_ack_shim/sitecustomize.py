"""Bench only (bench/preflight_ack.py): host names ending in `.bench.test` resolve to 127.0.0.1.

The bench puts this directory first on the bot process's PYTHONPATH, so Python imports it at start-up
(`site` imports any `sitecustomize` it finds). It is the same as a hosts-file entry
`127.0.0.1 media.bench.test`, for that process only: the bot's code, its SSRF guard included, is
unchanged; the guard still checks the address (127.0.0.1, admitted by PREFLIGHT_ALLOWED_NETWORKS).
Slack commands refuse IP-address links, so the bench's links need a host name.
"""

from __future__ import annotations

import socket
from typing import Any

SUFFIX = ".bench.test"
_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(
    host: bytes | str | None,
    port: bytes | str | int | None,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list[Any]:
    name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
    if name is not None and name.rstrip(".").lower().endswith(SUFFIX):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, port, family, type, proto, flags)


socket.getaddrinfo = _getaddrinfo
