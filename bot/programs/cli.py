"""The command line: `python -m bot` runs the bot, `doctor` checks a setup, `dub …` makes one dub from the
terminal. Here: the help text, the version, and the parsing of the first two (bot/programs/main.py `main`
hands `dub …` to bot/programs/terminal_dub.py before parsing).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import tomllib
from pathlib import Path

from bot.providers.registry import REGISTRY

_LABELS = [entry.label for entry in REGISTRY.entries]
_LINK_ONLY = " or ".join(entry.label for entry in REGISTRY.entries if not entry.kind.hosts_uploads)
USAGE = f"""\
LipSync Bot: a Slack bot that dubs videos with {", ".join(_LABELS[:-1])} or {_LABELS[-1]}. Type
/lipsync <video_url> <audio_url> [{"|".join(REGISTRY.names)}] in Slack, or share a video and an audio file
in one message; /lipsync compare <video_url> <audio_url> tries every provider.

Without a command it runs the bot; `doctor` checks a setup instead, and `dub <video_url> <audio_url>
[options]` makes one dub from the terminal. Settings come from the environment or a .env file in the
current directory:
  SLACK_BOT_TOKEN       Bot User OAuth Token (xoxb-...)
  SLACK_APP_TOKEN       app-level token (xapp-...) for Socket Mode, the default: no public URL needed
  SLACK_SIGNING_SECRET  instead of SLACK_APP_TOKEN for HTTP mode (Slack calls POST /slack/events)
  {", ".join(entry.key_setting for entry in REGISTRY.entries)}
                        provider keys: each enables its provider; at least one is needed
  PUBLIC_URL            optional https address of this bot: webhooks, and shared files for {_LINK_ONLY}
  REDIS_URL             unset: an embedded Redis keeps its data under DATA_DIR (default ./data)
  PORT                  GET /healthz in both modes, POST /slack/events in HTTP mode (default 3000)
  METRICS_PORT          GET /metrics for operators, on METRICS_HOST (default 127.0.0.1); unset: none
Every setting and where to get it: .env.example and README.md.
"""


def package_version() -> str:
    try:
        return importlib.metadata.version("lipsync-bot")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never pip-installed
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"  # bot/programs/ → the checkout
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """`--help` and `--version` print and exit 0, anything else unknown exits 2; neither reads settings."""
    prog = Path(sys.argv[0]).name
    parser = argparse.ArgumentParser(
        prog="python -m bot" if prog == "__main__.py" else prog,
        description=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lipsync-bot {package_version()}")
    commands = parser.add_subparsers(dest="command", title="commands", metavar="[doctor | dub]")
    commands.add_parser(
        "doctor",
        help="check the setup (Slack tokens and scopes, provider keys, Redis, PUBLIC_URL) and exit",
        description="Check everything this setup needs and print a checklist, each problem with its fix. "
        "Exits 0 when every required check passes (warnings do not fail), 1 otherwise, 2 when settings "
        "are missing or wrong. It starts no bot and prints no secret.",
    )
    # Listed for --help only: main() hands `dub …` to bot/programs/terminal_dub.py before parsing, options
    # and all.
    commands.add_parser("dub", help="one dub from the terminal: dub <video_url> <audio_url> [options]")
    return parser.parse_args(argv)
