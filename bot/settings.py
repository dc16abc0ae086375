"""The one settings object, read from the environment and `.env`.

The upper-case names are a public interface (README, `.env.example`, deployments): keep them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Where a newcomer finds each required value; shown when one is missing.
WHERE_TO_GET = {
    "SLACK_BOT_TOKEN": "api.slack.com/apps → your app → OAuth & Permissions → Bot User OAuth Token (xoxb-…)",
    "SLACK_APP_TOKEN": "api.slack.com/apps → your app → Basic Information → App-Level Tokens → "
    "Generate Token and Scopes, scope connections:write (xapp-…). This is Socket Mode, which needs no "
    "public URL; for HTTP mode set SLACK_SIGNING_SECRET instead (README, Socket Mode or HTTP mode)",
}

NO_PROVIDER = "no provider"

# sync.so bills per second of output by model and plan (the team's provider notes, shared/docs/providers.md
# §2.6): the top of each published range, so a reply never understates; set SYNC_PRICES to your plan's
# ("lipsync-2=0.04,sync-3=0.107").
DEFAULT_SYNC_PRICES = "lipsync-2=0.05,lipsync-2-pro=0.083,sync-3=0.133"


MISSING_MARKER = "missing settings: "


@dataclass(frozen=True, kw_only=True)
class ProviderKey:
    """The setting that enables one provider (any one is enough), and where to get its value. The providers
    and their keys are listed in bot/providers/registry.py, which hands them to Settings as
    `provider_keys`."""

    provider: str  # the word users type
    setting: str  # e.g. JOGG_API_KEY
    where: str

    @property
    def field(self) -> str:
        return self.setting.lower()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )
    # Which settings enable which provider, in the order the default is chosen. Empty here: settings are
    # read through a registry (bot/providers/registry.py, `Registry.load_settings`), whose subclass of
    # this one fills it in, so this module never imports the providers.
    provider_keys: ClassVar[tuple[ProviderKey, ...]] = ()

    slack_bot_token: SecretStr
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None  # set → Socket Mode; unset → HTTP mode
    slack_api_url: str = "https://slack.com/api/"
    # Providers: each is enabled by its key; at least one is needed.
    jogg_api_key: SecretStr | None = None
    jogg_api_url: str = "https://api.jogg.ai"
    sync_api_key: SecretStr | None = None
    sync_api_url: str = "https://api.sync.so"
    sync_model: str = "lipsync-2"
    sync_prices: str = DEFAULT_SYNC_PRICES  # USD per second of output, per model
    sync_max_concurrent: int = Field(default=0, ge=0)  # the plan's cap on running generations; 0 = none
    sync_webhook_secret: SecretStr | None = None  # verifies Sync-Signature on webhook deliveries
    lipsyncdev_api_key: SecretStr | None = None
    lipsyncdev_api_url: str = "https://www.lipsync.dev/api"
    # Its two published APIs (shared/docs/providers.md §3): a (Bearer, /v1/lipsync/submit), b (X-API-Key,
    # /v1/lipsync/generate), or auto: ask the server at start which one it speaks.
    lipsyncdev_api_version: Literal["auto", "a", "b"] = "auto"
    lipsyncdev_video_enhance: int = Field(default=1, ge=0, le=1)
    lipsyncdev_fps: Literal["25", "original"] = "25"
    default_provider: str | None = None  # a provider's name (`provider_keys`); unset: the first configured
    # Where the bot is reachable from the internet (https): provider webhooks and the signed links that
    # serve shared files to providers without an upload API. Unset: polling only, and no such links.
    public_url: str | None = None
    redis_url: str | None = None  # unset → embedded redis-server under DATA_DIR
    data_dir: Path = Path("./data")
    port: int = Field(default=3000, ge=0, le=65535)  # 0 picks a free port
    # GET /metrics (spend, job counts, Slack errors) for operators only, on a listener of its own: never on
    # PORT, which faces Slack (HTTP mode) and the internet (PUBLIC_URL). Unset: no metrics; 0: a free port.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"  # e.g. 0.0.0.0 for a scraper in another container; publish neither
    poll_interval_seconds: float = Field(default=5.0, gt=0)  # for fresh tasks; slower as they run long
    poll_max_interval_seconds: float = Field(default=30.0, gt=0)  # for tasks running 15 min or more
    job_timeout_seconds: float = Field(default=1800.0, gt=0)
    max_file_mb: float = Field(default=500.0, gt=0)  # largest Slack file the bot passes to a provider
    max_result_upload_mb: float = Field(
        default=1000.0, ge=0
    )  # the result video into the thread; 0: link only
    max_jobs_per_message: int = Field(default=10, ge=1)  # dubs one message may start (Slack allows 10 files)
    # Advanced tuning; the defaults suit production.
    jogg_posts_per_minute: int = Field(default=20, ge=1)  # JoggAI allows 20 POSTs/min per key
    lease_seconds: float = Field(default=60.0, gt=0)  # how long a crashed process holds a job
    # chat.update calls per minute per workspace, all processes together (Slack's Tier 3 allows 50+).
    slack_updates_per_minute: int = Field(default=45, ge=1)
    http_timeout_seconds: float = Field(default=10.0, gt=0)  # per request to Slack and providers
    # After a JoggAI create whose answer was lost: how long to keep looking for its task before creating
    # again (at least 4 times HTTP_TIMEOUT_SECONDS). RELIABILITY.md, "The create-recovery rule".
    create_settle_seconds: float = Field(default=120.0, gt=0)
    # Money (bot/lanes/gate.py). Before paying, each link is fetched in part (HEAD and small ranged GETs) and
    # refused if it is not media; PREFLIGHT=off skips that for deployments whose egress reaches only Slack
    # and the providers (the quote then uses only what Slack says of shared files).
    preflight: Literal["on", "off"] = "on"
    # Private networks the link check may reach anyway, as CIDRs ("10.1.0.0/16"): an internal media server.
    preflight_allowed_networks: str = ""
    # Ask before dubbing when the quote is above this, per unit: "credits=2,USD=5", or a bare amount ("2")
    # in the default provider's unit. Unset: never ask.
    confirm_above: str = ""
    # An input whose length the bot could not learn is quoted as if it were this long (bot/lanes/gate.py, the
    # unknown-cost rule): that upper estimate is reserved against budgets until the job ends.
    unknown_length_seconds: float = Field(default=600.0, gt=0, le=86400)
    # An unanswered quote expires after this; Slack's private reply link lasts 30 minutes.
    quote_expires_minutes: float = Field(default=15.0, gt=0, le=30)
    cache_days: float = Field(default=30.0, ge=0)  # same inputs answered from an earlier result; 0 = off
    admin_channel: str | None = None  # channel id (C…) for balance warnings
    balance_warn_below: str = "credits=10"  # warn ADMIN_CHANNEL once when a balance falls below, per unit
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line, with the job's fields

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        # slack_sdk appends the method name to base_url verbatim.
        return value if value.endswith("/") else value + "/"

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        # One parser for the URL forms (TCP, TLS, unix socket, Sentinel), so a mistake in REDIS_URL is
        # named at start rather than on the first command.
        from bot.redis_client import check_url

        if value:
            check_url(value)
        return value or None

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value.upper()

    @field_validator("jogg_api_url", "sync_api_url", "lipsyncdev_api_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("public_url")
    @classmethod
    def _public_https(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if not parts.hostname or (parts.scheme != "https" and not (parts.scheme == "http" and loopback)):
            raise ValueError(
                "must be an https:// address the internet can reach, e.g. https://bot.example.com"
            )
        if parts.query or parts.fragment:
            raise ValueError("must be a plain address without ?query or #fragment")
        return value.rstrip("/")

    @field_validator("default_provider", mode="before")
    @classmethod
    def _blank_default(cls, value: object) -> object:
        return value.strip().lower() or None if isinstance(value, str) else value

    @field_validator("default_provider")
    @classmethod
    def _known_provider(cls, value: str | None) -> str | None:
        names = [f"'{key.provider}'" for key in cls.provider_keys]
        if value is not None and value not in [key.provider for key in cls.provider_keys]:
            choices = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)
            raise ValueError(f"Input should be {choices}")
        return value

    @field_validator("sync_prices")
    @classmethod
    def _prices(cls, value: str) -> str:
        parse_prices(value)
        return value

    @field_validator("balance_warn_below")
    @classmethod
    def _amounts(cls, value: str) -> str:
        parse_amounts(value, "unit=amount, e.g. credits=2,USD=5")
        return value

    @field_validator("confirm_above")
    @classmethod
    def _thresholds(cls, value: str) -> str:
        parse_thresholds(value, "the default provider's unit")
        return value

    @field_validator("preflight_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        for item in split_list(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not a network, e.g. 10.1.0.0/16") from None
        return value

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _blank_is_off(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("admin_channel", mode="before")
    @classmethod
    def _channel_id(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lstrip("#"):
            return value.strip().lstrip("#")
        return None if isinstance(value, str) else value

    @field_validator("sync_webhook_secret")
    @classmethod
    def _empty_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token_shape(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be the Bot User OAuth Token, which starts with xoxb-")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None  # SLACK_APP_TOKEN= (empty) in .env means HTTP mode
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token with connections:write, which starts with xapp-")
        return value

    @model_validator(mode="before")
    @classmethod
    def _all_required_present(cls, values: object) -> object:
        # One report naming every missing variable, rather than one per start attempt.
        if not isinstance(values, dict):
            return values
        if not cls.provider_keys:
            raise TypeError("read the settings through a provider registry (bot/providers/registry.py)")
        # A provider key that is empty or blank is unset: that provider is off.
        keys = {key.field for key in cls.provider_keys}
        values = {k: v for k, v in values.items() if not (k.lower() in keys and _blank(v))}
        present = {k.lower() for k, v in values.items() if v not in (None, "")}
        required = ["slack_bot_token"]
        if not present & {"slack_app_token", "slack_signing_secret"}:
            required.append("slack_app_token")  # Socket Mode, the default; a signing secret means HTTP
        missing = [name.upper() for name in required if name not in present]
        if not present & keys:
            missing.append(NO_PROVIDER)
        if missing:
            raise ValueError(MISSING_MARKER + ",".join(missing))
        return values

    @model_validator(mode="after")
    def _default_is_configured(self) -> Settings:
        if self.default_provider and self.default_provider not in self.configured_providers:
            key = next(k.setting for k in self.provider_keys if k.provider == self.default_provider)
            raise ValueError(f"DEFAULT_PROVIDER is {self.default_provider}, but {key} is not set")
        return self

    @model_validator(mode="after")
    def _metrics_off_the_public_port(self) -> Settings:
        if self.metrics_port and self.metrics_port == self.port:
            raise ValueError(
                f"METRICS_PORT is PORT ({self.port}): /metrics needs a port of its own, kept off the one "
                "that faces Slack and the internet. Pick another, or leave METRICS_PORT unset."
            )
        return self

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    @property
    def configured_providers(self) -> list[str]:
        """Providers with a key, in the order of `provider_keys`."""
        return [key.provider for key in self.provider_keys if getattr(self, key.field, None) is not None]

    @property
    def provider_secrets(self) -> list[SecretStr]:
        """The providers' keys that are set."""
        found = (getattr(self, key.field, None) for key in self.provider_keys)
        return [value for value in found if isinstance(value, SecretStr)]

    @property
    def chosen_default_provider(self) -> str:
        return self.default_provider or self.configured_providers[0]


