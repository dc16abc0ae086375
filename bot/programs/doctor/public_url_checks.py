"""Doctor's PUBLIC_URL check: the bot is not running during doctor, so does the host resolve, and does
anything answer there?"""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit

from bot.programs.app import HEALTH_PATH
from bot.programs.doctor.checklist import REQUEST_SECONDS, Check, fail, http_status, ok, warn
from bot.providers.http import network_error
from bot.providers.registry import Registry
from bot.settings import Settings


async def check_public_url(settings: Settings, registry: Registry) -> list[Check]:
    """The bot is not running during doctor, so: does the host resolve, and does anything answer there?"""
    name, url = "PUBLIC_URL", settings.public_url
    if not url:
        configured = [registry.entry(provider) for provider in settings.configured_providers]
        link_only = [e.label for e in configured if e is not None and not e.kind.hosts_uploads]
        if link_only:
            fix = "set PUBLIC_URL to the https address where the internet reaches PORT (README, PUBLIC_URL)"
            return [warn(name, f"not set: files shared in Slack cannot go to {' or '.join(link_only)}", fix)]
        return [ok(name, "not set: jobs are followed by polling (no webhooks)")]
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return [
            fail(name, f"{host} does not resolve ({exc.strerror})", f"create its DNS record, or fix {name}")
        ]
    answer = await http_status(url + HEALTH_PATH)
    if not isinstance(answer, int):
        fix = f"make {host} accept {parts.scheme} connections and forward them to PORT ({settings.port})"
        return [fail(name, f"{host} resolves, but {network_error(answer, REQUEST_SECONDS)}", fix)]
    return [ok(name, f"{host} resolves and answers {parts.scheme} (HTTP {answer}; any answer will do)")]
