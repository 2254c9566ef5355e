"""Campaigns that start later or recur: cron expressions (croniter) and the periodic tick.

A recurring campaign's runs are jobs like any other, each keyed by its occurrence
(``campaign:<id>:at:<time>``), so a tick that is delivered twice still starts a
run once; the tick itself is claimed once in ``periodic_runs`` as every periodic job is.
"""
from __future__ import annotations

import logging
from datetime import datetime

import dramatiq
import sqlalchemy as sa
from croniter import CroniterBadCronError, croniter
from periodiq import cron

from app.broker import HOUSEKEEPING_TIME_LIMIT_MS  # (the broker is set before any actor is declared)
from app.campaigns.models import Campaign
from app.db import utcnow
from app.errors import Invalid, ServiceError
from app.scheduling import jobs
from app.settings import Settings, get_settings
from app.tenancy.scoping import system_session, tenant_session

__all__ = ["RUN_KIND", "check_cron", "next_occurrence", "enqueue_run", "enqueue_due_runs", "recurring_campaigns"]

logger = logging.getLogger(__name__)

#: The job kind that runs a campaign (fan-out), declared by the campaigns plugin.
RUN_KIND = "campaign.run"


def check_cron(expression: str) -> str:
    """A five-field cron expression, checked.

    Raises:
      Invalid: not a valid expression (``invalid-schedule``).
    """
    text = " ".join((expression or "").split())
    if len(text.split(" ")) != 5 or not croniter.is_valid(text):
        raise Invalid(f"schedule {expression!r} is not a five-field cron expression such as '0 9 * * 1'",
                      slug="invalid-schedule", errors=[{"field": "schedule", "message": "a cron expression"}])
    return text


def next_occurrence(expression: str, after: datetime) -> datetime:
    """The first time ``expression`` matches strictly after ``after`` (UTC)."""
    try:
        return croniter(expression, after).get_next(datetime)
    except CroniterBadCronError as exc:  # checked on the way in; a stored one that went bad
        raise Invalid(str(exc), slug="invalid-schedule") from None


def enqueue_run(session, settings: Settings, campaign: Campaign, *, at: datetime | None,
                occurrence: datetime | None = None, idempotency_key: str | None = None):
    """Queue a run of ``campaign`` in the session's transaction (not before ``at``).

    Keyed by the campaign and the occurrence, so asking twice queues one run; or by
    ``idempotency_key`` (a client's ``Idempotency-Key``, for the run written with the campaign).

    Returns:
      The job and whether it is new.
    """
    key = idempotency_key or (
        f"campaign:{campaign.id}:at:{occurrence.isoformat()}" if occurrence else f"campaign:{campaign.id}:created")
    payload = {"campaign_id": campaign.id, "event": "campaign.created" if occurrence is None else "campaign.tick"}
    return jobs.enqueue(session, settings, kind=RUN_KIND, payload=payload, idempotency_key=key,
                        not_before=at)


def recurring_campaigns(now: datetime) -> list[tuple[str, int]]:
    """Recurring campaigns whose next occurrence has come: (tenant, id) each."""
    with system_session() as session:
        return [tuple(row) for row in session.execute(
            sa.select(Campaign.tenant_id, Campaign.id).where(
                Campaign.schedule.is_not(None), Campaign.next_run_at <= now,
                Campaign.status.not_in(("cancelled",)),
            )
        )]


def enqueue_due_runs(now: datetime | None = None) -> int:
    """Queue a run for each recurring campaign whose occurrence has come. Safe to call twice.

    A campaign whose previous run is still going skips the occurrence (logged). Returns
    how many runs were queued.
    """
    now = now or utcnow()
    queued = 0
    for tenant_id, campaign_id in recurring_campaigns(now):
        with tenant_session(tenant_id) as session:
            campaign = session.get(Campaign, campaign_id, with_for_update=True)
            if campaign is None or campaign.next_run_at is None or campaign.next_run_at > now:
                continue
            occurrence = campaign.next_run_at
            campaign.next_run_at = next_occurrence(campaign.schedule, now)
            if campaign.status in ("running", "cancelled"):
                logger.warning("campaign %s: occurrence %s skipped (%s)", campaign_id, occurrence, campaign.status,
                               extra={"tenant_id": tenant_id})
                continue
            try:
                job, created = enqueue_run(session, get_settings(), campaign, at=None, occurrence=occurrence)
            except ServiceError as exc:  # over a quota: this occurrence is skipped, the next one comes
                campaign.last_error = f"occurrence {occurrence.isoformat()} skipped: {exc.detail}"
                logger.warning("campaign %s: %s", campaign_id, campaign.last_error, extra={"tenant_id": tenant_id})
                continue
            if created:
                campaign.status = "pending"
                queued += 1
    return queued


@dramatiq.actor(queue_name="fairq.housekeeping", max_retries=0, time_limit=HOUSEKEEPING_TIME_LIMIT_MS,
                periodic=cron("* * * * *"))
def run_recurring_campaigns() -> None:
    """Every minute: queue the runs of recurring campaigns that came due. Safe to run twice."""
    count = enqueue_due_runs()
    if count:
        logger.info("queued %d recurring campaign runs", count)