def _blank(value: object) -> bool:
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    return isinstance(text, str) and not text.strip()


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_amounts(text: str, shape: str) -> dict[str, Decimal]:
    """ "credits=2,USD=5" → {name: amount}; ValueError naming the item that is not `shape`."""
    amounts: dict[str, Decimal] = {}
    for item in split_list(text):
        name, _, amount = item.partition("=")
        try:
            value = Decimal(amount.strip())
        except ArithmeticError:
            value = Decimal("NaN")
        if not name.strip() or not value.is_finite() or value < 0:
            raise ValueError(f"{item!r} is not {shape}")
        amounts[name.strip()] = value
    return amounts


_BARE_AMOUNT = re.compile(r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+")


def parse_thresholds(text: str, default_unit: str) -> dict[str, Decimal]:
    """CONFIRM_ABOVE: "credits=2,USD=5" → {unit: amount}; an amount alone ("2", ASCII digits) is in
    `default_unit` (the default provider's). ValueError naming the item that is neither."""
    shape = "unit=amount, e.g. credits=2,USD=5, or an amount alone (2) in the default provider's unit"
    bare = [item for item in split_list(text) if "=" not in item]
    if len(bare) > 1 or (bare and not _BARE_AMOUNT.fullmatch(bare[0])):
        raise ValueError(f"{bare[-1]!r} is not {shape}")
    amounts = parse_amounts(",".join(item for item in split_list(text) if "=" in item), shape)
    if bare:
        amounts.setdefault(default_unit, Decimal(bare[0]))  # a unit named explicitly wins
    return amounts


def parse_prices(text: str) -> dict[str, Decimal]:
    """ "lipsync-2=0.05,sync-3=0.133" → {model: USD per second}; ValueError naming what is wrong."""
    return parse_amounts(text, "model=price (USD per second), e.g. lipsync-2=0.05")


class StartupError(Exception):
    """Something an operator must fix before the bot can run (a refused token, a busy port…);
    `str()` says what."""


class SettingsError(Exception):
    """Settings are missing or wrong; `str()` is a message for a human, without a traceback."""


AnySettings = TypeVar("AnySettings", bound=Settings)


def load_settings(kind: type[AnySettings], **overrides: object) -> AnySettings:
    """`kind` from the environment and .env, then `overrides`. `kind` knows the providers' keys: callers
    use bot/providers/registry.py's `Registry.load_settings`."""
    try:
        return kind(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_problems(exc, kind.provider_keys)) from None


def describe_problems(exc: ValidationError, provider_keys: tuple[ProviderKey, ...]) -> str:
    lines = ["The bot cannot start: some settings are missing or wrong.", ""]
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if message.startswith(MISSING_MARKER):
            for name in message.removeprefix(MISSING_MARKER).split(","):
                if name == NO_PROVIDER:
                    lines.append("  No lip-sync provider is set up: set at least one of these keys.")
                    lines += [f"    {key.setting}: get it at {key.where}" for key in provider_keys]
                else:
                    lines.append(f"  {name} is not set. Get it at: {WHERE_TO_GET[name]}")
        else:
            name = str(error["loc"][0]).upper() if error["loc"] else "settings"
            lines.append(f"  {name}: {message}")
    lines += ["", "Set them in the environment or in a .env file (copy .env.example)."]
    return "\n".join(lines)
