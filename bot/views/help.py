"""`/lipsync help`, and the answers to a command that started nothing."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from bot.providers.base import Provider
from bot.views.formats import amount_text
from bot.views.text import Message, _escape, _inert, _message, _section

# The help (`usage`) is built from the providers configured here, so it offers nothing that would be
# refused. mrkdwn: `<`, `>` and `&` that are not markup are written as entities, as Slack requires.
USAGE_LINE = "*Usage:* `/lipsync &lt;video_url&gt; &lt;audio_url&gt; [options]`"
LINKS_HELP = (
    "• `video_url`: a public, direct link to the talking-head video (mp4, mov, webm)\n"
    "• `audio_url`: a public, direct link to the new voice track (mp3, wav, m4a)"
)
# What each playback type does with a video shorter than its audio.
PLAYBACK_HELP = {
    "normal": "`normal` (default) plays it once",
    "normal_reverse": "`normal_reverse` plays it forward then backward",
    "normal_reverse_by_audio": "`normal_reverse_by_audio` stretches it to the audio's length",
}
JOBS_HELP = (
    "• `/lipsync list`, `/lipsync status &lt;job&gt;`, `/lipsync cancel &lt;job&gt;`: your jobs, one job, "
    "stop one (the job id is on its message)\n"
    "• `/lipsync budget`: this month's budgets per channel and person (admins set them: "
    "`/lipsync budget #channel 50`)"
)
SHARE_HELP = (
    "*Or share the files:* invite me to the channel (`/invite @lipsync`), then share a video and an audio "
    "file in one message there and I answer in its thread. Posted already? Use the message's ⋯ menu → "
    "*Lip-sync these files*."
)
EXAMPLE_LINKS = "https://example.com/talk.mp4 https://example.com/voice-fr.mp3"
# The help's cost line: what a minute of output costs, by each provider's own quoting rule.
HELP_MINUTE = Decimal(60)


def usage_error(reason: str) -> Message:
    """`reason` is bot/parsing/command.py's mrkdwn, with user words already quoted; no link or mention may
    remain."""
    reason = _inert(reason)
    general = _usage_text((), "")
    text = f":warning: {reason}\n\n{general}"
    return _message(text, [_section(f":warning: {reason}"), _section(general)])


def store_unavailable() -> Message:
    text = (
        ":warning: I can't reach my job database right now, so nothing was submitted and "
        "nothing was charged. Please try again in a minute."
    )
    return _message(text, [_section(text)])


def usage(providers: Sequence[Provider] = (), default: str = "") -> Message:
    """`/lipsync help`: how to use the command with the providers configured here (`providers`, `default`
    the one used when none is named), what each takes and costs, and how to share files instead."""
    general = _usage_text(providers, default)
    lines = [_provider_help(provider, default) for provider in providers]
    here = "*Providers here:*\n" + "\n".join(lines) if lines else ""
    text = general + ("\n" + here if here else "")
    return _message(text, [_section(general), *([_section(here)] if here else [])])


def _usage_text(providers: Sequence[Provider], default: str) -> str:
    """The help's first part. Without `providers` (a refused command), only what holds for every one."""
    playbacks = [p for p in PLAYBACK_HELP if not providers or any(p in x.playback for x in providers)]
    options = [
        "a playback type, for when the video is shorter than the audio: "
        + ", ".join(PLAYBACK_HELP[p] for p in playbacks)
    ]
    several = len(providers) != 1  # none given: there may be several
    if not providers:
        options.append("a provider, and `model=&lt;name&gt;` where it has models: `/lipsync help` lists them")
    elif several:
        options.append("a provider: " + ", ".join(f"`{p.name}` ({p.label})" for p in providers))
    for provider in (p for p in providers if len(p.models) > 1):
        options.append(f"`model=&lt;name&gt;` for {provider.label}, e.g. `model={_other_model(provider)}`")
    lines = [USAGE_LINE, LINKS_HELP, "• options, in any order:\n" + ";\n".join(f"    {o}" for o in options)]
    if several:
        lines.append(
            "• `/lipsync compare &lt;video_url&gt; &lt;audio_url&gt; [playback]` runs the same dub on every "
            "provider here and sums them up in one table"
        )
    example = " ".join([EXAMPLE_LINKS, *_example_options(providers, default)])
    lines += [
        JOBS_HELP,
        SHARE_HELP,
        f"*Example:* `/lipsync {example}`",
        "I post the job in this channel and answer in its thread with the dubbed video and what it cost.",
    ]
    return "\n".join(lines)


def _other_model(provider: Provider) -> str:
    """A model to show in an example: one that is not the default, so that naming it changes something."""
    return next((m for m in provider.models if m != provider.default_model), provider.default_model)


def _example_options(providers: Sequence[Provider], default: str) -> list[str]:
    """Options for the help's example that the providers here accept: a provider with a model choice
    (named if there are several), else a playback type beyond the default."""
    if not providers:
        return []
    chosen = next((p for p in providers if len(p.models) > 1), None)
    if chosen is None:
        chosen = next((p for p in providers if p.name == default), providers[0])
    words = [chosen.name] if len(providers) > 1 else []
    if len(chosen.models) > 1:
        return [*words, f"model={_other_model(chosen)}"]
    return [*words, *[p for p in PLAYBACK_HELP if p != "normal" and p in chosen.playback][:1]]


def _provider_help(provider: Provider, default: str) -> str:
    """One provider's line in the help: its options and what a minute of output costs, in its users' words
    (no setting names, no API fields)."""
    playbacks = ", ".join(f"`{p}`" for p in provider.playback)
    models = ""
    if provider.models:
        models = " · models " + ", ".join(
            f"`{m}`" + (" (default)" if m == provider.default_model else "") for m in provider.models
        )
    first = " (default)" if provider.name == default else ""
    cost = _cost_help(provider)
    return f"• `{provider.name}`: {provider.label}{first} · playback {playbacks}{models} · {cost}"


def _cost_help(provider: Provider) -> str:
    per_model = [(m, _minute_cost(provider, m)) for m in provider.models or (provider.default_model,)]
    known = [(m, cost) for m, cost in per_model if cost]
    if not known:
        return f"cost: as {provider.label} reports it, in {_escape(provider.unit)}"
    if len(per_model) == 1:
        return f"cost: about {known[0][1]} per minute of output"
    return "cost per minute of output: " + ", ".join(f"`{m}` about {cost}" for m, cost in known)


def _minute_cost(provider: Provider, model: str) -> str:
    """What a minute of output costs on `model` by the provider's quoting rule; "" when it has none."""
    quote = provider.quote(HELP_MINUTE, HELP_MINUTE, "normal", model)
    return amount_text(quote.amount, quote.unit) if quote is not None else ""


def option_refused(reason: str, providers: Sequence[Provider] = (), default: str = "") -> Message:
    """A provider or option this bot cannot honour; nothing was submitted. `reason` is our own mrkdwn."""
    reason = _inert(reason)
    available = ", ".join(f"`{p.name}` ({p.label})" for p in providers) or "none"
    text = f":warning: {reason} Nothing was submitted. Providers here: {available}."
    return _message(text, [_section(text)])
