"""Parse and validate the text Slack sends after ``/lipsync``.

Everything here is pure: no network, no DNS. Host checks judge the host as written, which catches mistakes
and the obvious SSRF attempts; names that merely *resolve* to private addresses can only be caught by
whoever does the download.
"""

from __future__ import annotations

import html
import ipaddress
import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import SplitResult, urlsplit

from bot.providers.registry import REGISTRY

__all__ = [
    "DEFAULT_PLAYBACK_TYPE",
    "MAX_TEXT_LENGTH",
    "MAX_URL_LENGTH",
    "PLAYBACK_TYPES",
    "BudgetCommand",
    "InvalidCommand",
    "JobCommand",
    "LipSyncRequest",
    "Options",
    "parse_lipsync_text",
    "public_url_problem",
]

PLAYBACK_TYPES: tuple[str, ...] = ("normal", "normal_reverse", "normal_reverse_by_audio")
DEFAULT_PLAYBACK_TYPE = "normal"
# The words that choose a provider are the registry's names (bot/providers/registry.py), passed in as
# `providers` (REGISTRY's by default); which of them are configured is checked by the intake.
COMPARE_WORD = "compare"
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_JOB_ID = re.compile(r"[0-9a-fA-F]{6,40}")
MAX_TEXT_LENGTH = 2000
MAX_URL_LENGTH = 2048

_HELP_WORDS = frozenset({"help", "-h", "--help", "?"})
_ALLOWED_SCHEMES = ("http", "https")

# Suffixes that never name a host on the public internet (RFC 6761/6762/8375 and common intranet habits).
_PRIVATE_SUFFIXES = ("localhost", "local", "internal", "localdomain", "lan", "home.arpa", "intranet", "corp")

# Slack file URLs only work with a Slack session or bot token, so the provider would get a login page.
# slack-gov.com is GovSlack's equivalent of slack.com.
_SLACK_DOMAINS = ("slack.com", "slack-gov.com", "slack-files.com", "slack-edge.com")

# Slack wraps links as <url> or <url|label>; the label may contain spaces, so unwrap before splitting.
_SLACK_LINK = re.compile(r"<([^<>|]*)(?:\|[^<>]*)?>")

# A label that inet_aton()/WHATWG would read as a number: decimal, octal (leading 0) or 0x-hex.
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_ASCII_HOST_CHARS = re.compile(r"[a-z0-9._-]+")

# Other spellings of "." that IDNA maps to a dot, so "localhost。" must not slip past the suffix checks.
_IDNA_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})

# IPv6 ranges that carry an IPv4 address the packet ends up at (IPv4-compatible, NAT64 well-known prefix).
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class Options:
    """What may follow the two links, in any order (also written in a message that shares files)."""

    playback_type: str = DEFAULT_PLAYBACK_TYPE
    provider: str = ""  # "": the default provider
    model: str = ""  # "": the provider's default model


@dataclass(frozen=True)
class JobCommand:
    """`/lipsync list [page]`, `/lipsync status <job>` or `/lipsync cancel <job>`."""

    verb: str  # list | status | cancel
    job: str = ""  # the job id as typed (status, cancel)
    page: int = 1  # list


JOB_VERBS = ("list", "status", "cancel")
BUDGET_WORD = "budget"
# What `/lipsync budget` takes as an amount: budgets are money, not astronomy.
MAX_BUDGET = Decimal(10) ** 9
_REMOVE_WORDS = ("off", "none", "remove", "clear")
_BUDGET_AMOUNT = re.compile(r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+")
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,40}")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,40}")


@dataclass(frozen=True)
class BudgetCommand:
    """`/lipsync budget` (show them), or `/lipsync budget <#channel|@person> <amount|off> [unit]`."""

    scope: str = ""  # "channel" or "user"; "" shows the budgets
    scope_id: str = ""
    amount: Decimal | None = None  # None removes the budget
    unit: str = ""  # as typed ("credits", "USD", a provider's name); "": the default provider's


@dataclass(frozen=True)
class LipSyncRequest:
    video_url: str
    audio_url: str
    playback_type: str = DEFAULT_PLAYBACK_TYPE
    provider: str = ""  # "": the default provider
    model: str = ""
    compare: bool = False  # `/lipsync compare …`: the same dub on every configured provider

    @property
    def options(self) -> Options:
        return Options(self.playback_type, self.provider, self.model)


