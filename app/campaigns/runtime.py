"""The campaign API the campaigns plugin is handed (``from app.hooks import campaigns``).

A run (job kind ``campaign.run``) calls :func:`start_run`, then :func:`fan_out` for
each chunk of :func:`chunks`, then :func:`end_fan_out`. A delivery (``campaign.deliver``)
calls :func:`delivery`, sends through its channel, then :func:`record`. Every function
is safe to call again for the same job (at-least-once delivery): a fan-out resumes where
the committed cursor stands, and a delivery's success is recorded once.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from app.campaigns import audience as audiences
from app.campaigns.models import Campaign, CampaignJob, WebhookSettings
from app.campaigns.templates import render
from app.campaigns.webhooks import DestinationRefused, permitted_addresses
from app.db import get_db, utcnow
from app.hooks import Delivery
from app.quota import quotas
from app.quota.plans import plan_for
from app.scheduling import jobs
from app.scheduling.kinds import JobContext, JobFailed
from app.settings import get_settings
from app.storage import ObjectNotFound
from app.tenancy.scoping import tenant_session
from app.tenancy.service import get_tenant

__all__ = [
    "Run",
    "WebhookTarget",
    "DestinationRefused",
    "DELIVER_KIND",
    "start_run",
    "chunks",
    "fan_out",
    "end_fan_out",
    "fail_run",
    "delivery",
    "record",
    "webhook_target",
    "permitted_addresses",
]

logger = logging.getLogger(__name__)

#: The job kind of one delivery.
DELIVER_KIND = "campaign.deliver"
#: The processing-log outcomes that end a delivery.
FINAL = ("success", "failed")


@dataclass(frozen=True)
class Run:
    """A campaign run a ``campaign.run`` job carries out."""

    tenant_id: str
    campaign_id: int
    run: int
    job_id: int
    cursor: int
    audience: dict[str, Any] | None


@dataclass(frozen=True)
class WebhookTarget:
    """Where the tenant's webhook posts, how it signs, and what it may reach."""

    url: str
    secret: str = field(repr=False)  # never in a log line or a traceback
    allowed_hosts: list[str] = field(default_factory=list)
    timeout: float = 5.0


def _campaign_id(job: JobContext) -> int:
    try:
        return int(job.payload["campaign_id"])
    except (KeyError, TypeError, ValueError):
        raise JobFailed("the job's payload names no campaign") from None


def start_run(job: JobContext) -> Run | None:
    """Start (or resume) the run this job carries out.

    Returns:
      The run, with the cursor to fan out from; ``None`` if there is nothing to do (the
      campaign was cancelled, already ran, or its previous run is still going).

    Raises:
      JobFailed: the campaign no longer exists.
    """
    campaign_id = _campaign_id(job)
    with tenant_session(job.tenant_id) as session:
        campaign = session.get(Campaign, campaign_id, with_for_update=True)
        if campaign is None:
            raise JobFailed(f"campaign {campaign_id} no longer exists")
        if campaign.status == "cancelled":
            return None
        if campaign.run_job_id == job.job_id:
            if campaign.status not in ("running", "failed"):
                return None  # this run ended already: a duplicate delivery of its job
            campaign.status = "running"  # resumed (a retry, a redelivery or a replay)
        elif campaign.status == "running" or (campaign.schedule is None and campaign.run >= 1):
            logger.warning("campaign %s: run job %s skipped (campaign %s, run %s)", campaign_id, job.job_id,
                           campaign.status, campaign.run, extra={"tenant_id": job.tenant_id})
            return None
        else:
            campaign.run += 1
            campaign.run_job_id = job.job_id
            campaign.recipients = campaign.remaining = 0
            campaign.fanout_done = False
            campaign.status = "running"
            campaign.started_at, campaign.finished_at, campaign.last_error = utcnow(), None, None
        return Run(job.tenant_id, campaign_id, campaign.run, job.job_id, campaign.recipients, campaign.audience)


