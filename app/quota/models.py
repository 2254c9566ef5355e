"""The ``usage_daily`` table: what each tenant used, per day and job kind (the billing record);
``usage_monthly``: its roll-up per month, made by a periodic job so that long reports stay cheap."""
from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime
from app.tenancy.scoping import TenantScoped

__all__ = ["UsageDaily", "UsageMonthly", "METRICS"]

#: What is metered: jobs accepted, worker seconds, rows ingested, messages delivered, failed attempts.
METRICS = ("jobs", "run_seconds", "rows", "messages", "failures")


class Metered:
    """The metered amounts (:data:`METRICS`), as columns."""

    jobs: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    run_seconds: Mapped[float] = mapped_column(sa.Float, default=0.0, server_default="0")
    rows: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    messages: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    failures: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")


class UsageDaily(Metered, TenantScoped, Base):
    """One tenant's usage of one job kind on one day (UTC)."""

    __tablename__ = "usage_daily"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(64), primary_key=True)


class UsageMonthly(Metered, TenantScoped, Base):
    """One tenant's usage of one job kind in one month: the sum of its ``usage_daily`` rows when
    ``rolled_at`` was taken (see :mod:`app.quota.rollups`)."""

    __tablename__ = "usage_monthly"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    month: Mapped[date] = mapped_column(sa.Date, primary_key=True)  # its first day
    kind: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    rolled_at: Mapped[datetime] = mapped_column(UTCDateTime())
