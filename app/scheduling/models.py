"""The ``jobs`` table: every job of every tenant, the record of its life."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigID, JSONType, UTCDateTime, utcnow
from app.tenancy.scoping import TenantScoped

__all__ = ["Job", "STATES", "ACTIVE_STATES", "FINAL_STATES", "PRIORITIES", "PRIORITY_NAMES"]

#: Every state of a job. ``failed`` means "failed, will retry"; ``dead`` means no retry is left.
STATES = ("queued", "dispatched", "running", "succeeded", "failed", "dead", "cancelled")
#: States in which a job holds a slot of the dispatch window.
ACTIVE_STATES = ("dispatched", "running")
#: States a job never leaves (but for an operator's replay of a dead job).
FINAL_STATES = ("succeeded", "dead", "cancelled")
#: The states read by state (an index holds only these jobs).
_LISTED = "state IN ('queued', 'failed', 'dispatched', 'running', 'dead')"
#: Priority names and their values (higher runs first within a tenant).
PRIORITIES = {"low": 0, "normal": 1, "high": 2}
PRIORITY_NAMES = {value: name for name, value in PRIORITIES.items()}


class Job(TenantScoped, Base):
    """One unit of work of one tenant."""

    __tablename__ = "jobs"
    __table_args__ = (
        # only the jobs that have a key (migration 0011): most have none, and every write of a job
        # adds an entry to each index that holds it
        sa.Index("uq_jobs_tenant_id_idempotency_key", "tenant_id", "idempotency_key", unique=True,
                 postgresql_where=sa.text("idempotency_key IS NOT NULL"),
                 sqlite_where=sa.text("idempotency_key IS NOT NULL")),
        sa.CheckConstraint(
            "state IN ('queued', 'dispatched', 'running', 'succeeded', 'failed', 'dead', 'cancelled')",
            name="state",
        ),
        # the dispatcher's refill: each tenant's waiting jobs of one priority, oldest first
        sa.Index(
            "ix_jobs_dispatchable", "tenant_id", "priority", "id",
            postgresql_where=sa.text("state IN ('queued', 'failed')"),
            sqlite_where=sa.text("state IN ('queued', 'failed')"),
        ),
        sa.Index("ix_jobs_tenant_id_id", "tenant_id", "id"),
        # counts of waiting / in-flight / dead jobs, the lease check, the dead letters: never the
        # succeeded ones, so a job leaves this index when it succeeds (migration 0009)
        sa.Index(
            "ix_jobs_state_id", "state", "id",
            postgresql_where=sa.text(_LISTED), sqlite_where=sa.text(_LISTED),
        ),
        # the due check of retries waiting out their backoff
        sa.Index(
            "ix_jobs_not_before", "not_before",
            postgresql_where=sa.text("not_before IS NOT NULL"), sqlite_where=sa.text("not_before IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("tenants.id"))
    kind: Mapped[str] = mapped_column(sa.String(64))
    state: Mapped[str] = mapped_column(sa.String(16), default="queued")
    priority: Mapped[int] = mapped_column(sa.SmallInteger, default=1)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200))
    cost_estimate: Mapped[float | None] = mapped_column(sa.Float)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    max_retries: Mapped[int] = mapped_column(sa.Integer, default=3)
    queue: Mapped[str | None] = mapped_column(sa.String(100))
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())
    enqueued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    run_seconds: Mapped[float] = mapped_column(sa.Float, default=0.0)
    cancel_requested: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    progress_done: Mapped[int | None] = mapped_column(sa.BigInteger)
    progress_total: Mapped[int | None] = mapped_column(sa.BigInteger)
    progress_message: Mapped[str | None] = mapped_column(sa.String(500))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
