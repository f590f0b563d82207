"""Typed settings, read once from the environment and an optional ``.env`` file.

A district office runs tiaojie from environment variables (systemd, a container, a
shell). Every knob lives here so that a wrong value is caught at start-up with one line
naming the variable, instead of a traceback deep inside a handler later.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Telegram accepts 1-256 characters of A-Z, a-z, 0-9, _ and - as a webhook secret.
_WEBHOOK_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class SettingsError(Exception):
    """A setting is missing or wrong; ``str()`` is one line naming it and why."""


class Settings(BaseSettings):
    """All runtime configuration. Field names map to upper-case variables."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    database_url: str = Field(
        default="sqlite+aiosqlite:///./var/tiaojie.db", alias="TIAOJIE_DATABASE_URL"
    )
    http_host: str = Field(default="127.0.0.1", alias="TIAOJIE_HTTP_HOST")
    http_port: int = Field(default=8080, ge=1, le=65535, alias="TIAOJIE_HTTP_PORT")
    telegram_bot_token: SecretStr | None = Field(default=None, alias="TELEGRAM_BOT_TOKEN")
    telegram_base_url: str = Field(
        default="https://api.telegram.org/bot", alias="TELEGRAM_BASE_URL"
    )
    telegram_base_file_url: str | None = Field(default=None, alias="TELEGRAM_BASE_FILE_URL")
    telegram_webhook_url: str | None = Field(default=None, alias="TELEGRAM_WEBHOOK_URL")
    telegram_webhook_secret: SecretStr | None = Field(default=None, alias="TELEGRAM_WEBHOOK_SECRET")
    nlu_backend: Literal["builtin", "rasa"] = Field(default="builtin", alias="TIAOJIE_NLU_BACKEND")
    rasa_url: str = Field(default="http://127.0.0.1:5005", alias="RASA_URL")
    rasa_timeout: float = Field(default=2.0, gt=0, le=60, alias="RASA_TIMEOUT")
    model_dir: Path = Field(default=Path("models"), alias="TIAOJIE_MODEL_DIR")
    data_dir: Path = Field(default=Path("var"), alias="TIAOJIE_DATA_DIR")
    secret_key: SecretStr | None = Field(default=None, alias="TIAOJIE_SECRET_KEY")
    language: Literal["zh", "en"] = Field(default="zh", alias="TIAOJIE_LANGUAGE")
    timezone: str = Field(default="Asia/Shanghai", alias="TIAOJIE_TIMEZONE")
    reference_prefix: str = Field(
        default="BA", pattern=r"^[A-Z]{2,6}$", alias="TIAOJIE_REFERENCE_PREFIX"
    )
    centres_file: Path = Field(
        default=Path("storage/data/baoan_centres.yml"), alias="TIAOJIE_CENTRES_FILE"
    )
    sweep_seconds: int = Field(default=60, ge=0, le=3600, alias="TIAOJIE_SWEEP_SECONDS")
    # Several workers (issue 16): the leader (Telegram poller, scheduler) holds a lease of
    # ``leader_ttl`` seconds renewed every third of it, so a dead leader is replaced
    # within ttl + ttl/3 (10 s → about 13 s, the issue asks ≤ 15 s); a message of one
    # chat waits at most ``chat_wait_seconds`` for that chat's previous message.
    leader_ttl: float = Field(default=10.0, ge=1, le=300, alias="TIAOJIE_LEADER_TTL")
    chat_wait_seconds: float = Field(default=30.0, gt=0, le=300, alias="TIAOJIE_CHAT_WAIT_SECONDS")
    #: On PostgreSQL, also order a chat's messages with an advisory lock. Off by default:
    #: the version check with retries bounded in time keeps every message and the order
    #: in which they commit, and benchmarks/scale_bench.py measured it 3–5 % cheaper
    #: (one statement less per message; docs/scaling.md). The lock serves deployments
    #: whose bridges send many messages of one chat at once (no turn done twice).
    chat_lock: bool = Field(default=False, alias="TIAOJIE_CHAT_LOCK")
    # WeChat Official Account (公众号) for residents; on when token, app id and secret are set.
    wechat_token: SecretStr | None = Field(default=None, alias="WECHAT_TOKEN")
    wechat_app_id: str | None = Field(default=None, alias="WECHAT_APP_ID")
    wechat_app_secret: SecretStr | None = Field(default=None, alias="WECHAT_APP_SECRET")
    wechat_aes_key: SecretStr | None = Field(default=None, alias="WECHAT_AES_KEY")
    wechat_api_base_url: str = Field(
        default="https://api.weixin.qq.com", alias="WECHAT_API_BASE_URL"
    )
    wechat_template_id_status: str | None = Field(default=None, alias="WECHAT_TEMPLATE_ID_STATUS")
    #: Where people reach this installation (links to the web workspace on cards).
    public_url: str | None = Field(default=None, alias="TIAOJIE_PUBLIC_URL")
    # Learning loop (issue 13): how often each process checks the model registry, and
    # when a parse counts as doubtful enough to rank high in the review inbox.
    model_poll_seconds: float = Field(default=2.0, gt=0, le=5, alias="TIAOJIE_MODEL_POLL_SECONDS")
    review_low_confidence: float = Field(
        default=0.5, ge=0, le=1, alias="TIAOJIE_REVIEW_LOW_CONFIDENCE"
    )
    review_small_margin: float = Field(default=0.1, ge=0, le=1, alias="TIAOJIE_REVIEW_SMALL_MARGIN")
    # The web workspace (/desk/).
    https: bool = Field(default=False, alias="TIAOJIE_HTTPS")
    session_hours: int = Field(default=12, ge=1, le=24 * 14, alias="TIAOJIE_SESSION_HOURS")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", alias="TIAOJIE_LOG_LEVEL"
    )
    # --- retention (PIPL art. 19: kept no longer than needed; see README "Privacy")
    retain_draft_days: int = Field(default=30, ge=1, le=3650, alias="TIAOJIE_RETAIN_DRAFT_DAYS")
    retain_update_ids_days: int = Field(
        default=7, ge=1, le=365, alias="TIAOJIE_RETAIN_UPDATE_IDS_DAYS"
    )
    retain_closed_years: int = Field(default=3, ge=1, le=30, alias="TIAOJIE_RETAIN_CLOSED_YEARS")
    #: Captured NLU messages that never led to a case (with a case, they go with it).
    retain_capture_days: int = Field(
        default=365, ge=1, le=3650, alias="TIAOJIE_RETAIN_CAPTURE_DAYS"
    )
    # --- HTTP channels (REST and Rasa's callback channel)
    rest_token: SecretStr | None = Field(default=None, alias="TIAOJIE_REST_TOKEN")
    callback_url: str | None = Field(default=None, alias="TIAOJIE_CALLBACK_URL")
    # --- observability (issue 16): /metrics and the log format
    #: Bearer token for /metrics; without it /metrics answers on loopback only.
    metrics_token: SecretStr | None = Field(default=None, alias="TIAOJIE_METRICS_TOKEN")
    #: ``json``: one JSON object per log line (level, logger, message …) for collectors.
    log_format: Literal["text", "json"] = Field(default="text", alias="TIAOJIE_LOG_FORMAT")

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        """Accept the plain URLs people copy from docs and pick the async driver."""
        value = value.strip()
        if value.startswith("sqlite:"):
            value = "sqlite+aiosqlite:" + value[len("sqlite:") :]
        elif value.startswith(("postgresql:", "postgres:")):
            value = "postgresql+asyncpg:" + value.split(":", 1)[1]
        if not value.startswith(("sqlite+aiosqlite:", "postgresql+asyncpg:")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @field_validator("telegram_base_url", "rasa_url", "telegram_webhook_url", "callback_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("wechat_api_base_url")
    @classmethod
    def _plain_http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value is not None else None

    @field_validator("wechat_aes_key")
    @classmethod
    def _aes_key_shape(cls, value: SecretStr | None) -> SecretStr | None:
        """WeChat's EncodingAESKey: 43 characters of A-Z, a-z and 0-9."""
        if value is not None and not re.match(r"^[A-Za-z0-9]{43}$", value.get_secret_value()):
            raise ValueError("must be the 43-character EncodingAESKey from the WeChat console")
        return value

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.match(r"^\d+:[A-Za-z0-9_-]+$", value.get_secret_value()):
            raise ValueError("does not look like a bot token from @BotFather (digits:letters)")
        return value

    @field_validator(
        "rest_token",
        "callback_url",
        "metrics_token",
        # deployment (issue 16): env files and compose files list every variable, empty
        # when unused; an empty secret key must never become the key.
        "secret_key",
        "public_url",
        "telegram_bot_token",
        "telegram_base_file_url",
        "telegram_webhook_url",
        "telegram_webhook_secret",
        "wechat_token",
        "wechat_app_id",
        "wechat_app_secret",
        "wechat_aes_key",
        "wechat_template_id_status",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``TIAOJIE_REST_TOKEN=`` in an env file means "not set", not an empty token."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("rest_token", "metrics_token")
    @classmethod
    def _rest_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        """A guessable or empty token would be no protection at all."""
        if value is not None and len(value.get_secret_value().strip()) < 16:
            raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 24`)")
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _WEBHOOK_SECRET.match(value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> Settings:
        """A webhook without a secret would let anyone on the internet forge updates."""
        if self.telegram_webhook_url and self.telegram_webhook_secret is None:
            raise ValueError("TELEGRAM_WEBHOOK_SECRET must be set when TELEGRAM_WEBHOOK_URL is set")
        return self

    @property
    def wechat_enabled(self) -> bool:
        """The Official Account channel runs when its token, app id and secret are set."""
        return bool(self.wechat_token and self.wechat_app_id and self.wechat_app_secret)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def listens_on_loopback(self) -> bool:
        """True when only this machine can reach the HTTP server."""
        host = self.http_host.strip().strip("[]").lower()
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def http_channels_open(self) -> bool:
        """REST and callback channels run: behind a token, or reachable from here only."""
        return self.rest_token is not None or self.listens_on_loopback


def _describe(error: ValidationError) -> str:
    """Turn pydantic's report into one line per setting, naming the variable."""
    parts = []
    for item in error.errors():
        name = ".".join(str(p) for p in item.get("loc", ())) or "settings"
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        shown = item.get("input")
        hidden = any(word in name for word in ("TOKEN", "SECRET", "KEY"))
        if name != "settings" and isinstance(shown, str | int | float) and not hidden:
            # A database URL may carry a password: show its shape, never the secret.
            shown = re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", str(shown))
            message += f" (got {shown!r})"
        parts.append(f"{name}: {message}" if name != "settings" else message)
    return "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Read the settings or raise :class:`SettingsError` with one readable line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
