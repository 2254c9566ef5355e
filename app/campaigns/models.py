"""The tables of campaigns."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigID, JSONType, UTCDateTime, utcnow
from app.tenancy.scoping import TenantScoped

__all__ = ["Campaign", "CampaignJob", "CAMPAIGN_JOB_STATUSES"]

#: The outcomes a processing-log row may record.
CAMPAIGN_JOB_STATUSES = ("success", "retry", "failed")


class Campaign(TenantScoped, Base):
    """A tenant's campaign (the seed's ``campaigns``)."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(20), default="pending", server_default="pending")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CampaignJob(TenantScoped, Base):
    """One attempt outcome of a campaign's execution: the processing log (the seed's ``campaign_jobs``)."""

    __tablename__ = "campaign_jobs"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('success', 'retry', 'failed')", name="status"
        ),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    status: Mapped[str] = mapped_column(sa.String(16))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
