"""Reconciliation services: enqueue a run, run it (the job, the CLI), read runs and breaks.

The API, the job kind and the CLI call these functions; views never hold this logic.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import Invalid, NotFound, ServiceError
from app.reconcile import engine
from app.reconcile.models import BREAK_STATUSES, MISMATCH_TYPES, Reconciliation, ReconciliationRun
from app.reconcile.rules import find_rules, grace_hours
from app.scheduling import jobs
from app.scheduling.kinds import JobCancelled, JobFailed
from app.scheduling.models import Job
from app.settings import Settings
from app.csv_export import stream_csv
from app.tenancy.scoping import session_tenant, tenant_session

__all__ = [
    "RECONCILE_KIND",
    "MAX_PERIOD_DAYS",
    "ReconcileFailed",
    "BreakFilter",
    "enqueue_reconcile",
    "run_reconciliation",
    "get_run",
    "list_runs",
    "search",
    "export_csv",
    "CSV_COLUMNS",
]

logger = logging.getLogger(__name__)

#: The job kind of a reconciliation run.
RECONCILE_KIND = "reconcile"
#: The longest period one run may cover, in days.
MAX_PERIOD_DAYS = 366
#: The columns of a breaks CSV export, in order.
CSV_COLUMNS = ("id", "run_id", "source", "mismatch_type", "status", "rule", "internal_txn_id", "external_txn_id",
               "internal_amount", "external_amount", "internal_time", "external_time", "internal_status",
               "external_status", "notes")


class ReconcileFailed(JobFailed):
    """The run cannot succeed by trying again (its run or source is gone): one clear reason."""


def enqueue_reconcile(
    session: Session,
    settings: Settings,
    *,
    source: str,
    period_from: date,
    period_to: date,
    amount_tolerance: Decimal = Decimal("0.00"),
    date_tolerance_hours: int = 48,
    priority: str = "normal",
    idempotency_key: str | None = None,
) -> tuple[Job, ReconciliationRun, bool]:
    """Queue a reconciliation run for the session's tenant, in the session's transaction.

    Returns:
      The job, its run, and whether they are new (``False``: the ``idempotency_key`` was seen).

    Raises:
      Invalid: an unknown source or one without matching rules, ``from`` after ``to``, a
        period longer than :data:`MAX_PERIOD_DAYS`, a negative tolerance (400).
      QuotaExceeded: the tenant's plan allows no more jobs now (429).
    """
    tenant_id = session_tenant(session)
    if tenant_id is None:
        raise RuntimeError("enqueue_reconcile needs a session scoped to a tenant")
    name, _rules = find_rules(source)
    if period_from > period_to:
        raise Invalid(f"from ({period_from}) is after to ({period_to})", slug="invalid-period",
                      errors=[{"field": "from", "message": "must not be after to"}])
    if (period_to - period_from).days + 1 > MAX_PERIOD_DAYS:
        raise Invalid(f"a run covers at most {MAX_PERIOD_DAYS} days", slug="invalid-period",
                      errors=[{"field": "to", "message": f"at most {MAX_PERIOD_DAYS} days after from"}])
    if amount_tolerance < 0 or amount_tolerance != amount_tolerance.quantize(Decimal("0.01")):
        raise Invalid("amount_tolerance must be 0 or more, with at most two decimals",
                      errors=[{"field": "amount_tolerance", "message": "0 or more, two decimals"}])
    if date_tolerance_hours < 0:
        raise Invalid("date_tolerance_hours must be 0 or more",
                      errors=[{"field": "date_tolerance_hours", "message": "0 or more"}])
    amount_tolerance = amount_tolerance.quantize(Decimal("0.01"))
    payload = {"source": name, "from": period_from.isoformat(), "to": period_to.isoformat(),
               "amount_tolerance": str(amount_tolerance), "date_tolerance_hours": date_tolerance_hours}
    job, created = jobs.enqueue(session, settings, kind=RECONCILE_KIND, payload=payload, priority=priority,
                                idempotency_key=idempotency_key)
    if not created:
        run = session.scalar(sa.select(ReconciliationRun).where(ReconciliationRun.job_id == job.id))
        if run is None:
            raise Invalid("that Idempotency-Key was used for another kind of job")
        return job, run, False
    run = ReconciliationRun(
        tenant_id=tenant_id, job_id=job.id, source=name, period_from=period_from, period_to=period_to,
        amount_tolerance=amount_tolerance, date_tolerance_hours=date_tolerance_hours, state="queued",
    )
    session.add(run)
    session.flush()
    job.payload = {**payload, "run_id": run.id}
    return job, run, True


def _bounds(settings: Settings, run: ReconciliationRun) -> tuple[datetime, datetime]:
    """The run's period in UTC: from the start of ``from`` to the end of ``to``, in the files' time zone."""
    where = ZoneInfo(settings.ingest_timezone)
    start = datetime.combine(run.period_from, time(0), tzinfo=where).astimezone(UTC)
    end = datetime.combine(run.period_to + timedelta(days=1), time(0), tzinfo=where).astimezone(UTC)
    return start, end


def run_reconciliation(
    settings: Settings,
    *,
    tenant_id: str,
    run_id: int,
    on_phase: Callable[[int, str], None] | None = None,
    now: datetime | None = None,
) -> dict:
    """Run a queued reconciliation: match, write the breaks, store the summary (one transaction).

    Safe to run again: a run that failed halfway left nothing; one that finished is run again
    with the same result (its breaks keep their status).

    Parameters:
      on_phase: called before each phase with its number and name (progress, cancellation).
      now: the time pending payments' grace windows are measured to (default: now).

    Returns:
      The run's summary.

    Raises:
      ReconcileFailed: no such run, or its source is not installed any more.
    """
    now = now or utcnow()
    try:
        with tenant_session(tenant_id) as session:
            run = session.get(ReconciliationRun, run_id)
            if run is None:
                raise ReconcileFailed(f"reconciliation run {run_id} not found")
            try:
                source, rules = find_rules(run.source)
            except ServiceError as exc:
                raise ReconcileFailed(exc.detail) from None
            run.state = "running"
            start, end = _bounds(settings, run)
            params = engine.Params(
                tenant_id=tenant_id, source=source, rules=rules, start=start, end=end,
                amount_tolerance=Decimal(run.amount_tolerance), date_tolerance_hours=run.date_tolerance_hours,
                grace_hours=grace_hours(settings, source, rules), run_id=run.id, now=now,
                stored_before=run.summary is not None,
            )
        with tenant_session(tenant_id) as session:
            outcome = engine.match(session.connection(), params, on_phase=on_phase)
            run = session.get(ReconciliationRun, run_id)
            summary = outcome.as_summary()
            run.state, run.summary, run.finished_at = "succeeded", summary, utcnow()
    except BaseException as exc:
        state = "cancelled" if isinstance(exc, JobCancelled) else "failed"
        with tenant_session(tenant_id) as session:
            session.execute(sa.update(ReconciliationRun).where(ReconciliationRun.id == run_id).values(state=state))
        raise
    logger.info("reconciled %s %s..%s: %s breaks", source, run.period_from, run.period_to, summary["total_breaks"],
                extra={"tenant_id": tenant_id, "run_id": run_id})
    return summary


def get_run(session: Session, run_id: int) -> ReconciliationRun:
    """One of the session tenant's runs. Raises: NotFound (also for another tenant's run)."""
    run = session.get(ReconciliationRun, run_id)
    if run is None:
        raise NotFound("no such reconciliation run")
    return run


def list_runs(session: Session, *, after: int | None = None, limit: int = 50) -> list[ReconciliationRun]:
    """A page of the session tenant's runs, newest first (``after``: the last id seen)."""
    query = sa.select(ReconciliationRun).order_by(ReconciliationRun.id.desc()).limit(limit)
    if after is not None:
        query = query.where(ReconciliationRun.id < after)
    return list(session.scalars(query))


