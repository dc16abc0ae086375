"""Outside text made inert for Slack's mrkdwn, in this one place; every block within Block Kit's limits."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

Block = dict[str, Any]

# Block Kit's limits (https://api.slack.com/reference/block-kit/blocks; slack_sdk.models checks some).
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
CONTEXT_TEXT_MAX = 3000
IMAGE_URL_MAX = 3000
# chat.postMessage truncates `text` at 40,000 characters; a fallback is a notification, so keep it short.
TEXT_MAX = 4000
# How much outside text a message repeats (before escaping, which can make it up to 5 times longer).
LINK_MAX = 1900  # a link and its label fit in a section field
ERROR_MAX = 300
NAME_MAX = 100

# Slack ids (users U…/W…, channels C…/G…/D…): anything else is not put inside `<@…>` or `<#…>`.
_SLACK_ID = re.compile(r"[A-Z][A-Z0-9]{1,40}")
# What ends or splits `<url|label>` (or a code span), or is no part of a URL: percent-encoded in links.
_NOT_IN_LINK = re.compile(r"[|<>`\s\x00-\x1f\x7f]")
# An `&` that does not start one of the entities Slack decodes.
_STRAY_AMPERSAND = re.compile(r"&(?!amp;|lt;|gt;)")
# The units `_fit` never cuts: a `<…>` link or mention, an `&…;` entity, a code, bold, italic or strike span.
_ATOM = re.compile(r"<[^<>\n]*>|&#?\w+;|`[^`\n]*`|\*[^*\n]+\*|_[^_\n]+_|~[^~\n]+~|.", re.DOTALL)


@dataclass(frozen=True)
class Message:
    text: str  # notification and accessibility fallback
    blocks: list[Block] = field(default_factory=list)


def _message(text: str, blocks: list[Block]) -> Message:
    return Message(text=_fit(text, TEXT_MAX), blocks=blocks)


def _section(markdown: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _fit(markdown, SECTION_TEXT_MAX)}}


def _fields(*markdown: str) -> Block:
    return {
        "type": "section",
        "fields": [{"type": "mrkdwn", "text": _fit(m, FIELD_TEXT_MAX)} for m in markdown],
    }


def _context(markdown: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _fit(markdown, CONTEXT_TEXT_MAX)}]}


# ------------------------------------------------------------ outside text
# Every message of bot/views is built as plain Block Kit dicts with a text fallback. Text from outside
# (provider errors, file names, URLs, ids, anything a user typed) is never written into mrkdwn raw: `_code`
# shows it verbatim as an inline code span and `_link` links only a clean http(s) URL, both escaping through
# `_escape`. Every block is kept within Block Kit's limits by `_fit`, which shortens text without cutting a
# link, an entity or a formatted span in half. The underscored helpers are for bot/views' modules only.


def _escape(text: str) -> str:
    """The one escaping of outside text: Slack reads only these three characters as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _inert(mrkdwn: str) -> str:
    """Our own mrkdwn that may hold no link or mention: `<`, `>` and any `&` that starts no entity written
    as entities (the entities already in it stay)."""
    return _STRAY_AMPERSAND.sub("&amp;", mrkdwn).replace("<", "&lt;").replace(">", "&gt;")


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _code(text: str, limit: int = ERROR_MAX) -> str:
    """Outside text shown verbatim: an inline code span has no mentions, links or formatting."""
    # A code span is one line and ends at the next backtick.
    flat = " ".join(text.replace("`", "'").split())
    return f"`{_escape(_shorten(flat, limit))}`" if flat else "(blank)"


def _link(url: str, label: str | None = None) -> str:
    """A clickable http(s) link; any other or over-long URL is shown, shortened, as code instead."""
    if not url.lower().startswith(("https://", "http://")):
        return _code(url, 80)
    # Characters that would end or split `<url|label>` are percent-encoded, which keeps the link working.
    target = _escape(_NOT_IN_LINK.sub(lambda m: quote(m.group(), safe=""), url))
    link = f"<{target}|{_escape(label)}>" if label else f"<{target}>"
    if len(link) > LINK_MAX:
        return f"{_code(url, 80)} (too long to show as a link)"
    return link


def _mention(user: str) -> str:
    return f"<@{user}>" if _SLACK_ID.fullmatch(user) else _code(user, 40)


def _fit(markdown: str, limit: int) -> str:
    """`markdown` within `limit` characters, cut only between whole links, entities and spans."""
    if len(markdown) <= limit:
        return markdown
    kept, size = [], 0
    for atom in _ATOM.finditer(markdown):
        if size + len(atom.group()) > limit - 1:
            break
        kept.append(atom.group())
        size += len(atom.group())
    return "".join(kept) + "…"


def plain(mrkdwn: str) -> str:
    """Our own mrkdwn as plain text (for modal errors): no emoji codes, code marks or entities."""
    text = re.sub(r":[a-z_]+: ", "", mrkdwn).replace("`", "")
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
