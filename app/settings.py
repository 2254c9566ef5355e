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

import os
import threading
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError as PydanticSettingsError

__all__ = [
    "Settings", "SettingsError", "PlanSpec", "KindLimitSpec", "get_settings", "use_settings", "export_to_library",
    "ENV_PREFIX",
]

#: The prefix of every fairq environment variable.
ENV_PREFIX = "FAIRQ_"


class SettingsError(ValueError):
    """A setting has a bad value; the message names the variable."""


def _psycopg2(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


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


class KindLimitSpec(BaseModel):
    """Limits of one job kind in a plan; ``None`` means unlimited."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float | None = Field(None, gt=0, description="jobs per second (token bucket refill)")
    burst: int | None = Field(None, ge=1, description="token bucket capacity (default: max(1, rate))")
    concurrency: int | None = Field(None, ge=1, description="jobs of this kind in flight at once")


class PlanSpec(KindLimitSpec):
    """A plan: limits for every job kind (overridable per kind), quotas, and queue placement."""

    kinds: dict[str, KindLimitSpec] = Field(default_factory=dict)
    jobs_per_day: int | None = Field(None, ge=0)
    jobs_per_month: int | None = Field(None, ge=0)
    rows_per_day: int | None = Field(None, ge=0)
    rows_per_month: int | None = Field(None, ge=0)
    messages_per_day: int | None = Field(None, ge=0)
    messages_per_month: int | None = Field(None, ge=0)
    dedicated_queue: bool = Field(False, description="the tenant's jobs go to a queue of its own")


def _no_postgres_alias(value: str | None) -> str | None:
    if value and value.startswith("postgres://"):
        return "postgresql://" + value[len("postgres://"):]
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
    database_owner_url: str | None = Field(
        None,
        description=(
            "PostgreSQL URL of the role that owns the tables and runs migrations; the role of "
            "FAIRQ_DATABASE_URL is then granted data access only, so row-level security binds it. "
            "Unset: FAIRQ_DATABASE_URL."
        ),
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
    jwt_secret: SecretStr | None = Field(
        None,
        description=(
            "Key that signs access and refresh tokens, at least 32 bytes. Required unless every "
            "backend is embedded (then a random one is kept in <data dir>/jwt-secret)."
        ),
    )
    jwt_algorithm: str = Field("HS256", description="JWT signing algorithm: HS256, HS384 or HS512.")
    access_token_minutes: int = Field(15, ge=1, le=1440, description="Lifetime of an access token.")
    refresh_token_days: int = Field(30, ge=1, le=365, description="Lifetime of a refresh token.")
    open_signup: bool = Field(
        True, description="Registering into a new tenant id creates that tenant (0 turns it off)."
    )
    cookie_secure: bool = Field(
        True, description="The dashboard's cookies are Secure (sent over HTTPS and to localhost only)."
    )
    bcrypt_rounds: int = Field(12, ge=4, le=16, description="bcrypt cost factor for password hashes.")
    password_min_length: int = Field(8, ge=6, le=72, description="Shortest password accepted.")
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins allowed per (tenant, email) in a window before 429."
    )
    login_max_failures_per_address: int = Field(
        20, ge=1, description="Failed logins allowed per client address in a window before 429."
    )
    login_failure_window_seconds: int = Field(
        900, ge=1, description="The window of both failed-login limits, in seconds."
    )
    dispatch_window: int = Field(
        16, ge=1, le=10_000,
        description="Jobs waiting in the broker at most: published, not yet taken by a worker (about twice "
                    "the worker threads in all).",
    )
    dispatcher: Literal["companion", "thread"] = Field(
        "companion",
        description="Where `dramatiq app.tasks` runs the dispatcher on PostgreSQL with RabbitMQ: `companion`, a "
                    "process of its own beside the worker processes (each keeps a standby thread); `thread`, a "
                    "thread in every worker process. `fairq up` and the in-process broker always use a thread.",
    )
    worker_cpu_affinity: Literal["off", "spread"] = Field(
        "off",
        description="`spread` binds each worker process of `dramatiq app.tasks` to a CPU of its own (the i-th "
                    "process to the i-th CPU, wrapping around): its threads then hand the interpreter lock over "
                    "on one core. Measured 20-30 % more 2 ms jobs a second on 2 cores (README, Throughput of "
                    "short jobs); `off` leaves placement to the kernel.",
    )
    aging_seconds: float = Field(
        60.0, gt=0, description="Within a tenant, a job gains one priority level per this many seconds waiting."
    )
    job_lease_seconds: int = Field(
        300, ge=10,
        description="A job dispatched this long ago, or running this long past its time limit plus the longest time "
                    "limit (its message may wait in a worker's buffer) or past the broker's ack timeout on RabbitMQ, "
                    "whichever is later, is presumed lost and re-dispatched.",
    )
    broker_ack_timeout_seconds: int = Field(
        1800, ge=60,
        description="RabbitMQ's consumer ack timeout (`consumer_timeout`, 30 min by default), which fairq cannot "
                    "read: a message may stay unacknowledged (waiting in a worker's buffer, then running) for 90 % "
                    "of it at most. Raise it here and on the server together.",
    )
    retry_backoff_seconds: float = Field(
        1.0, gt=0, description="First retry delay; each further retry doubles it (with jitter)."
    )
    retry_backoff_max_seconds: float = Field(300.0, gt=0, description="Longest retry delay.")
    max_upload_bytes: int = Field(
        1024 * 1024 * 1024, ge=1024,
        description="Largest file upload (POST /files) in bytes, the whole request; larger ones get 413.",
    )
    ingest_batch_rows: int = Field(
        50_000, ge=100, le=1_000_000,
        description="Rows an ingest job loads per transaction; it checkpoints and reports progress between them.",
    )
    ingest_timezone: str = Field(
        "Asia/Kolkata", description="IANA time zone of local times in ingested files (stored in UTC)."
    )
    metrics_port: int = Field(
        9191, ge=0, le=65535,
        description=(
            "Port of the Prometheus endpoint of each `dramatiq app.tasks` command (Dramatiq's 9191; 0: none). "
            "`fairq up` and the API serve `/metrics` on their own port instead."
        ),
    )
    metrics_host: str = Field("127.0.0.1", description="Address the workers' Prometheus endpoint binds to.")
    metrics_dir: Path | None = Field(
        None,
        description=(
            "Folder where the processes of one `dramatiq app.tasks` command share their metrics "
            "(prometheus_client's multiprocess mode). Unset: <temp dir>/fairq-metrics-<FAIRQ_METRICS_PORT>."
        ),
    )
    metrics_max_tenants: int = Field(
        50, ge=1, le=10_000,
        description='Tenants with a `tenant` label of their own in metrics; the rest are summed as tenant="_other".',
    )
    metrics_share_window_seconds: float = Field(
        300.0, ge=10, le=86_400, description="Window over which each tenant's share of worker time is measured."
    )
    metrics_token: SecretStr | None = Field(
        None, description="If set, `/metrics` on the API answers only requests with `Authorization: Bearer <token>`."
    )
    campaign_chunk_size: int = Field(
        1000, ge=1, le=50_000,
        description="Recipients a campaign fans out per transaction (delivery jobs written at once).",
    )
    webhook_timeout_seconds: float = Field(
        5.0, gt=0, le=60, description="Seconds a webhook delivery may take to connect, and again to answer."
    )
    reconcile_grace_hours: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Hours a PENDING payment is not yet a reconciliation break, per source, as JSON, over the "
            'source plugin\'s own window (UPI 48, NEFT 2): {"UPI": 72}'
        ),
    )
    plans: dict[str, PlanSpec] = Field(
        default_factory=dict,
        description=(
            "Named plans as JSON, merged over the built-in ones (default, free, pro, dedicated): "
            '{"gold": {"rate": 50, "burst": 100, "concurrency": 8, "jobs_per_day": 100000, '
            '"kinds": {"ingest": {"rate": 2, "concurrency": 1}}}}'
        ),
    )

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"{ENV_PREFIX}LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR (got {value!r})")
        return level

    @field_validator("reconcile_grace_hours")
    @classmethod
    def _reconcile_grace_hours(cls, value: dict[str, float]) -> dict[str, float]:
        if any(hours < 0 for hours in value.values()):
            raise ValueError(f"{ENV_PREFIX}RECONCILE_GRACE_HOURS: hours must be 0 or more (got {value!r})")
        return {source.upper(): hours for source, hours in value.items()}

    @field_validator("ingest_timezone")
    @classmethod
    def _ingest_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{ENV_PREFIX}INGEST_TIMEZONE must be an IANA time zone such as Asia/Kolkata (got {value!r})"
            ) from None
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        value = _check_scheme(value, "DATABASE_URL", ("postgresql", "postgresql+psycopg2", "postgres", "sqlite"))
        return _no_postgres_alias(value)

    @field_validator("database_owner_url")
    @classmethod
    def _database_owner_url(cls, value: str | None) -> str | None:
        return _no_postgres_alias(
            _check_scheme(value, "DATABASE_OWNER_URL", ("postgresql", "postgresql+psycopg2", "postgres"))
        )

    @field_validator("jwt_algorithm")
    @classmethod
    def _jwt_algorithm(cls, value: str) -> str:
        if value not in {"HS256", "HS384", "HS512"}:
            raise ValueError(f"{ENV_PREFIX}JWT_ALGORITHM must be HS256, HS384 or HS512 (got {value!r})")
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
            return _psycopg2(self.database_url)
        return f"sqlite:///{(self.data_dir / 'fairq.db').resolve()}"

    @property
    def sqlalchemy_owner_url(self) -> str:
        """The database URL migrations run with: the tables' owner."""
        if self.database_owner_url and self.database_url:
            return _psycopg2(self.database_owner_url)
        return self.sqlalchemy_url

    @property
    def all_embedded(self) -> bool:
        """Whether every backend is the embedded default (a developer's machine)."""
        return all(self.embedded.values())

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
        except PydanticSettingsError as exc:  # a complex value that is not JSON
            field = str(exc).split('"')[1] if '"' in str(exc) else "?"
            raise SettingsError(
                f"invalid configuration: {ENV_PREFIX}{field.upper()}: not valid JSON"
            ) from None

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Every environment variable fairq reads, with its description."""
        return {
            ENV_PREFIX + name.upper(): field.description or ""
            for name, field in cls.model_fields.items()
        }


#: Fields whose values may hold credentials: never echoed in an error.
_SENSITIVE = frozenset({"database_url", "database_owner_url", "broker_url", "redis_url", "s3_secret_access_key", "jwt_secret",
                        "metrics_token"})


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if loc:
            variable = ENV_PREFIX + loc[0].upper()
            if len(loc) > 1:
                variable += f" ({'.'.join(loc[1:])})"
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


def export_to_library(name: str, value: str) -> None:
    """Set an environment variable that a library reads by itself and has no other way to be told
    (prometheus_client's ``PROMETHEUS_MULTIPROC_DIR``). This module stays the one that touches the
    environment."""
    os.environ[name] = value
