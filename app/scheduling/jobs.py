"""The job API every job kind uses: enqueue (the outbox), read, list and cancel.

:func:`enqueue` adds a job inside the caller's transaction: the job exists
exactly when the caller's own rows commit, and the dispatcher hears of it at
that moment. Nothing is sent to the broker here; the dispatcher does that, in
fair order.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import metrics
from app.db import AFTER_COMMIT, utcnow
from app.errors import Conflict, Invalid, NotFound
from app.quota import quotas
from app.quota.plans import plan_for
from app.scheduling import signals
from app.scheduling.kinds import kinds
from app.scheduling.models import FINAL_STATES, PRIORITIES, STATES, Job
from app.scheduling.store import add_usage
from app.settings import PlanSpec, Settings
from app.tenancy.models import Tenant
from app.tenancy.scoping import session_tenant

__all__ = ["enqueue", "enqueue_many", "require_api_kind", "get_job", "job_for_key", "list_jobs", "cancel_job",
           "cancel_matching", "dedicated_queue", "queue_for"]

logger = logging.getLogger(__name__)

#: Queue name prefix of tenants on a dedicated plan.
DEDICATED_PREFIX = "fairq.t."


def dedicated_queue(tenant_id: str) -> str:
    """The broker queue of a tenant whose plan gives it its own."""
    return DEDICATED_PREFIX + tenant_id


def queue_for(tenant_id: str, plan: PlanSpec) -> str | None:
    """The broker queue of a tenant's jobs under ``plan`` (a job's ``queue``, which the dispatcher
    publishes to): the tenant's own if the plan gives it one, else ``None``, its kind's queue."""
    return dedicated_queue(tenant_id) if plan.dedicated_queue else None


def enqueue(
    session: Session,
    settings: Settings,
    *,
    kind: str,
    payload: dict[str, Any] | None = None,
    priority: str = "normal",
    cost: float | None = None,
    idempotency_key: str | None = None,
    not_before: datetime | None = None,
) -> tuple[Job, bool]:
    """Add a job for the session's tenant, in the session's transaction.

    Parameters:
      session: a session scoped to the tenant (its tenant is the job's: never the caller's say-so).
      kind: a declared job kind.
      priority: ``high``, ``normal`` or ``low`` (order within the tenant only).
      cost: the expected run time in seconds, if the caller knows better than the kind's estimate.
      idempotency_key: the same key returns the tenant's existing job instead of a new one.
      not_before: do not start before this time.

    Returns:
      The job, and whether it was created now (``False``: an existing job with the same key).

    Raises:
      Invalid: an unknown kind or priority.
      QuotaExceeded: the tenant's plan allows no more now (429).
    """
    tenant_id = session_tenant(session)
    if tenant_id is None:
        raise RuntimeError("enqueue needs a session scoped to a tenant")
    declared = kinds().get(kind)
    if declared is None:
        raise Invalid(f"unknown job kind {kind!r}", errors=[{"field": "kind", "message": "unknown job kind"}])
    if priority not in PRIORITIES:
        raise Invalid(f"priority must be one of {', '.join(PRIORITIES)}",
                      errors=[{"field": "priority", "message": "high, normal or low"}])
    if idempotency_key:
        existing = session.scalar(sa.select(Job).where(Job.idempotency_key == idempotency_key))
        if existing is not None:
            return existing, False

    tenant = session.get(Tenant, tenant_id)
    plan_name = tenant.plan if tenant else "default"
    plan = plan_for(settings, plan_name)
    quotas.check(session, plan, plan_name=plan_name, tenant_id=tenant_id, jobs=1)
    job = Job(
        tenant_id=tenant_id,
        kind=kind,
        state="queued",
        priority=PRIORITIES[priority],
        payload=payload or {},
        idempotency_key=idempotency_key or None,
        cost_estimate=cost,
        max_retries=declared.max_retries,
        queue=queue_for(tenant_id, plan),
        not_before=not_before,
        enqueued_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(job)
    except IntegrityError:  # the same key, committed a moment ago by a concurrent request
        existing = session.scalar(sa.select(Job).where(Job.idempotency_key == idempotency_key))
        if existing is None:
            raise
        return existing, False
    add_usage(session.connection(), tenant_id=tenant_id, kind=kind, day=job.enqueued_at.date(), jobs=1)
    signals.announce(session, tenant_id)
    _count_on_commit(session, tenant_id, kind, 1)
    logger.info("job %s queued", job.id,
                extra={"job_id": job.id, "tenant_id": tenant_id, "kind": kind, "state": "queued"})
    return job, True


def _count_on_commit(session: Session, tenant_id: str, kind: str, count: int) -> None:
    """Count the jobs in the metrics once (and only if) the caller's transaction commits."""
    session.info.setdefault(AFTER_COMMIT, []).append(lambda: metrics.job_enqueued(tenant_id, kind, count))


