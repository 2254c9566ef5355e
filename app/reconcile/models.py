"""The tables of reconciliation: runs, and the breaks they find."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigID, JSONType, UTCDateTime, utcnow
from app.tenancy.scoping import TenantScoped

__all__ = ["Reconciliation", "ReconciliationRun", "MISMATCH_TYPES", "BREAK_STATUSES", "RUN_STATES"]

#: Every kind of break, in the order notes and summaries list them.
MISMATCH_TYPES = ("missing_internal", "missing_external", "amount_mismatch", "status_mismatch", "date_drift",
                  "duplicate", "reversed", "ambiguous")
#: A break's life across runs of the same period: first seen, seen again, gone.
BREAK_STATUSES = ("new", "persisting", "resolved")
#: A run's state.
RUN_STATES = ("queued", "running", "succeeded", "failed", "cancelled")


class ReconciliationRun(TenantScoped, Base):
    """One reconciliation of one source over one period, and its summary."""

    __tablename__ = "reconciliation_runs"
    __table_args__ = (sa.Index("ix_reconciliation_runs_tenant_id_id", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64))
    job_id: Mapped[int | None] = mapped_column(BigID, sa.ForeignKey("jobs.id", ondelete="SET NULL"), unique=True)
    source: Mapped[str] = mapped_column(sa.String(32))
    period_from: Mapped[date] = mapped_column(sa.Date)
    period_to: Mapped[date] = mapped_column(sa.Date)
    amount_tolerance: Mapped[Decimal] = mapped_column(sa.Numeric(18, 2))
    date_tolerance_hours: Mapped[int] = mapped_column(sa.Integer)
    state: Mapped[str] = mapped_column(sa.String(16), default="queued")
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Reconciliation(TenantScoped, Base):
    """One break (the seed's ``reconciliations``), kept across runs under a stable ``break_key``.

    ``run_id`` is the last run that changed it (found it, found it changed or again after a
    run had seen it new, or resolved it), ``first_run_id`` the first that found it; ``status`` is ``new`` the first
    time, ``persisting`` when a later run finds it again, ``resolved`` when a run of its
    period no longer does.
    """

    __tablename__ = "reconciliations"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "break_key"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64))  # led by the unique (tenant_id, break_key)
    internal_txn_id: Mapped[str | None] = mapped_column(sa.String(64))
    external_txn_id: Mapped[str | None] = mapped_column(sa.String(64))
    mismatch_type: Mapped[str] = mapped_column(sa.String(32))
    notes: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: no foreign key: a run writes up to a row per break, and checking each one cost more than the rows
    run_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    first_run_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    break_key: Mapped[str | None] = mapped_column(sa.String(200))
    source: Mapped[str | None] = mapped_column(sa.String(32))
    rule: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), default="new", server_default="new")
    internal_amount: Mapped[Decimal | None] = mapped_column(sa.Numeric(18, 2))
    external_amount: Mapped[Decimal | None] = mapped_column(sa.Numeric(18, 2))
    internal_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    external_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    internal_status: Mapped[str | None] = mapped_column(sa.String(16))
    external_status: Mapped[str | None] = mapped_column(sa.String(16))
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
