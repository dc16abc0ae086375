"""LipSync.dev's two wires (bot/providers/lipsyncdev/client.py's docstring): each version's headers, paths,
submit body, and how to tell from an answer that the server speaks it.
"""

from __future__ import annotations

from typing import Any, Literal

from bot.providers.base import Order, ProviderError
from bot.providers.http import Answer
from bot.providers.lipsyncdev.answers import parse

SUBMIT_PATH = "/v1/lipsync/submit"  # version A
GENERATE_PATH = "/v1/lipsync/generate"  # version B
STATUS_PATH = "/v1/lipsync/status"  # both
USAGE_PATH = "/v1/usage"  # version A
PROBE_JOB_ID = "lipsync-bot-version-probe"  # no such job: reading its status changes nothing

Version = Literal["a", "b"]


class WireA:
    """Version A, the "Bearer" docs."""

    version: Version = "a"
    name = "API version A"
    title = f"{name} (Bearer, /v1/lipsync/submit)"
    submit_path = SUBMIT_PATH
    probe_path = USAGE_PATH
    accepts_webhook = False  # its submit documents no webhookUrl

    def __init__(self, *, video_enhance: int, fps: str) -> None:
        self._video_params: dict[str, int | str] = {
            "video_width": 0,
            "video_height": 0,
            "video_enhance": video_enhance,
            "fps": fps,
        }

    def auth(self, secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}

    def submit_body(self, order: Order) -> dict[str, Any]:
        return {"srcVideoUrl": order.video, "audioUrl": order.audio, "videoParams": dict(self._video_params)}

    @staticmethod
    def speaks(answer: Answer) -> bool:
        """The usage answer (or a refusal of the key): a JSON object, not version B's envelope."""
        body = parse(answer.body)
        if not isinstance(body, dict) or "success" in body:
            return False
        return 200 <= answer.status < 300 or answer.status in (401, 403)


class WireB:
    """Version B, the "X-API-Key" docs."""

    version: Version = "b"
    name = "API version B"
    title = f"{name} (X-API-Key, /v1/lipsync/generate)"
    submit_path = GENERATE_PATH
    probe_path = f"{STATUS_PATH}/{PROBE_JOB_ID}"
    accepts_webhook = True

    def __init__(self, *, fps: str) -> None:
        # Its `fps` is a number (24-60); "original" has no equivalent, so the service's default is kept.
        # `resolution` and `maxDuration` are left to the service too (no setting asks for them).
        self._settings: dict[str, int] = {"fps": int(fps)} if fps.isdigit() else {}

    def auth(self, secret: str) -> dict[str, str]:
        return {"X-API-Key": secret}

    def submit_body(self, order: Order) -> dict[str, Any]:
        body: dict[str, Any] = {"videoUrl": order.video, "audioUrl": order.audio}
        if self._settings:
            body["settings"] = dict(self._settings)
        if order.webhook_url:
            body["webhookUrl"] = order.webhook_url
        return body

    @staticmethod
    def speaks(answer: Answer) -> bool:
        """Version B's `{"success": …}` envelope, whatever the status (a 404 for the probe's unknown job)."""
        body = parse(answer.body)
        return isinstance(body, dict) and isinstance(body.get("success"), bool)


Wire = WireA | WireB
Probe = Answer | ProviderError
