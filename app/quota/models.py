"""The ``usage_daily`` table: what each tenant used, per day and job kind (the billing record)."""
from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.tenancy.scoping import TenantScoped

__all__ = ["UsageDaily", "METRICS"]

#: What is metered: jobs accepted, worker seconds, rows ingested, messages delivered, failed attempts.
METRICS = ("jobs", "run_seconds", "rows", "messages", "failures")


class UsageDaily(TenantScoped, Base):
    """One tenant's usage of one job kind on one day (UTC)."""

    __tablename__ = "usage_daily"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    jobs: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    run_seconds: Mapped[float] = mapped_column(sa.Float, default=0.0, server_default="0")
    rows: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    messages: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    failures: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
