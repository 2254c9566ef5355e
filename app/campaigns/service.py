"""Campaign services: create (the campaign and its ``campaign.created`` event in one
transaction), list, show with counts and the processing log, and cancel.

The API and the CLI call these; the view commits. Execution is the campaigns plugin's
(job kinds ``campaign.run`` and ``campaign.deliver``); the core only queues the run.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app import hooks
from app.campaigns import audience as audiences
from app.campaigns.models import Campaign, CampaignJob, WebhookSettings
from app.campaigns.schedule import RUN_KIND, check_cron, enqueue_run, next_occurrence
from app.campaigns.templates import missing_fields, template_fields
from app.db import utcnow
from app.errors import Conflict, Invalid, NotFound
from app.quota import quotas
from app.quota.plans import plan_for
from app.scheduling import jobs
from app.settings import Settings
from app.tenancy.scoping import session_tenant
from app.tenancy.service import get_tenant

__all__ = ["NewCampaign", "Counts", "create_campaign", "create_campaign_once", "list_campaigns", "get_campaign",
           "counts", "processing_log", "can_cancel", "cancel_campaign", "installed_channels",
           "DELIVER_KIND"]

logger = logging.getLogger(__name__)

#: The job kind that delivers one message (declared by the campaigns plugin).
DELIVER_KIND = "campaign.deliver"
#: Statuses after which a campaign that does not recur can no longer be cancelled.
ENDED = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class NewCampaign:
    """What a tenant asks for (``POST /campaigns``)."""

    name: str
    description: str | None = None
    channel: str = "log"
    message: str | None = None
    recipients: list[dict[str, Any]] | None = None
    audience_s3_path: str | None = None
    send_at: datetime | None = None
    schedule: str | None = None


@dataclass(frozen=True)
class Counts:
    recipients: int
    delivered: int
    failed: int
    retrying: int


def installed_channels() -> dict[str, hooks.Channel]:
    """Every installed campaign channel by name."""
    return hooks.channels(hooks.get_plugin_manager())


def _check_channel(session: Session, name: str) -> hooks.Channel:
    found = installed_channels()
    channel = found.get(name)
    if channel is None or channel.deliver is None:
        names = ", ".join(sorted(n for n, c in found.items() if c.deliver is not None)) or "none"
        raise Invalid(f"unknown channel {name!r}; installed channels: {names}", slug="unknown-channel",
                      errors=[{"field": "channel", "message": f"one of {names}"}])
    if channel.needs_webhook:
        settings_row = session.scalar(sa.select(WebhookSettings))
        if settings_row is None or not settings_row.url:
            raise Invalid("the webhook channel needs your webhook URL first (PUT /settings/webhook)",
                          slug="webhook-not-configured", errors=[{"field": "channel", "message": "no webhook URL"}])
    return channel


def _audience(settings: Settings, tenant_id: str, new: NewCampaign, template: str) -> tuple[dict | None, int]:
    """The audience to store and how many messages it holds (0: not known until fan-out)."""
    if new.recipients is not None and new.audience_s3_path is not None:
        raise Invalid("give recipients or audience_s3_path, not both",
                      errors=[{"field": "audience_s3_path", "message": "not with recipients"}])
    if new.recipients is not None:
        recipients = audiences.check_recipients(new.recipients)
        for index, recipient in enumerate(recipients):
            missing = missing_fields(template, recipient)
            if missing:
                raise _missing(missing, f"recipients[{index}]")
        return {"recipients": recipients}, len(recipients)
    if new.audience_s3_path is not None:
        path = audiences.audience_path(tenant_id, new.audience_s3_path)
        missing = missing_fields(template, audiences.csv_fields(settings, tenant_id, path))
        if missing:
            raise _missing(missing, "the audience file's header")
        return {"s3_path": path}, 0
    missing = template_fields(template)
    if missing:
        raise _missing(missing, "a campaign with no audience")
    return None, 1


def _missing(fields: list[str], where: str) -> Invalid:
    names = ", ".join(f"{{{f}}}" for f in fields)
    return Invalid(f"the message uses {names}, which {where} lacks", slug="unknown-template-field",
                   errors=[{"field": "message", "message": f"no field {f!r} in the audience"} for f in fields],
                   fields=fields)


def create_campaign(session: Session, settings: Settings, new: NewCampaign) -> Campaign:
    """Create a campaign of the session's tenant and its ``campaign.created`` event — a
    ``campaign.run`` job — in the session's transaction: both commit, or neither.

    Raises:
      Invalid: an unknown channel, a bad template or a field the audience lacks, a bad
        audience, ``send_at`` with ``schedule``, a bad cron expression (400).
      Forbidden: an audience path in another tenant's folder (403).
      QuotaExceeded: the plan allows no more jobs or messages now (429).
    """
    return create_campaign_once(session, settings, new)[0]


def create_campaign_once(session: Session, settings: Settings, new: NewCampaign, *,
                         idempotency_key: str | None = None) -> tuple[Campaign, bool]:
    """:func:`create_campaign`, safe to retry: the same ``idempotency_key`` returns the tenant's
    campaign made with it, and writes nothing (the key is its ``campaign.run`` job's).

    Returns:
      The campaign, and whether it is new (``False``: the key was seen before).

    Raises:
      Invalid: as :func:`create_campaign`, or a key used for another kind of job (400).
      Forbidden, QuotaExceeded: as :func:`create_campaign`.
    """
    tenant_id = session_tenant(session)
    if tenant_id is None:
        raise RuntimeError("create_campaign needs a session scoped to a tenant")
    if idempotency_key:
        existing = jobs.job_for_key(session, idempotency_key)
        if existing is not None:
            return _campaign_of(session, existing), False
    _check_channel(session, new.channel)
    template = new.message if new.message is not None else new.name
    template_fields(template)
    audience, messages = _audience(settings, tenant_id, new, template)
    if new.send_at is not None and new.schedule is not None:
        raise Invalid("give send_at or schedule, not both", errors=[{"field": "send_at", "message": "not with schedule"}])
    schedule = check_cron(new.schedule) if new.schedule is not None else None
    plan_name = get_tenant(tenant_id).plan
    quotas.check(session, plan_for(settings, plan_name), plan_name=plan_name, tenant_id=tenant_id,
                 messages=messages)

    now = utcnow()
    first = next_occurrence(schedule, now) if schedule else None
    start = first or new.send_at
    campaign = Campaign(
        tenant_id=tenant_id, name=new.name, description=new.description, channel=new.channel, message=template,
        audience=audience, send_at=new.send_at, schedule=schedule,
        next_run_at=next_occurrence(schedule, first) if schedule else None,
        status="scheduled" if start is not None and start > now else "pending", created_at=now,
    )
    session.add(campaign)
    session.flush()
    job, created = enqueue_run(session, settings, campaign, at=start, occurrence=first,
                               idempotency_key=idempotency_key)
    if not created:  # the same key, committed a moment ago by a concurrent request: keep theirs
        session.delete(campaign)
        session.flush()
        return _campaign_of(session, job), False
    campaign.job_id = job.id
    session.flush()
    logger.info("campaign %s created (job %s)", campaign.id, job.id,
                extra={"tenant_id": tenant_id, "job_id": job.id, "event": "campaign.created"})
    return campaign, True


def _campaign_of(session: Session, job) -> Campaign:
    """The campaign a ``campaign.run`` job was written with. Raises: Invalid (another kind of job)."""
    campaign_id = job.payload.get("campaign_id") if job.kind == RUN_KIND else None
    campaign = session.get(Campaign, campaign_id) if campaign_id is not None else None
    if campaign is None or campaign.job_id != job.id:
        raise Invalid("that Idempotency-Key was used for another kind of job")
    return campaign


def list_campaigns(session: Session, *, status: str | None = None, after: int | None = None,
                   limit: int = 50) -> list[Campaign]:
    """A page of the tenant's campaigns, newest first; ``after`` continues from a page's last id."""
    query = sa.select(Campaign).order_by(Campaign.id.desc()).limit(limit)
    if status:
        query = query.where(Campaign.status == status)
    if after is not None:
        query = query.where(Campaign.id < after)
    return list(session.scalars(query))


def get_campaign(session: Session, campaign_id: int) -> Campaign:
    """One of the session tenant's campaigns. Raises: NotFound (also for another tenant's)."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound("no such campaign")
    return campaign


