"""The tables of reconciliation."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigID, UTCDateTime, utcnow
from app.tenancy.scoping import TenantScoped

__all__ = ["Reconciliation"]


class Reconciliation(TenantScoped, Base):
    """One break found by a reconciliation (the seed's ``reconciliations``)."""

    __tablename__ = "reconciliations"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    internal_txn_id: Mapped[str | None] = mapped_column(sa.String(64))
    external_txn_id: Mapped[str | None] = mapped_column(sa.String(64))
    mismatch_type: Mapped[str] = mapped_column(sa.String(32))
    notes: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
