"""Helpers the provider client tests share: one call on a fresh provider, and a redirecting server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from bot.providers.base import Provider
from tests.fakes.server import BackgroundServer

P = TypeVar("P", bound=Provider)
T = TypeVar("T")


def run_with(factory: Callable[[], P], steps: Callable[[P], Awaitable[T]]) -> T:
    """Await `steps(provider)` with a provider made by `factory` on a fresh event loop, and return the result.

    The provider is made inside the loop and closed whatever happens, as one worker turn would do it.
    """

    async def go() -> T:
        provider = factory()
        try:
            return await steps(provider)
        finally:
            await provider.aclose()

    return asyncio.run(go())


def call(factory: Callable[[], Provider], method: str, *args: object) -> Any:
    """`run_with` for one method: await `provider.<method>(*args)` and return what it gives."""

    async def one_call(provider: Provider) -> Any:
        return await getattr(provider, method)(*args)

    return run_with(factory, one_call)


class Redirector(BackgroundServer):
    """Answers every request with a redirect to the same path on `target` (another host, e.g. a fake).

    Clients must not follow it, so that the API key never goes to a host it was not meant for.
    `redirect` picks the status: 302 Found by default, or e.g. `web.HTTPTemporaryRedirect` for 307.
    """

    def __init__(self, target: str, redirect: type[web.HTTPMove] = web.HTTPFound) -> None:
        super().__init__()
        self.target = target
        self.redirect = redirect

    def routes(self, app: web.Application) -> None:
        async def redirect(request: web.Request) -> web.Response:
            raise self.redirect(f"{self.target}{request.path_qs}")

        app.router.add_route("*", "/{tail:.*}", redirect)
