"""Doctor's Slack checks: the bot token and its scopes (against manifest.yml's), and the mode (Socket Mode's
app token, or HTTP mode's signing secret)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from slack_sdk.errors import SlackApiError

from bot.programs.doctor.checklist import REQUEST_SECONDS, Check, fail, ok, unreachable, warn
from bot.settings import WHERE_TO_GET, Settings
from bot.slack.out import NETWORK_ERRORS, REFUSED_TOKEN_ERRORS, close_client, make_client

# Next to the package in a checkout (pip install -e .; bot/programs/doctor/ → the checkout), else in the
# current directory (the Docker image's WORKDIR, where the Dockerfile copies it). Read at run time:
# manifest.yml stays the one list of scopes.
MANIFEST_PLACES = (Path(__file__).resolve().parents[3] / "manifest.yml", Path("manifest.yml"))
SCOPES_PATH = ("oauth_config", "scopes", "bot")

NEW_BOT_TOKEN = f"copy it again into SLACK_BOT_TOKEN from {WHERE_TO_GET['SLACK_BOT_TOKEN']}"
NEW_APP_TOKEN = (
    "generate a new app-level token with the connections:write scope for SLACK_APP_TOKEN: "
    "api.slack.com/apps → your app → Basic Information → App-Level Tokens"
)
REINSTALL = (
    "reinstall the app from manifest.yml: api.slack.com/apps → your app → App Manifest (paste manifest.yml, "
    "Save), then Install App → Reinstall to Workspace"
)
SLACK_DOWN = "try again; status.slack.com says whether Slack is down"


async def check_slack_token(settings: Settings) -> list[Check]:
    """auth.test with the bot token: whose it is, and its scopes against manifest.yml's."""
    name = "Slack bot token"
    client = make_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url, REQUEST_SECONDS)
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        error = _slack_error(exc)
        if error in REFUSED_TOKEN_ERRORS:
            return [fail(name, f"Slack refused SLACK_BOT_TOKEN (xoxb-…): {error}", NEW_BOT_TOKEN)]
        return [fail(name, f"Slack answered {error}", SLACK_DOWN)]
    except NETWORK_ERRORS as exc:
        return [unreachable(name, settings.slack_api_url, exc, "SLACK_API_URL")]
    finally:
        await close_client(client)
    token = ok(name, f"xoxb-… accepted: the bot is @{auth.get('user')} in {auth.get('team')}")
    try:
        expected = manifest_scopes()
    except (OSError, ValueError) as exc:
        return [token, warn("Slack scopes", f"not checked: {exc}", "run doctor where manifest.yml is")]
    return [token, scopes_check(_header(auth.headers, "x-oauth-scopes"), expected)]


def scopes_check(granted_header: str | None, expected: Sequence[str]) -> Check:
    """Slack lists a token's scopes in the x-oauth-scopes header of its Web API answers."""
    name = "Slack scopes"
    if granted_header is None:
        return warn(
            name,
            "could not be read: Slack's answer had no x-oauth-scopes header",
            "compare OAuth & Permissions → Scopes with manifest.yml's oauth_config.scopes.bot",
        )
    granted = {scope.strip() for scope in granted_header.split(",")}
    missing = [scope for scope in expected if scope not in granted]
    if missing:
        return fail(name, f"missing {', '.join(missing)}", REINSTALL)
    return ok(name, f"all {len(expected)} that manifest.yml asks for")


def manifest_scopes() -> list[str]:
    """The bot scopes manifest.yml asks for: OSError without a manifest.yml, ValueError without the list."""
    place = next((path for path in MANIFEST_PLACES if path.is_file()), MANIFEST_PLACES[-1])
    return yaml_block_list(place.read_text(encoding="utf-8"), SCOPES_PATH)


def yaml_block_list(text: str, path: Sequence[str]) -> list[str]:
    """The items of the list at `path` (keys nested by indentation) in a YAML document.

    No YAML parser is a dependency, so this reads only the shapes manifest.yml uses: `key:` lines nested by
    indentation, a block list of plain items under the last key (`- item`), and `#` comments (whole lines,
    or after a space). Any other shape of the list, e.g. `bot: [a, b]`, raises ValueError rather than being
    read wrongly.
    """
    indents: list[int] = []  # the indentation of each key of `path` found so far
    items: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        content = line.strip()
        if not content or content.startswith("#"):
            continue
        indent = len(line) - len(content)
        if len(indents) == len(path):  # in the list: its items, up to the first line that is not one
            if content.startswith("- ") and indent >= indents[-1]:
                items.append(content[2:].strip().strip("'\""))
                continue
            break
        while indents and indent <= indents[-1]:  # out of a key of `path` (a sibling or an outer key)
            indents.pop()
        if content == f"{path[len(indents)]}:":
            indents.append(indent)
    if not items:
        raise ValueError(f"manifest.yml has no list at {'.'.join(path)}")
    return items


async def check_mode(settings: Settings) -> list[Check]:
    """Socket Mode: may the app token open a connection (asked; none opened)? HTTP mode: a signing secret."""
    name = "Slack mode"
    if settings.slack_app_token is None:
        return [ok(name, "HTTP mode: SLACK_SIGNING_SECRET is set (Slack has no call to check it with)")]
    app_token = settings.slack_app_token.get_secret_value()
    client = make_client(app_token, settings.slack_api_url, REQUEST_SECONDS)
    try:
        await client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        error = _slack_error(exc)
        fix = NEW_APP_TOKEN if error in REFUSED_TOKEN_ERRORS else SLACK_DOWN
        return [fail(name, f"Socket Mode: Slack refused SLACK_APP_TOKEN (xapp-…): {error}", fix)]
    except NETWORK_ERRORS as exc:
        return [unreachable(name, settings.slack_api_url, exc, "SLACK_API_URL")]
    finally:
        await close_client(client)
    return [ok(name, "Socket Mode: SLACK_APP_TOKEN (xapp-…) may open connections (apps.connections.open)")]


def _slack_error(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or "an error") if exc.response is not None else "an error"


def _header(headers: Mapping[str, str], wanted: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == wanted), None)