def counts(session: Session, campaign: Campaign) -> Counts:
    """The current run's recipients and how each delivery stands, by its latest outcome."""
    latest = (
        sa.select(
            CampaignJob.status,
            sa.func.row_number().over(partition_by=CampaignJob.recipient, order_by=CampaignJob.id.desc()).label("n"),
        )
        .where(CampaignJob.campaign_id == campaign.id, CampaignJob.run == campaign.run)
        .subquery()
    )
    by_status = dict(session.execute(
        sa.select(latest.c.status, sa.func.count()).where(latest.c.n == 1).group_by(latest.c.status)
    ).all())
    return Counts(recipients=campaign.recipients, delivered=by_status.get("success", 0),
                  failed=by_status.get("failed", 0), retrying=by_status.get("retry", 0))


def processing_log(session: Session, campaign_id: int, *, after: int | None = None, limit: int = 50) -> list[CampaignJob]:
    """A page of a campaign's processing log, newest first. Raises: NotFound."""
    get_campaign(session, campaign_id)
    query = (sa.select(CampaignJob).where(CampaignJob.campaign_id == campaign_id)
             .order_by(CampaignJob.id.desc()).limit(limit))
    if after is not None:
        query = query.where(CampaignJob.id < after)
    return list(session.scalars(query))


def can_cancel(campaign: Campaign) -> bool:
    """Whether ``campaign`` may still be cancelled: it has not ended, or it recurs and was not cancelled."""
    return not (campaign.status in ENDED and (campaign.schedule is None or campaign.status == "cancelled"))


def cancel_campaign(session: Session, campaign_id: int) -> Campaign:
    """Stop a campaign: its run and every delivery not yet sent are cancelled and never go out;
    a recurring campaign runs no more.

    Raises:
      NotFound: no such campaign of this tenant.
      Conflict: it already ended (``campaign-finished``).
    """
    campaign = get_campaign(session, campaign_id)
    if not can_cancel(campaign):
        raise Conflict(f"campaign {campaign_id} already {campaign.status}", slug="campaign-finished")
    campaign.status = "cancelled"
    campaign.finished_at = utcnow()
    campaign.next_run_at = None
    session.flush()
    stopped = jobs.cancel_matching(session, kinds=(RUN_KIND, DELIVER_KIND), payload_key="campaign_id",
                                   value=campaign_id)
    logger.info("campaign %s cancelled (%d jobs stopped)", campaign_id, stopped,
                extra={"tenant_id": campaign.tenant_id})
    return campaign