def chunks(run: Run) -> Iterator[tuple[int, list[dict]]]:
    """The audience from the run's cursor on, in chunks of ``FAIRQ_CAMPAIGN_CHUNK_SIZE``:
    (position of the chunk's first recipient, rows).

    Raises:
      JobFailed: the audience file is gone.
    """
    settings = get_settings()
    size = settings.campaign_chunk_size
    position, chunk = run.cursor, []
    try:
        for row in audiences.rows(settings, run.tenant_id, run.audience, start=run.cursor):
            chunk.append(row)
            if len(chunk) == size:
                yield position, chunk
                position, chunk = position + len(chunk), []
    except ObjectNotFound:
        raise JobFailed(f"the audience file {run.audience.get('s3_path')!r} is gone") from None
    if chunk:
        yield position, chunk


def _this_run(run: Run):
    return (Campaign.id == run.campaign_id, Campaign.run == run.run, Campaign.run_job_id == run.job_id,
            Campaign.status == "running")


def fan_out(run: Run, start: int, rows: list[dict]) -> bool:
    """Queue one delivery job per row, and move the run's cursor past them, in one transaction.

    The cursor only moves from ``start``: a chunk is queued once even if two copies of the
    run job race. Returns ``False`` (nothing queued) if the run was cancelled or moved on.

    Raises:
      JobFailed: the plan's messages or jobs quota is exhausted.
    """
    settings = get_settings()
    with tenant_session(run.tenant_id) as session:
        moved = session.execute(
            sa.update(Campaign).where(*_this_run(run), Campaign.recipients == start)
            .values(recipients=Campaign.recipients + len(rows), remaining=Campaign.remaining + len(rows))
            .execution_options(synchronize_session=False)
        ).rowcount
        if not moved:
            return False
        payloads = [{"campaign_id": run.campaign_id, "run": run.run, "recipient": start + i, "row": row}
                    for i, row in enumerate(rows)]
        try:
            plan_name = get_tenant(run.tenant_id).plan
            quotas.check(session, plan_for(settings, plan_name), plan_name=plan_name, tenant_id=run.tenant_id,
                         messages=len(rows))
            jobs.enqueue_many(session, settings, kind=DELIVER_KIND, payloads=payloads)
        except quotas.QuotaExceeded as exc:
            raise JobFailed(exc.detail) from None
    return True


def end_fan_out(run: Run) -> None:
    """Every recipient is queued; the run completes when its last delivery ends."""
    with tenant_session(run.tenant_id) as session:
        row = session.execute(
            sa.update(Campaign).where(*_this_run(run)).values(fanout_done=True)
            .returning(Campaign.remaining).execution_options(synchronize_session=False)
        ).first()
        if row is not None and row[0] <= 0:
            _complete(session, run.campaign_id, run.run)


def fail_run(job: JobContext, error: str) -> None:
    """The run job failed for good: the campaign is ``failed``, with the reason."""
    with tenant_session(job.tenant_id) as session:
        session.execute(
            sa.update(Campaign)
            .where(Campaign.id == _campaign_id(job), Campaign.run_job_id == job.job_id, Campaign.status == "running")
            .values(status="failed", last_error=error[:2000], finished_at=utcnow())
            .execution_options(synchronize_session=False)
        )


