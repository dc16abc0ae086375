"""A doctor's check and its verdict (`Check`: ✓, ! or ✗, with its fix), and what the checks share: asking
whether anything answers at an address, and saying why nothing did.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

import aiohttp
import httpx

from bot.providers.http import network_error

REQUEST_SECONDS = 8.0  # each request within a check, so that its own error shows before CHECK_SECONDS
NETWORK = "check this machine's network and proxy (HTTPS_PROXY), or"  # + the setting with the URL


class Status(StrEnum):
    OK = "✓"
    WARN = "!"  # works, but something is at risk; does not fail doctor
    FAIL = "✗"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""  # for a warning or a failure: what to do, in a sentence or two


def ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def warn(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.WARN, detail, fix)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.FAIL, detail, fix)


async def http_status(url: str) -> int | BaseException:
    """The status of a GET of `url` (any status: something answered), or the error that came instead."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_SECONDS)
    connector = aiohttp.TCPConnector(ssl=httpx.create_ssl_context())  # certifi, as the providers use
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=True) as session,
            session.get(url, allow_redirects=False) as response,
        ):
            return response.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return exc


def unreachable(name: str, url: str, exc: BaseException, setting: str) -> Check:
    why = network_error(exc, REQUEST_SECONDS)
    return fail(name, f"cannot reach {urlsplit(url).hostname}: {why}", f"{NETWORK} {setting}")
