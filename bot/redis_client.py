"""The bot's Redis client: timeouts, retries, and commands packed by hiredis; over TCP, TLS, a unix socket
or Sentinel.

redis-py's asyncio connections pack every command in Python, one `encode` per argument; the sync ones
use hiredis (a dependency of ours). On the ack path (a job create is one script call with a dozen
fields) that packing was a tenth of the bot's CPU (bench/ack_latency.py), so the asyncio connections
here use hiredis too, whichever connection class the URL calls for.

REDIS_URL forms (`check_url` says what is wrong with one; the settings call it):

- `redis://[[user]:password@]host[:6379][/db]`: plain TCP.
- `rediss://[[user]:password@]host[:6379][/db][?options]`: TLS. By default the server's certificate must
  chain to a CA the system trusts and name the host. Options (redis-py 8 reads them from the URL;
  percent-encode `&`, `%` or spaces in paths):
  `ssl_cert_reqs=required|optional|none` (`none` checks nothing: for a self-signed endpoint whose CA
  you cannot get), `ssl_ca_certs=/path/ca.pem` or `ssl_ca_path=/dir` (a private CA),
  `ssl_check_hostname=false` (a certificate issued for another name), `ssl_certfile`, `ssl_keyfile` and
  `ssl_password` (a client certificate, for mutual TLS), `ssl_ciphers`, `ssl_min_version` (a number of
  `ssl.TLSVersion`: 771 is TLS 1.2, 772 TLS 1.3).
- `unix:///path/to/redis.sock[?db=0]`.
- `redis+sentinel://[[user]:password@]host1[:26379][,host2[:26379]…]/service-name[/db]`: the master
  that these Sentinels name for service-name, found again after a failover. The password (and user)
  are the master's; Sentinels that require one of their own take `?sentinel_password=…` (and
  `sentinel_username=…`). Plain TCP only: no TLS to Sentinels or through them.

The first three also take redis-py's general URL options (`db`, `socket_timeout`, `client_name`…).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import DataError

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379
URL_FORMS = (
    "redis://host:6379/0, rediss://host:6380/0 (TLS), unix:///path/to/redis.sock or "
    "redis+sentinel://host1:26379,host2:26379/service-name/0"
)
TIMEOUT_SECONDS = 5.0

# Query options a URL may carry. redis-py hands unknown names to the connection class, which fails with
# a TypeError on the first command: better refused when the settings are read.
_GENERAL_OPTIONS = (set(URL_QUERY_ARGUMENT_PARSERS) - {"timeout"}) | {"username", "password", "client_name"}
_TLS_OPTIONS = {
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_ca_data",
    "ssl_check_hostname",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_ciphers",
    "ssl_min_version",
    "ssl_include_verify_flags",
    "ssl_exclude_verify_flags",
}
_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")


def connect(url: str, *, timeout: float = TIMEOUT_SECONDS, decode_responses: bool = False) -> Redis:
    """A client for `url` (any form in the module docstring). Connections open on first use.

    ValueError, saying what is wrong, for a URL `check_url` refuses."""
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 30,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=1), 3),
        "decode_responses": decode_responses,
    }
    if _scheme(url) == SENTINEL_SCHEME:
        client = _connect_sentinel(parse_sentinel_url(url), options)
    else:
        check_url(url)
        client = Redis.from_url(url, **options)
    # The pool picked the class for the URL (TCP, TLS, unix socket, or Sentinel-managed): keep it, add the
    # packer.
    pool = client.connection_pool
    pool.connection_class = type(
        f"Hiredis{pool.connection_class.__name__}", (HiredisPacking, pool.connection_class), {}
    )
    return client


def check_url(url: str) -> None:
    """ValueError with a message for whoever set REDIS_URL, if `connect` cannot use `url`."""
    scheme = _scheme(url)
    if scheme == SENTINEL_SCHEME:
        parse_sentinel_url(url)
        return
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"must be one of {URL_FORMS}")
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    for name in query:
        if name in _TLS_OPTIONS and scheme != "rediss":
            raise ValueError(f"{name} is a TLS option: it needs a rediss:// URL")
        if name not in _GENERAL_OPTIONS | _TLS_OPTIONS:
            tls = f" (the TLS options are {', '.join(sorted(_TLS_OPTIONS))})" if scheme == "rediss" else ""
            raise ValueError(f"unknown option {name!r} in the URL{tls}")
    parse_url(url)  # redis-py's own checks: numbers that are not numbers, and so on
    reqs = query.get("ssl_cert_reqs", ["required"])[0]
    if reqs not in ("required", "optional", "none"):
        raise ValueError(f"ssl_cert_reqs is {reqs!r}: it must be required, optional or none")
    # A missing file would otherwise surface as a failed connection on every command.
    for name in _TLS_FILES:
        if name in query and not Path(query[name][0]).is_file():
            raise ValueError(f"{name}: no file at {query[name][0]}")
    if "ssl_ca_path" in query and not Path(query["ssl_ca_path"][0]).is_dir():
        raise ValueError(f"ssl_ca_path: no directory at {query['ssl_ca_path'][0]}")


@dataclass(frozen=True)
class SentinelTarget:
    """What a redis+sentinel:// URL says."""

    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The parts of a redis+sentinel:// URL; ValueError saying the form if it is not one."""
    form = f"must be {SENTINEL_SCHEME}://[[user]:password@]host1[:26379][,host2[:26379]…]/service-name[/db]"
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    sentinels = [_host_port(item, form) for item in hosts.split(",")]
    service, _, db = parts.path.removeprefix("/").partition("/")
    if not service:
        raise ValueError(f"{form}: the service name (as in `sentinel monitor <name> …`) is missing")
    if db and not db.isdigit():
        raise ValueError(f"{form}: the database after the service name is a number")
    query = parse_qs(parts.query, keep_blank_values=True)
    for name in query:
        if name not in _SENTINEL_OPTIONS:
            raise ValueError(
                f"unknown option {name!r}: a Sentinel URL takes {' and '.join(_SENTINEL_OPTIONS)}"
            )
    return SentinelTarget(
        sentinels=sentinels,
        service=unquote(service),
        db=int(db or 0),
        username=unquote(user) or None,
        password=unquote(password) or None,
        sentinel_username=query.get("sentinel_username", [""])[0] or None,
        sentinel_password=query.get("sentinel_password", [""])[0] or None,
    )


