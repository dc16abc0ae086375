"""What the bot checks as it starts, before it serves anything: Slack's answer to the bot token, and each
provider's key. A refusal stops the start (StartupError, with what to do); a service that cannot be asked
is named in a warning and the bot starts all the same.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import providers
from bot.providers.base import KeyState, Provider
from bot.settings import StartupError
from bot.slack.out import REFUSED_TOKEN_ERRORS

log = logging.getLogger("bot")


async def check_slack_token(client: AsyncWebClient) -> None:
    """auth.test: a refused token stops the start; Slack out of reach does not (Bolt retries on the first
    request)."""
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error", "") if exc.response is not None else ""
        if error in REFUSED_TOKEN_ERRORS:
            raise StartupError(
                f"Slack refused SLACK_BOT_TOKEN ({error}). Copy the Bot User OAuth Token again from "
                "api.slack.com/apps → your app → OAuth & Permissions, and reinstall the app if needed."
            ) from None
        log.warning("could not check the Slack token (%s); continuing", error)
        return
    except Exception as exc:  # Slack unreachable: Bolt will retry on the first request
        log.warning("could not reach Slack to check the token (%s); continuing", exc)
        return
    log.info("Slack: connected as %s in %s", auth.get("user"), auth.get("team"))


async def check_provider_keys(built: Sequence[Provider]) -> list[Provider]:
    """Each provider checks its key once by a harmless read. A refused key (or a LipSync.dev API version
    that is not the one answering) stops the start. A provider that cannot be reached, or answers
    unclearly, is named in a warning and the bot starts all the same (the others work; its jobs wait
    and retry). Returns those to ask again in the background until they answer (README, "Run it")."""
    checks = await providers.check_keys(built)
    refused = [check.detail for check in checks if check.state is KeyState.REFUSED]
    if refused:
        raise StartupError(" ".join(refused))
    waiting = [p for p, check in zip(built, checks, strict=True) if check.state is not KeyState.ACCEPTED]
    for provider, check in zip(built, checks, strict=True):
        if check.state is KeyState.ACCEPTED and check.detail:
            log.info("%s: %s", provider.label, check.detail)
        elif check.state is not KeyState.ACCEPTED:
            log.warning(
                "%s could not be checked at start: %s. Starting anyway: its jobs wait and retry, and it "
                "is asked again in %.0f s",
                provider.label,
                check.detail,
                providers.KEY_RECHECK.base_s,
            )
    return waiting
