"""The one settings object, read from the environment and `.env`.

The upper-case names are a public interface (README, `.env.example`, deployments): keep them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Where a newcomer finds each required value; shown when one is missing.
WHERE_TO_GET = {
    "SLACK_BOT_TOKEN": "api.slack.com/apps → your app → OAuth & Permissions → Bot User OAuth Token (xoxb-…)",
    "SLACK_APP_TOKEN": "api.slack.com/apps → your app → Basic Information → App-Level Tokens → "
    "Generate Token and Scopes, scope connections:write (xapp-…). This is Socket Mode, which needs no "
    "public URL; for HTTP mode set SLACK_SIGNING_SECRET instead (README, Socket Mode or HTTP mode)",
    "JOGG_API_KEY": "app.jogg.ai → API → API Keys",
}


MISSING_MARKER = "missing settings: "


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    slack_bot_token: SecretStr
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None  # set → Socket Mode; unset → HTTP mode
    slack_api_url: str = "https://slack.com/api/"
    jogg_api_key: SecretStr
    jogg_api_url: str = "https://api.jogg.ai"
    redis_url: str | None = None  # unset → embedded redis-server under DATA_DIR
    data_dir: Path = Path("./data")
    port: int = Field(default=3000, ge=0, le=65535)  # 0 picks a free port
    poll_interval_seconds: float = Field(default=5.0, gt=0)  # for fresh tasks; slower as they run long
    poll_max_interval_seconds: float = Field(default=30.0, gt=0)  # for tasks running 15 min or more
    job_timeout_seconds: float = Field(default=1800.0, gt=0)
    max_file_mb: float = Field(default=500.0, gt=0)  # largest Slack file the bot re-hosts at JoggAI
    max_jobs_per_message: int = Field(default=10, ge=1)  # dubs one message may start (Slack allows 10 files)
    # Advanced tuning; the defaults suit production.
    jogg_posts_per_minute: int = Field(default=20, ge=1)  # JoggAI allows 20 POSTs/min per key
    lease_seconds: float = Field(default=60.0, gt=0)  # how long a crashed process holds a job
    http_timeout_seconds: float = Field(default=10.0, gt=0)  # per request to Slack and JoggAI
    # After a JoggAI create whose answer was lost: how long to keep looking for its task before creating
    # again (at least 4 times HTTP_TIMEOUT_SECONDS). RELIABILITY.md, "Never paid twice".
    create_settle_seconds: float = Field(default=120.0, gt=0)
    log_level: str = "INFO"

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        # slack_sdk appends the method name to base_url verbatim.
        return value if value.endswith("/") else value + "/"

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix:// (e.g. redis://localhost:6379/0)")
        return value or None

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value.upper()

    @field_validator("jogg_api_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

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
        present = {k.lower() for k, v in values.items() if v not in (None, "")}
        required = ["slack_bot_token", "jogg_api_key"]
        if not present & {"slack_app_token", "slack_signing_secret"}:
            required.insert(1, "slack_app_token")  # Socket Mode, the default; a signing secret means HTTP
        missing = [name.upper() for name in required if name not in present]
        if missing:
            raise ValueError(MISSING_MARKER + ",".join(missing))
        return values

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None


class StartupError(Exception):
    """Something an operator must fix before the bot can run (a refused token, a busy port…);
    `str()` says what."""


class SettingsError(Exception):
    """Settings are missing or wrong; `str()` is a message for a human, without a traceback."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_problems(exc)) from None


def describe_problems(exc: ValidationError) -> str:
    lines = ["The bot cannot start: some settings are missing or wrong.", ""]
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if message.startswith(MISSING_MARKER):
            for name in message.removeprefix(MISSING_MARKER).split(","):
                lines.append(f"  {name} is not set. Get it at: {WHERE_TO_GET[name]}")
        else:
            name = str(error["loc"][0]).upper() if error["loc"] else "settings"
            lines.append(f"  {name}: {message}")
    lines += ["", "Set them in the environment or in a .env file (copy .env.example)."]
    return "\n".join(lines)