def _complete(session, campaign_id: int, run: int) -> None:
    done = session.execute(
        sa.update(Campaign).where(Campaign.id == campaign_id, Campaign.run == run, Campaign.status == "running")
        .values(status=sa.case((Campaign.schedule.is_(None), "completed"), else_="scheduled"), finished_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if done:
        logger.info("campaign %s run %s completed", campaign_id, run)


def delivery(job: JobContext) -> tuple[Delivery, str] | None:
    """The delivery this job makes, and its channel's name; ``None`` if its campaign was
    cancelled (the message must not go out)."""
    campaign_id = _campaign_id(job)
    payload = job.payload
    with tenant_session(job.tenant_id) as session:
        campaign = session.execute(_FOR_DELIVERY, {"campaign_id": campaign_id}).first()
    if campaign is None or campaign.status == "cancelled":
        return None
    run, recipient, data = int(payload.get("run", 1)), int(payload.get("recipient", 0)), payload.get("row") or {}
    return Delivery(
        tenant_id=job.tenant_id, campaign_id=campaign_id, campaign_name=campaign.name, run=run,
        recipient=recipient, data=data, message=render(campaign.message or campaign.name, data),
        delivery_id=f"{campaign_id}:{run}:{recipient}", attempt=job.attempt,
    ), campaign.channel


def record(job: JobContext, sent: Delivery, status: str, *, error: str | None = None,
           detail: dict[str, Any] | None = None) -> bool:
    """Write one attempt's outcome to the processing log; a delivery's first final outcome
    counts it done, and the run's last one completes the run.

    Returns:
      Whether a row was written (``False``: this delivery's success was recorded already).
    """
    values = {
        "campaign_id": sent.campaign_id, "tenant_id": sent.tenant_id, "status": status,
        "run": sent.run, "recipient": sent.recipient, "attempts": job.attempt, "last_error": error,
        "processed_at": utcnow(),
        "payload": {"delivery_id": sent.delivery_id, "message": sent.message, "data": dict(sent.data),
                    **(detail or {})},
    }
    with tenant_session(sent.tenant_id) as session:
        written = session.execute(_insert_outcome(status), values).rowcount
        if not written:
            return False
        if status in FINAL:
            row = session.execute(_DELIVERY_DONE, {"b_campaign": sent.campaign_id, "b_run": sent.run,
                                                   "b_recipient": sent.recipient}).first()
            if row is not None and row[0] <= 0 and row[1]:
                _complete(session, sent.campaign_id, sent.run)
    return True


# -- the statements of every delivery, built once ----------------------------------------------

_FOR_DELIVERY = (  # a few columns: never the (large) audience
    sa.select(Campaign.status, Campaign.name, Campaign.message, Campaign.channel)
    .where(Campaign.id == sa.bindparam("campaign_id"))
)

#: The delivery's first final outcome (the row just written is the only one) counts it done.
_DELIVERY_DONE = (
    sa.update(Campaign)
    .where(
        Campaign.id == sa.bindparam("b_campaign"), Campaign.run == sa.bindparam("b_run"),
        Campaign.status == "running",
        sa.select(sa.func.count()).select_from(CampaignJob).where(
            CampaignJob.campaign_id == sa.bindparam("b_campaign"), CampaignJob.run == sa.bindparam("b_run"),
            CampaignJob.recipient == sa.bindparam("b_recipient"), CampaignJob.status.in_(FINAL),
        ).scalar_subquery() == 1,
    )
    .values(remaining=Campaign.remaining - 1)
    .returning(Campaign.remaining, Campaign.fanout_done)
    .execution_options(synchronize_session=False)
)


_INSERTS: dict[tuple[str, str], sa.Executable] = {}


def _insert_outcome(status: str) -> sa.Executable:
    """An insert of a log row; a success conflicts with an earlier success of the same delivery."""
    dialect = get_db().dialect
    key = (dialect, "success" if status == "success" else "other")
    if key not in _INSERTS:
        table = CampaignJob.__table__
        if key[1] == "other":
            _INSERTS[key] = table.insert()
        else:
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            _INSERTS[key] = insert(table).on_conflict_do_nothing(
                index_elements=["campaign_id", "run", "recipient"], index_where=sa.text("status = 'success'")
            )
    return _INSERTS[key]


def webhook_target(tenant_id: str) -> WebhookTarget | None:
    """The tenant's webhook, or ``None`` if it has no URL. The secret never leaves the worker."""
    with tenant_session(tenant_id) as session:
        row = session.scalar(sa.select(WebhookSettings))
        if row is None or not row.url or not row.secret:
            return None
        return WebhookTarget(row.url, row.secret, list(row.allowed_hosts or []), get_settings().webhook_timeout_seconds)

