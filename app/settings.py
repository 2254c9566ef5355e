"""Every fairq setting, read from the environment once.

This is the only module that reads the environment. Each field of
:class:`Settings` is the variable ``FAIRQ_<FIELD NAME IN UPPER CASE>``; its
description is what the README and ``.env.example`` say about it.

With no variable set, fairq runs on the embedded default: SQLite under
``FAIRQ_DATA_DIR``, Dramatiq's in-process StubBroker, in-memory limits and a
local folder as object store. Each real component is switched on by its own
variable.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "SettingsError", "get_settings", "use_settings", "ENV_PREFIX"]

#: The prefix of every fairq environment variable.
ENV_PREFIX = "FAIRQ_"


class SettingsError(ValueError):
    """A setting has a bad value; the message names the variable."""


def _check_scheme(value: str | None, variable: str, schemes: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    scheme = urlsplit(value).scheme
    if scheme not in schemes:
        raise ValueError(
            f"{ENV_PREFIX}{variable} must be a URL starting with one of "
            f"{', '.join(s + '://' for s in schemes)} (got scheme {scheme or 'none'!r})"
        )
    return value


class Settings(BaseSettings):
    """fairq's configuration. Immutable once read."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    data_dir: Path = Field(
        Path(".fairq"),
        description="Folder for the embedded default: the SQLite database and the local object store.",
    )
    database_url: str | None = Field(
        None,
        description="PostgreSQL URL (postgresql://user@host:5432/db). Unset: SQLite at <data dir>/fairq.db.",
    )
    broker_url: str | None = Field(
        None,
        description="RabbitMQ URL (amqp://guest:guest@127.0.0.1:5672/%2F). Unset: Dramatiq's in-process StubBroker.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis URL for rate limits and counters (redis://127.0.0.1:6379/0). Unset: in-memory.",
    )
    s3_bucket: str | None = Field(
        None,
        description="S3 bucket for uploaded files. Unset: a local folder under <data dir>/objects.",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="S3 endpoint for MinIO or another S3-compatible server. Unset: AWS's own endpoint.",
    )
    s3_region: str = Field("us-east-1", description="S3 region.")
    s3_access_key_id: str | None = Field(
        None, description="S3 access key id. Unset: boto3's own credential chain."
    )
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret access key.")
    worker_threads: int = Field(
        8, ge=1, le=256, description="Worker threads in `fairq up` (a `dramatiq app.tasks` process takes `--threads`)."
    )
    log_level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING, ERROR.")
    max_request_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest JSON request body in bytes; larger ones get 413."
    )
    readiness_timeout: float = Field(
        2.0, gt=0, le=60, description="Seconds each /readyz backend check may take."
    )
    periodic_retention_days: int = Field(
        30, ge=1, description="Days to keep the record of periodic job runs."
    )

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"{ENV_PREFIX}LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR (got {value!r})")
        return level

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        value = _check_scheme(value, "DATABASE_URL", ("postgresql", "postgresql+psycopg2", "postgres", "sqlite"))
        if value and value.startswith("postgres://"):
            value = "postgresql://" + value[len("postgres://"):]
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        return _check_scheme(value, "BROKER_URL", ("amqp", "amqps"))

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return _check_scheme(value, "REDIS_URL", ("redis", "rediss", "unix"))

    @field_validator("s3_endpoint_url")
    @classmethod
    def _s3_endpoint_url(cls, value: str | None) -> str | None:
        return _check_scheme(value, "S3_ENDPOINT_URL", ("http", "https"))

    @model_validator(mode="after")
    def _s3_needs_bucket(self) -> Settings:
        if self.s3_endpoint_url and not self.s3_bucket:
            raise ValueError(f"{ENV_PREFIX}S3_BUCKET must be set when {ENV_PREFIX}S3_ENDPOINT_URL is set")
        return self

    # -- derived values -------------------------------------------------

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL SQLAlchemy connects to (SQLite file when none is set)."""
        if self.database_url:
            if self.database_url.startswith("postgresql://"):
                return "postgresql+psycopg2://" + self.database_url[len("postgresql://"):]
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'fairq.db').resolve()}"

    @property
    def embedded(self) -> dict[str, bool]:
        """For each backend, whether it runs on the embedded default."""
        return {
            "database": not self.database_url,
            "broker": not self.broker_url,
            "redis": not self.redis_url,
            "storage": not self.s3_bucket,
        }

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Read the environment (overridden by ``overrides``).

        Raises:
          SettingsError: a variable has a bad value; the message names it.
        """
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Every environment variable fairq reads, with its description."""
        return {
            ENV_PREFIX + name.upper(): field.description or ""
            for name, field in cls.model_fields.items()
        }


#: Fields whose values may hold credentials: never echoed in an error.
_SENSITIVE = frozenset({"database_url", "broker_url", "redis_url", "s3_secret_access_key", "jwt_secret"})


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if loc:
            variable = ENV_PREFIX + loc[0].upper()
            if message.startswith(ENV_PREFIX):
                lines.append(message)
            elif loc[0] in _SENSITIVE:
                lines.append(f"{variable}: {message}")
            else:
                lines.append(f"{variable}: {message} (got {error.get('input')!r})")
        else:
            lines.append(message)
    return "invalid configuration: " + "; ".join(lines)


_lock = threading.Lock()
_current: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    global _current
    with _lock:
        if _current is None:
            _current = Settings.load()
        return _current


def use_settings(settings: Settings | None) -> None:
    """Replace the process-wide settings (``None``: read the environment again on next use)."""
    global _current
    with _lock:
        _current = settings