class InvalidCommand(ValueError):
    """The command text cannot be used.

    ``reason`` is one friendly sentence for the user (Slack mrkdwn allowed, e.g. `code`), no usage text.
    """

    reason: str

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_lipsync_text(
    text: str, *, providers: Collection[str] = REGISTRY.names
) -> LipSyncRequest | JobCommand | BudgetCommand | None:
    """Turn the slash-command text into a request; `providers` are the words that choose a provider.

    None means the user asked for help: empty/whitespace-only text, or `help` (any case, also `-h`,
    `--help`, `?`) as the first word. Raises InvalidCommand with a user-facing reason otherwise.
    """
    # Checked before any parsing so an enormous payload costs nothing.
    if len(text) > MAX_TEXT_LENGTH:
        raise InvalidCommand(
            f"That command is {len(text):,} characters long; the limit is {MAX_TEXT_LENGTH:,}."
        )

    words = _split_words(text)
    if not words:
        return None
    # A URL can never be one of these, so any command starting with one is a request for help.
    if words[0].lower() in _HELP_WORDS:
        return None

    if words[0].lower() in JOB_VERBS:
        return _job_command(words)
    if words[0].lower() == BUDGET_WORD:
        return _budget_command(words[1:])
    compare = words[0].lower() == COMPARE_WORD
    if compare:
        words = words[1:]
        if not words:
            raise InvalidCommand(
                "Compare needs a video link and an audio link: `/lipsync compare <video_url> <audio_url>`."
            )
    video_url = _expect_url(words[0], "video")

    if len(words) < 2 or _is_option(words[1], providers):
        raise InvalidCommand("The audio URL is missing: send the video link first, then the audio link.")
    audio_url = _expect_url(words[1], "audio")

    options = parse_options(words[2:], providers=providers)
    if compare and (options.provider or options.model):
        raise InvalidCommand(
            "Compare runs the dub on every provider I have, each with its default model, so it takes no "
            "provider or `model=`: only a playback type."
        )
    return LipSyncRequest(
        video_url, audio_url, options.playback_type, options.provider, options.model, compare
    )


def _job_command(words: list[str]) -> JobCommand:
    verb, rest = words[0].lower(), words[1:]
    if verb == "list":
        if len(rest) > 1 or (rest and not (rest[0].isascii() and rest[0].isdigit() and len(rest[0]) < 6)):
            raise InvalidCommand("`/lipsync list` takes at most a page number, e.g. `/lipsync list 2`.")
        return JobCommand("list", page=max(1, int(rest[0])) if rest else 1)
    if len(rest) != 1 or not _JOB_ID.fullmatch(rest[0].strip("`")):
        raise InvalidCommand(
            f"`/lipsync {verb}` takes one job id, as shown in the job's message: `/lipsync {verb} 1a2b3c4d`."
        )
    return JobCommand(verb, job=rest[0].strip("`").lower())


def _budget_command(rest: list[str]) -> BudgetCommand:
    if not rest:
        return BudgetCommand()
    # With `should_escape: true` (manifest.yml) Slack sends a picked channel as <#C123|name> and a person
    # as <@U123>, which _split_words leaves as "#C123" and "@U123".
    target = rest[0]
    if target.startswith("#") and _CHANNEL_ID.fullmatch(target[1:]):
        scope, scope_id = "channel", target[1:]
    elif target.startswith("@") and _USER_ID.fullmatch(target[1:]):
        scope, scope_id = "user", target[1:]
    else:
        raise InvalidCommand(
            f"{_quote(target)} is not a channel or a person I can tell apart: pick one from Slack's "
            "suggestions as you type `#` or `@`, e.g. `/lipsync budget #dubbing 50`."
        )
    if len(rest) < 2:
        raise InvalidCommand("Say how much: `/lipsync budget #dubbing 50`, or `off` to remove the budget.")
    amount_word, unit = rest[1], " ".join(rest[2:])
    if amount_word.lower() in _REMOVE_WORDS:
        return BudgetCommand(scope, scope_id, None, unit)
    digits = amount_word.removeprefix("$")
    # ASCII decimals only (Decimal() would also take Arabic-Indic or fullwidth digits, "1e3" and, once
    # commas are dropped, "1,,,0"); commas only as thousands separators: 1,000.50.
    valid = _BUDGET_AMOUNT.fullmatch(digits)
    amount = Decimal(digits.replace(",", "")) if valid else Decimal("NaN")
    if not amount.is_finite() or amount < 0 or amount > MAX_BUDGET:
        raise InvalidCommand(
            f"{_quote(amount_word)} is not an amount: use a number such as `50` or `12.5`, or `off`."
        )
    if amount_word.startswith("$") and not unit:
        unit = "USD"
    return BudgetCommand(scope, scope_id, amount, unit)


