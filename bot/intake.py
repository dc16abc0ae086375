"""Turning a validated request from Slack into stored, queued jobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.command import LipSyncRequest
from bot.file_share import Pair, SharedMessage
from bot.jobs import Job, PostState, Source, new_job_id
from bot.store import JobStore


class Intake:
    def __init__(
        self,
        store: JobStore,
        job_timeout_seconds: float,
        on_new_job: Callable[[], None],
        max_file_bytes: int = 500 * 1024 * 1024,
    ) -> None:
        self.store = store
        self.job_timeout_seconds = job_timeout_seconds
        self.on_new_job = on_new_job  # wakes this process's worker so the job starts at once
        self.max_file_bytes = max_file_bytes

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

    async def accept_files(
        self, message: SharedMessage, pairs: list[Pair], playback_type: str, response_url: str = ""
    ) -> list[Job]:
        """Store one job per pair of files shared by `message`; returns the jobs that are new.

        Each job's dedupe key is (channel, message ts, video id, audio id), so a redelivered event (Slack
        retries, or the same message under another event id) and a shortcut on an already handled
        message start nothing, across restarts and processes. Raises RedisError when the store is down."""
        created = []
        for pair in pairs:
            job = Job(
                id=new_job_id(),
                team_id=message.team_id,
                channel=message.channel,
                user=message.user,
                response_url=response_url,
                source=Source.FILES,
                source_ts=message.ts,
                group=f"{message.channel}:{message.ts}",
                group_size=len(pairs),
                playback_type=playback_type,
                video_file=pair.video.to_json(),
                audio_file=pair.audio.to_json(),
                # The user's message is the thread parent: the bot posts no message of its own.
                parent_ts=message.root,
                parent_state=PostState.POSTED,
                timeout_s=int(self.job_timeout_seconds),
            )
            key = f"file:{message.channel}:{message.ts}:{pair.video.id}:{pair.audio.id}"
            if await self.store.create(job, dedupe=key):
                created.append(job)
        if created:
            self.on_new_job()
        return created