def address(url: str) -> str:
    """Where a Redis URL points, without user, password or options: for logs and messages."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    if parts.scheme == SENTINEL_SCHEME:
        target = parse_sentinel_url(url)
        hosts = ",".join(f"{_bracket(host)}:{port}" for host, port in target.sentinels)
        return f"{SENTINEL_SCHEME}://{hosts}/{target.service}"
    return f"{parts.scheme}://{_bracket(parts.hostname or 'localhost')}:{parts.port or 6379}"


class HiredisPacking:
    """Mixed into a redis.asyncio connection class: `pack_command` by hiredis (same bytes on the wire)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # As redis-py does: a command name with a space ("SCRIPT LOAD") goes as separate arguments.
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:  # redis-py raises DataError for values it cannot send
            raise DataError(str(exc)) from None


class SentinelRedis(Redis):
    """The master's client; closing it also closes its connections to the Sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool = self.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            await pool.sentinel_manager.aclose()


def _connect_sentinel(target: SentinelTarget, options: dict[str, Any]) -> Redis:
    # Sentinels answer only discovery questions: the same timeouts, and their own credentials if any. Each
    # is asked once per discovery (redis-py's default retries a dead one for seconds): the next Sentinel,
    # then the master connection's own retries, cover a failure.
    sentinel_options: dict[str, Any] = {
        "socket_timeout": options["socket_timeout"],
        "socket_connect_timeout": options["socket_connect_timeout"],
        "retry": Retry(NoBackoff(), 0),
        "username": target.sentinel_username,
        "password": target.sentinel_password,
    }
    sentinel = Sentinel(target.sentinels, sentinel_kwargs=sentinel_options)
    client: Redis = sentinel.master_for(
        target.service,
        redis_class=SentinelRedis,
        db=target.db,
        username=target.username,
        password=target.password,
        **options,
    )
    return client


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else ""


def _host_port(text: str, form: str) -> tuple[str, int]:
    """ "host", "host:26379" or "[::1]:26379" → (host, port)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") if rest.startswith(":") or not rest else "?"
    else:
        host, _, port = text.partition(":")
    if not host or (port and not port.isdigit()) or not 0 < int(port or SENTINEL_PORT) < 65536:
        raise ValueError(f"{form}: {text!r} is not a Sentinel's host[:port]")
    return unquote(host), int(port or SENTINEL_PORT)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