def option(word: str, providers: Collection[str] = REGISTRY.names) -> tuple[str, str] | None:
    """What an option word sets: ("playback", …), ("provider", …) or ("model", …); None if it is none.
    `providers`: the words that choose a provider."""
    lowered = word.lower()
    if lowered in PLAYBACK_TYPES:
        return "playback", lowered
    if lowered in providers:
        return "provider", lowered
    if lowered.startswith("model=") and _MODEL.fullmatch(word[len("model=") :]):
        return "model", word[len("model=") :]
    return None


def parse_options(words: list[str], *, providers: Collection[str] = REGISTRY.names) -> Options:
    """A playback type, a provider name (one of `providers`) and `model=<name>`, each at most once, in any
    order."""
    found: dict[str, str] = {}
    for word in words:
        if _looks_like_url(word):
            raise InvalidCommand(
                f"{_quote(word)} is one link too many: send exactly one video link and one audio link."
            )
        chosen = option(word, providers)
        if chosen is None:
            if word.lower().startswith("model="):
                raise InvalidCommand(f"{_quote(word)} is not a model name, e.g. `model=lipsync-2-pro`.")
            raise InvalidCommand(
                f"I don't know what to do with {_quote(word)}: after the two links I take a playback type "
                f"({_choices(PLAYBACK_TYPES)}), a provider ({_choices(providers)}) and `model=<name>`, "
                "in any order."
            )
        what, value = chosen
        if what in found:
            raise InvalidCommand(f"{_quote(word)}: give one {what} only.")
        found[what] = value
    return Options(
        found.get("playback", DEFAULT_PLAYBACK_TYPE), found.get("provider", ""), found.get("model", "")
    )


def _is_option(word: str, providers: Collection[str]) -> bool:
    return option(word, providers) is not None or word.lower().startswith("model=")


def public_url_problem(url: str) -> str | None:
    """Why this URL cannot be given to the provider, as a friendly sentence, or None when it is fine."""
    return _url_problem(url, "link")


def _split_words(text: str) -> list[str]:
    unwrapped = _SLACK_LINK.sub(r"\1", text)
    words = []
    for raw in unwrapped.split():
        # Stray brackets or pipes can survive when Slack's markup is cut or nested oddly.
        token = raw.strip("<>").split("|", 1)[0]
        # Unescape last, so "&amp;" inside a link becomes "&" and "&lt;" is not mistaken for markup.
        token = html.unescape(token)
        if token:
            words.append(token)
    return words


def _looks_like_url(word: str) -> bool:
    return "://" in word


def _expect_url(word: str, what: str) -> str:
    if not _looks_like_url(word):
        raise InvalidCommand(
            f"{_quote(word)} is not a link: the {what} must be a full URL starting with `https://`."
        )
    problem = _url_problem(word, f"{what} link")
    if problem is not None:
        raise InvalidCommand(problem)
    return word


def _url_problem(url: str, what: str) -> str | None:
    the = f"The {what}"

    if len(url) > MAX_URL_LENGTH:
        return f"{the} is {len(url):,} characters long; the limit is {MAX_URL_LENGTH:,}."

    # urlsplit silently drops tabs/newlines and other parsers treat them differently, so refuse them
    # before parsing rather than validating a URL that is not the one the provider will see.
    if _has_invisible(url):
        return f"{the} contains spaces or invisible control characters; paste the address again without them."

    # WHATWG parsers (browsers, Node) read "\" as "/" and Python does not, so they would disagree on the host.
    if "\\" in url:
        return f"{the} contains a backslash (`\\`); use a normal address with forward slashes."

    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{the} {_quote(url)} is not a valid web address."

    scheme = parts.scheme.lower()
    if not scheme:
        return f"{the} must start with `https://` or `http://`."
    if scheme not in _ALLOWED_SCHEMES:
        return f"{the} uses {_quote(scheme)}, but only `http` and `https` links can be downloaded."

    if "@" in parts.netloc:
        # Deliberately not echoed: the part before "@" may be a password.
        return (
            f"{the} contains a user name or password (`user:pass@`); use a public link that needs no login."
        )

    try:
        _ = parts.port  # raises ValueError on a malformed or out-of-range port
    except ValueError:
        return f"{the} has an invalid port number."

    if not parts.hostname:
        return f"{the} has no host name; it should look like `https://example.com/video.mp4`."

    return _host_problem(parts, what)


