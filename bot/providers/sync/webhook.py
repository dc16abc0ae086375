"""sync.so's webhook deliveries (guides/webhooks): the `Sync-Signature` check, and the generation a
delivery names.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from bot.providers.sync.errors import GENERATION_ID

SIGNATURE_TOLERANCE_S = 300


def signed(key: bytes, header: str, body: bytes, now_s: float) -> bool:
    """`Sync-Signature: t=<unix>,v1=<hex>` over "<t>.<payload>", within SIGNATURE_TOLERANCE_S of now."""
    parts = [item.strip().partition("=") for item in header.split(",")]
    stamps = [value for name, _, value in parts if name == "t"]
    signatures = [value.lower() for name, _, value in parts if name == "v1" and value]
    if len(stamps) != 1 or not stamps[0].isdigit() or len(stamps[0]) > 12 or not signatures:
        return False
    if abs(now_s - int(stamps[0])) > SIGNATURE_TOLERANCE_S:
        return False
    prefix = stamps[0].encode() + b"."
    forms = signed_forms(body)
    expected = [hmac.new(key, prefix + form, hashlib.sha256).hexdigest() for form in forms]
    return any(hmac.compare_digest(want, got) for want in expected for got in signatures)


def signed_forms(body: bytes) -> list[bytes]:
    """What a signature may be over: the raw body as received, and the payload re-serialized compactly as
    the docs' samples do it, by JSON.stringify (non-ASCII as is) and by Python's json.dumps (non-ASCII
    escaped as \\uXXXX). ValueError for a body that is not JSON."""
    payload = json.loads(body)
    forms = [body]
    for ascii_only in (False, True):
        form = json.dumps(payload, separators=(",", ":"), ensure_ascii=ascii_only).encode()
        if form not in forms:
            forms.append(form)
    return forms


def delivery_id(data: Any) -> str | None:
    """The generation a delivery names (its `id`, at the top or under `result` or `data`), if well formed."""
    generation = delivered_generation(data)
    return None if generation is None else str(generation["id"])


def delivered_generation(data: Any) -> dict[str, Any] | None:
    """The Generation in a delivery: the body itself, or its `result` or `data` (SDK versions differ)."""
    if not isinstance(data, dict):
        return None
    for source in (data, data.get("result"), data.get("data")):
        if isinstance(source, dict):
            value = source.get("id")
            if isinstance(value, str) and GENERATION_ID.fullmatch(value):
                return source
    return None
