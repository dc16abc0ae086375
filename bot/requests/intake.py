"""Turning a validated request from Slack into stored, queued jobs: the core's entry point for listeners.

The intake knows the configured providers, so it is where a provider or option the bot cannot honour is
refused (`OptionRefused`, with a friendly reason) before anything is stored or submitted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, NoReturn

from bot.jobs.indexes import Indexes
from bot.jobs.lanes import QueueWatch
from bot.jobs.marks import COMMAND_DEDUPE_TTL_SECONDS
from bot.jobs.model import (
    AudioTrack,
    Identity,
    Job,
    Media,
    Money,
    Post,
    Posts,
    PostState,
    Progress,
    ProviderOrder,
    Source,
    new_job_id,
)
from bot.jobs.records import JobRecords
from bot.parsing.command import LipSyncRequest, Options
from bot.parsing.file_share import Pair, SharedMessage
from bot.providers.base import Provider
from bot.providers.registry import Registry
from bot.views.help import option_refused
from bot.views.help import usage as usage_message
from bot.views.text import Message


class OptionRefused(Exception):
    """The request names a provider or option this bot cannot honour; `message` says why, for the user."""

    def __init__(self, message: Message) -> None:
        super().__init__(message.text)
        self.message = message


class Intake:
    def __init__(
        self,
        *,
        records: JobRecords,
        indexes: Indexes,
        registry: Registry,
        providers: Mapping[str, Provider],
        default_provider: str,
        job_timeout_seconds: float,
        watch: QueueWatch,
        max_file_bytes: int = 500 * 1024 * 1024,
    ) -> None:
        self.records = records
        self.indexes = indexes
        self.registry = registry  # every provider this bot knows; `providers` are the configured ones
        self.providers = providers
        self.default_provider = default_provider
        self.job_timeout_seconds = job_timeout_seconds
        self.watch = watch  # told of each new job: this process's worker starts it at once
        self.max_file_bytes = max_file_bytes

    def usage(self) -> Message:
        """How to use the command, with the providers configured here and their options."""
        return usage_message(list(self.providers.values()), self.default_provider)

    def choose(self, options: Options) -> tuple[Provider, str]:
        """The provider and model for these options; raises OptionRefused when they cannot be honoured."""
        name = options.provider or self.default_provider
        provider = self.providers.get(name)
        if provider is None:
            label = self.registry.labels.get(name, name)
            self._refuse(f"I have no key for {label} (`{name}`), so I can't use it here.")
        problem = provider.options_problem(options.playback_type, options.model)
        if problem is not None:
            self._refuse(problem)
        return provider, options.model or provider.default_model

    def _refuse(self, reason: str) -> NoReturn:
        providers = list(self.providers.values())
        raise OptionRefused(option_refused(reason, providers, self.default_provider))

    def _job(self, command: dict[str, Any], request: LipSyncRequest, provider: str, model: str) -> Job:
        return Job(
            id=new_job_id(),
            identity=Identity(
                team=str(command.get("team_id", "")),
                channel=str(command.get("channel_id", "")),
                person=str(command.get("user_id", "")),
                response_url=str(command.get("response_url", "")),
            ),
            order=ProviderOrder(provider=provider, model=model),
            inputs=AudioTrack(
                video=Media(link=request.video_url),
                audio=Media(link=request.audio_url),
                playback=request.playback_type,
            ),
            progress=Progress(timeout_s=int(self.job_timeout_seconds)),
        )

    async def accept_command(self, command: dict[str, Any], request: LipSyncRequest) -> list[Job]:
        """Store the job(s) of a `/lipsync` command: one, or one per provider for a compare. Returns the
        jobs that are new ([] if this very command was already accepted).

        Raises OptionRefused (nothing stored) and RedisError when the store is down."""
        if request.compare:
            return await self._accept_compare(command, request)
        provider, model = self.choose(request.options)
        job = self._job(command, request, provider.name, model)
        # trigger_id is unique per invocation, so a redelivered request (a proxy retry, a Socket Mode
        # envelope handed to two processes) maps to the same key and creates nothing.
        trigger = str(command.get("trigger_id") or "")
        dedupe = f"cmd:{trigger}" if trigger else ""
        if not await self.records.create(job, dedupe=dedupe, dedupe_ttl_s=COMMAND_DEDUPE_TTL_SECONDS):
            return []
        self.watch.new_job()
        return [job]

    async def _accept_compare(self, command: dict[str, Any], request: LipSyncRequest) -> list[Job]:
        """The same dub on every configured provider, answered in one thread (the lead job's message)."""
        if len(self.providers) < 2:
            only = ", ".join(p.label for p in self.providers.values())
            keys = " or ".join(
                f"`{e.key_setting}`" for e in self.registry.entries if e.name not in self.providers
            )
            self._refuse(
                f"Compare needs at least two providers, and I only have {only}. An admin can add {keys} "
                "(see the README)."
            )
        refusing = [p for p in self.providers.values() if request.playback_type not in p.playback]
        if refusing:
            names = ", ".join(p.label for p in refusing)
            self._refuse(
                f"{names} cannot do `{request.playback_type}` playback, so the dubs would not be comparable: "
                "compare with `normal` (or leave the playback out)."
            )
        jobs = [self._job(command, request, p.name, p.default_model) for p in self.providers.values()]
        lead = jobs[0]
        lead.order.compare_group = tuple(self.providers)
        for job in jobs:
            job.identity.source, job.identity.group, job.identity.group_size = (
                Source.COMPARE,
                lead.id,
                len(jobs),
            )
        trigger = str(command.get("trigger_id") or "")
        # Created in one event-loop turn, so the store sends them to Redis in one round trip.
        created = await asyncio.gather(
            *(
                self.records.create(
                    job,
                    dedupe=f"cmd:{trigger}:{job.order.provider}" if trigger else "",
                    dedupe_ttl_s=COMMAND_DEDUPE_TTL_SECONDS,
                )
                for job in jobs
            )
        )
        new = [job for job, made in zip(jobs, created, strict=True) if made]
        if new:
            self.watch.new_job()
        return new

    async def accept_again(
        self,
        old: Job,
        who: str,
        dedupe: str,
        response_url: str = "",
        audio_url: str = "",
        options: Options | None = None,
        no_cache: bool = False,
    ) -> tuple[Job, bool]:
        """A new job with `old`'s inputs (a retry), or with another audio link or options (a dub again), asked
        for by `who`. Returns the job and True, or the job made earlier for the same `dedupe` key (a double
        click, a resent modal) and False. Raises OptionRefused and RedisError."""
        provider_name, model = old.order.provider, old.order.model
        playback = old.inputs.playback
        if options is not None:
            provider, model = self.choose(options)
            if provider.name == old.order.provider and not options.model:
                model = old.order.model or model
            provider_name, playback = provider.name, options.playback_type
        job = Job(
            id=new_job_id(),
            identity=Identity(
                team=old.identity.team,
                channel=old.identity.channel,
                person=who,
                response_url=response_url,
                retry_of=old.id,
            ),
            order=ProviderOrder(provider=provider_name, model=model),
            inputs=AudioTrack(playback=playback),
            progress=Progress(timeout_s=int(self.job_timeout_seconds)),
            money=Money(no_cache=no_cache),
        )
        if old.identity.source is Source.FILES and old.inputs.video.file:
            # Answered in the same thread as the original; the files are hosted again for the provider
            # (from the cache when they were hosted there already).
            job.identity.source, job.identity.source_ts = Source.FILES, old.identity.source_ts
            job.identity.group, job.identity.group_size = f"again:{job.id}", 1
            job.posts.parent.ts, job.posts.parent.state = old.posts.parent.ts, PostState.POSTED
            job.inputs.video.file = old.inputs.video.file
            job.inputs.audio.file = None if audio_url else old.inputs.audio.file
            job.inputs.audio.link = audio_url
        else:
            job.inputs.video.link, job.inputs.audio.link = (
                old.inputs.video.link,
                audio_url or old.inputs.audio.link,
            )
        if await self.records.create(job, dedupe=dedupe):
            self.watch.new_job()
            return job, True
        earlier = await self.indexes.dedupe_target(dedupe)
        existing = await self.records.get(earlier) if earlier else None
        return existing or job, False

    async def accept_files(
        self, message: SharedMessage, pairs: list[Pair], options: Options, response_url: str = ""
    ) -> list[Job]:
        """Store one job per pair of files shared by `message`; returns the jobs that are new.

        Each job's dedupe key is (channel, message ts, video id, audio id), so a redelivered event (Slack
        retries, or the same message under another event id) and a shortcut on an already handled
        message start nothing, across restarts and processes. Raises OptionRefused (nothing stored) and
        RedisError when the store is down."""
        provider, model = self.choose(options)
        created = []
        for pair in pairs:
            job = Job(
                id=new_job_id(),
                identity=Identity(
                    team=message.team_id,
                    channel=message.channel,
                    person=message.user,
                    response_url=response_url,
                    source=Source.FILES,
                    source_ts=message.ts,
                    group=f"{message.channel}:{message.ts}",
                    group_size=len(pairs),
                ),
                order=ProviderOrder(provider=provider.name, model=model),
                inputs=AudioTrack(
                    video=Media(file=pair.video), audio=Media(file=pair.audio), playback=options.playback_type
                ),
                # The person's message is the thread parent: the bot posts no message of its own.
                posts=Posts(parent=Post(ts=message.root, state=PostState.POSTED)),
                progress=Progress(timeout_s=int(self.job_timeout_seconds)),
            )
            key = f"file:{message.channel}:{message.ts}:{pair.video.id}:{pair.audio.id}"
            if await self.records.create(job, dedupe=key):
                created.append(job)
        if created:
            self.watch.new_job()
        return created