@dataclass(frozen=True)
class BreakFilter:
    """Which breaks to list; ``None`` matches everything."""

    run_id: int | None = None
    mismatch_type: str | None = None
    status: str | None = None
    source: str | None = None

    def apply(self, query: sa.Select) -> sa.Select:
        if self.mismatch_type is not None and self.mismatch_type not in MISMATCH_TYPES:
            raise Invalid(f"mismatch_type must be one of {', '.join(MISMATCH_TYPES)}",
                          errors=[{"field": "mismatch_type", "message": "unknown"}])
        if self.status is not None and self.status not in BREAK_STATUSES:
            raise Invalid(f"status must be one of {', '.join(BREAK_STATUSES)}",
                          errors=[{"field": "status", "message": "unknown"}])
        checks = [
            (self.run_id, lambda v: Reconciliation.run_id == v),
            (self.mismatch_type, lambda v: Reconciliation.mismatch_type == v),
            (self.status, lambda v: Reconciliation.status == v),
            (self.source, lambda v: Reconciliation.source == v.upper()),
        ]
        for value, clause in checks:
            if value is not None:
                query = query.where(clause(value))
        return query


def search(session: Session, where: BreakFilter, *, after: int | None = None, limit: int = 50) -> list[Reconciliation]:
    """A page of the session tenant's breaks, newest first (``after``: the last id seen)."""
    query = where.apply(sa.select(Reconciliation)).order_by(Reconciliation.id.desc()).limit(limit)
    if after is not None:
        query = query.where(Reconciliation.id < after)
    return list(session.scalars(query))


def export_csv(session: Session, where: BreakFilter) -> Iterator[str]:
    """Every matching break as CSV, page by page; cells escaped against formula injection."""
    where.apply(sa.select(Reconciliation))  # a bad filter raises before any text
    return stream_csv(CSV_COLUMNS, lambda after, limit: search(session, where, after=after, limit=limit))
