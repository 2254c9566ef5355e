"""The tables of campaigns: campaigns, their processing log, and each tenant's webhook settings."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, BigID, JSONType, UTCDateTime, utcnow
from app.tenancy.scoping import TenantScoped

__all__ = ["Campaign", "CampaignJob", "WebhookSettings", "CAMPAIGN_JOB_STATUSES", "CAMPAIGN_STATUSES"]

#: The outcomes a processing-log row may record.
CAMPAIGN_JOB_STATUSES = ("success", "retry", "failed")
#: A campaign's states: waiting for its time, queued, fanning out / delivering, and the ends.
CAMPAIGN_STATUSES = ("scheduled", "pending", "running", "completed", "failed", "cancelled")


class Campaign(TenantScoped, Base):
    """A tenant's campaign (the seed's ``campaigns``) and the state of its current run."""

    __tablename__ = "campaigns"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('scheduled', 'pending', 'running', 'completed', 'failed', 'cancelled')", name="status"
        ),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(20), default="pending", server_default="pending")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: the delivery channel (a plugin's), e.g. ``log`` or ``webhook``
    channel: Mapped[str] = mapped_column(sa.String(32), default="log", server_default="log")
    #: the message template, ``{field}``-style over the audience row
    message: Mapped[str | None] = mapped_column(sa.Text)
    #: ``None`` (one delivery), ``{"recipients": [...]}`` or ``{"s3_path": "..."}``
    audience: Mapped[dict[str, Any] | None] = mapped_column(JSONType, deferred=True)
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: a cron expression for a recurring campaign
    schedule: Mapped[str | None] = mapped_column(sa.String(120))
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: the job written with the campaign (its ``campaign.created`` event)
    job_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    #: runs started so far, and the job running the current one
    run: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    run_job_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    #: recipients fanned out in the current run (also where a resumed fan-out starts)
    recipients: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    #: deliveries of the current run with no final outcome yet
    remaining: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    fanout_done: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(sa.Text)


class CampaignJob(TenantScoped, Base):
    """One attempt outcome of one delivery: the processing log (the seed's ``campaign_jobs``).

    A delivery is (campaign, run, recipient); its ``success`` is recorded at most once.
    """

    __tablename__ = "campaign_jobs"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('success', 'retry', 'failed')", name="status"
        ),
        sa.Index("ix_campaign_jobs_delivery", "campaign_id", "run", "recipient", "id"),
        sa.Index(
            "uq_campaign_jobs_success", "campaign_id", "run", "recipient", unique=True,
            postgresql_where=sa.text("status = 'success'"),
            sqlite_where=sa.text("status = 'success'"),
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
    run: Mapped[int] = mapped_column(sa.Integer, default=1, server_default="1")
    #: the recipient's position in the audience (0 for a campaign with no audience)
    recipient: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")


class WebhookSettings(TenantScoped, Base):
    """A tenant's webhook: where the ``webhook`` channel posts, the signing secret, and the
    private hosts an operator allowed it to reach."""

    __tablename__ = "webhook_settings"

    tenant_id: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                                           primary_key=True)
    url: Mapped[str | None] = mapped_column(sa.String(2048))
    secret: Mapped[str | None] = mapped_column(sa.String(128))
    #: host names, addresses or networks (CIDR) that may be private, loopback or link-local
    allowed_hosts: Mapped[list[str]] = mapped_column(JSONType, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