def require_api_kind(kind: str) -> None:
    """Tenants may enqueue only the kinds declared ``api=True`` directly (``POST /jobs``).

    Raises:
      Invalid: any other kind, with the list of those that are open.
    """
    declared = kinds().get(kind)
    if declared is None or not declared.api:
        open_kinds = sorted(name for name, k in kinds().items() if k.api)
        raise Invalid(f"kind {kind!r} cannot be enqueued here; try one of {', '.join(open_kinds)}",
                      errors=[{"field": "kind", "message": "not open to the API"}])


def enqueue_many(
    session: Session,
    settings: Settings,
    *,
    kind: str,
    payloads: list[dict[str, Any]],
    priority: str = "normal",
    cost: float | None = None,
) -> int:
    """Add many jobs of one kind for the session's tenant, in one statement (a fan-out).

    The same outbox rule as :func:`enqueue`: they exist when the caller commits.

    Returns:
      How many jobs were added.

    Raises:
      Invalid, QuotaExceeded: as :func:`enqueue` (all or nothing).
    """
    tenant_id = session_tenant(session)
    if tenant_id is None:
        raise RuntimeError("enqueue_many needs a session scoped to a tenant")
    declared = kinds().get(kind)
    if declared is None or priority not in PRIORITIES:
        raise Invalid(f"unknown job kind {kind!r} or priority {priority!r}")
    if not payloads:
        return 0
    tenant = session.get(Tenant, tenant_id)
    plan_name = tenant.plan if tenant else "default"
    plan = plan_for(settings, plan_name)
    quotas.check(session, plan, plan_name=plan_name, tenant_id=tenant_id, jobs=len(payloads))
    now = utcnow()
    queue = queue_for(tenant_id, plan)
    rows = [
        {"tenant_id": tenant_id, "kind": kind, "state": "queued", "priority": PRIORITIES[priority],
         "payload": payload, "cost_estimate": cost, "max_retries": declared.max_retries, "queue": queue,
         "enqueued_at": now, "attempts": 0, "run_seconds": 0.0, "cancel_requested": False}
        for payload in payloads
    ]
    session.execute(sa.insert(Job), rows)
    add_usage(session.connection(), tenant_id=tenant_id, kind=kind, day=now.date(), jobs=len(rows))
    signals.announce(session, tenant_id)
    _count_on_commit(session, tenant_id, kind, len(rows))
    logger.info("%d %s jobs queued", len(rows), kind, extra={"kind": kind, "state": "queued"})
    return len(rows)


def get_job(session: Session, job_id: int) -> Job:
    """One of the session tenant's jobs. Raises: NotFound (also for another tenant's job)."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound("no such job")
    return job


def job_for_key(session: Session, idempotency_key: str) -> Job | None:
    """The session tenant's job enqueued with ``idempotency_key``, if there is one."""
    return session.scalar(sa.select(Job).where(Job.idempotency_key == idempotency_key))


def list_jobs(
    session: Session, *, state: str | None = None, kind: str | None = None, after: int | None = None, limit: int = 50
) -> list[Job]:
    """A page of the tenant's jobs, newest first; ``after`` continues from a previous page's last id."""
    if state is not None and state not in STATES:
        raise Invalid(f"state must be one of {', '.join(STATES)}", errors=[{"field": "state", "message": "unknown"}])
    query = sa.select(Job).order_by(Job.id.desc()).limit(limit)
    if state:
        query = query.where(Job.state == state)
    if kind:
        query = query.where(Job.kind == kind)
    if after is not None:
        query = query.where(Job.id < after)
    return list(session.scalars(query))


def cancel_job(session: Session, job_id: int) -> Job:
    """Cancel a job: a waiting one never runs; a running one stops at its next checkpoint.

    Raises:
      NotFound: no such job of this tenant.
      Conflict: the job already finished.
    """
    job = get_job(session, job_id)
    if job.state in FINAL_STATES:
        raise Conflict(f"job {job_id} already {job.state}", slug="job-finished")
    job.cancel_requested = True
    if job.state != "running":
        job.state = "cancelled"
        job.finished_at = utcnow()
    signals.announce(session, job.tenant_id)
    logger.info("job %s cancel requested", job_id, extra={"job_id": job_id, "state": job.state})
    return job


def cancel_matching(session: Session, *, kinds: tuple[str, ...], payload_key: str, value: int) -> int:
    """Cancel, in the session's transaction, every unfinished job of the session's tenant of
    these kinds whose ``payload[payload_key]`` is ``value`` (a campaign's jobs, say): waiting
    ones never run, running ones stop at their next checkpoint.

    Returns:
      How many jobs were cancelled or asked to stop.
    """
    match = (Job.kind.in_(kinds), Job.state.not_in(FINAL_STATES), Job.payload[payload_key].as_integer() == value)
    waiting = session.execute(
        sa.update(Job).where(*match, Job.state != "running")
        .values(state="cancelled", cancel_requested=True, finished_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    running = session.execute(
        sa.update(Job).where(*match, Job.state == "running").values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    ).rowcount
    if waiting or running:
        signals.announce(session, session_tenant(session))
    return (waiting or 0) + (running or 0)
