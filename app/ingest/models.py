"""The tables of ingest."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigID, JSONType, UTCDateTime, utcnow
from app.tenancy.scoping import TenantScoped

__all__ = ["FintechTransaction"]


class FintechTransaction(TenantScoped, Base):
    """One transaction of one tenant, as a source plugin parsed it (the seed's table)."""

    __tablename__ = "fintech_transactions"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "txn_id"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64))
    txn_id: Mapped[str] = mapped_column(sa.String(64))
    source: Mapped[str | None] = mapped_column(sa.String(32))
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(18, 2))
    currency: Mapped[str] = mapped_column(sa.CHAR(3), default="INR", server_default="INR")
    status: Mapped[str | None] = mapped_column(sa.String(16))
    txn_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    raw_row: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
