"""Turning a validated request from Slack into a stored, queued job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.command import LipSyncRequest
from bot.jobs import Job, new_job_id
from bot.store import JobStore


class Intake:
    def __init__(self, store: JobStore, job_timeout_seconds: float, on_new_job: Callable[[], None]) -> None:
        self.store = store
        self.job_timeout_seconds = job_timeout_seconds
        self.on_new_job = on_new_job  # wakes this process's worker so the job starts at once

    async def accept_command(self, command: dict[str, Any], request: LipSyncRequest) -> Job | None:
        """Store a job for a `/lipsync` command; None if this very command was already accepted.

        Raises RedisError when the store is down."""
        job = Job(
            id=new_job_id(),
            team_id=str(command.get("team_id", "")),
            channel=str(command.get("channel_id", "")),
            user=str(command.get("user_id", "")),
            response_url=str(command.get("response_url", "")),
            video_url=request.video_url,
            audio_url=request.audio_url,
            playback_type=request.playback_type,
            timeout_s=int(self.job_timeout_seconds),
        )
        # trigger_id is unique per invocation, so a redelivered request (a proxy retry, a Socket Mode
        # envelope handed to two processes) maps to the same key and creates nothing.
        trigger = str(command.get("trigger_id") or "")
        if not await self.store.create(job, dedupe=f"cmd:{trigger}" if trigger else ""):
            return None
        self.on_new_job()
        return job