def _host_problem(parts: SplitResult, what: str) -> str | None:
    the = f"The {what}"
    raw_host = parts.hostname or ""
    shown = _quote(raw_host)
    in_the = f"The host {shown} in the {what}"
    not_public = f"{the} points to {shown}, which is not a public internet address the provider can reach."

    if parts.netloc.startswith("["):
        try:
            ip6 = ipaddress.ip_address(raw_host)
        except ValueError:
            return f"{in_the} is not a valid IP address."
        return None if _is_public_ip(ip6) else not_public

    # Hosts are case-insensitive and IDNA folds full-width letters and odd dots: compare the folded form.
    host = unicodedata.normalize("NFKC", raw_host).casefold().translate(_IDNA_DOTS)
    # "localhost." is the same host as "localhost".
    host = host.rstrip(".")

    if not host:
        return f"{the} has no host name; it should look like `https://example.com/video.mp4`."
    if "%" in host:
        return f"{in_the} contains percent-encoding; write the host name plainly."
    if not all(_is_host_char(ch) for ch in host):
        return f"{in_the} contains characters that are not allowed in a web address."
    labels = host.split(".")
    if "" in labels:
        return f"{in_the} is not a valid host name."

    if _matches_domain(host, _SLACK_DOMAINS):
        return (
            f"{the} is a Slack file link, which needs a Slack login, so the provider cannot download it; "
            "please use a publicly downloadable link instead."
        )

    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # Only the canonical form is unambiguous; "127.1", "2130706433", "0x7f.0.0.1" and "0177.0.0.1"
        # all reach 127.0.0.1 through inet_aton() or the WHATWG URL parser.
        if not _CANONICAL_IPV4.fullmatch(host):
            return (
                f"{in_the} is an IP address written in an unusual numeric form; "
                "use a normal public address such as a domain name or a plain one like `93.184.216.34`."
            )
        return None if _is_public_ip(ipaddress.IPv4Address(host)) else not_public

    if _matches_domain(host, _PRIVATE_SUFFIXES):
        return not_public
    if len(labels) == 1:
        return (
            f"{the} points to {shown}, a local network name without a domain, "
            "which the provider cannot reach; use a public address."
        )
    return None


def _is_public_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        # Addresses that embed an IPv4 destination are judged by that destination.
        embedded = ip.ipv4_mapped
        if embedded is None and (ip in _IPV4_COMPATIBLE or ip in _NAT64):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return _is_public_ip(embedded)
        if ip.sixtofour is not None and not _is_public_ip(ip.sixtofour):
            return False
        if ip.is_site_local:
            return False
    # is_global alone lets multicast through on Python 3.11, hence the explicit extra checks.
    return (
        ip.is_global
        and not ip.is_multicast
        and not ip.is_private
        and not ip.is_reserved
        and not ip.is_loopback
        and not ip.is_link_local
        and not ip.is_unspecified
    )


def _matches_domain(host: str, domains: tuple[str, ...]) -> bool:
    return any(host == domain or host.endswith("." + domain) for domain in domains)


def _has_invisible(text: str) -> bool:
    if text.isascii():  # the usual case, without a Unicode lookup per character (it is on the ack path)
        return " " in text or not text.isprintable()
    return any(_is_invisible(ch) for ch in text)


def _is_invisible(ch: str) -> bool:
    # Cc: control characters; Cf: zero-width and bidi marks that hide what the link really is.
    return ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Zs")


def _is_host_char(ch: str) -> bool:
    if ch.isascii():
        return _ASCII_HOST_CHARS.fullmatch(ch) is not None
    # Internationalised names: letters, combining marks and digits only.
    return unicodedata.category(ch)[0] in ("L", "M", "N")


def _choices(names: Collection[str]) -> str:
    quoted = [f"`{name}`" for name in names]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _quote(value: str, limit: int = 80) -> str:
    """Show user input as inline code without letting it break out into Slack markup."""
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    # Backticks would end the code span; &, < and > are Slack's control characters (mentions, links).
    value = value.replace("`", "'").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"`{value}`"
