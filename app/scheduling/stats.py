"""How many jobs wait, run and lie dead, per tenant and kind, the tenants' plans, and each
tenant's share of worker time: cheap aggregates for metrics and the operators' dashboard."""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from app.db import Database, utcnow
from app.metrics.share import shares
from app.scheduling.models import Job
from app.tenancy.models import Tenant

__all__ = ["job_counts", "tenant_plans", "COUNTED_STATES", "TenantShare", "fair_share"]

jobs = Job.__table__

#: The states counted (the finished ones but ``dead`` would grow without end).
COUNTED_STATES = ("queued", "failed", "dispatched", "running", "dead")

_COUNTS = (
    sa.select(jobs.c.tenant_id, jobs.c.kind, jobs.c.state, sa.func.count())
    .where(jobs.c.state.in_(COUNTED_STATES))
    .group_by(jobs.c.tenant_id, jobs.c.kind, jobs.c.state)
)


def job_counts(db: Database) -> list[tuple[str, str, str, int]]:
    """(tenant, kind, state, jobs) for every state of :data:`COUNTED_STATES` (one statement)."""
    with db.system() as connection:
        return [tuple(row) for row in connection.execute(_COUNTS)]


def tenant_plans(db: Database) -> dict[str, str]:
    """Every tenant's plan."""
    tenants = Tenant.__table__
    with db.system() as connection:
        return dict(connection.execute(sa.select(tenants.c.id, tenants.c.plan)).all())


@dataclass(frozen=True)
class TenantShare:
    """One tenant's place in the fair share, now and over the last window."""

    tenant_id: str
    weight: float
    paused: bool
    queued: int
    in_flight: int
    #: queued jobs the gate put back (paused tenant, concurrency cap), waiting again
    deferred: int
    #: fraction of the worker time used in the window, and of the weights of active tenants
    share: float
    entitlement: float
    #: 99th percentile of (start - enqueue) of the jobs started in the window, in seconds
    wait_p99: float | None
    jobs_started: int


def fair_share(db: Database, *, window: timedelta, now: datetime | None = None,
               max_waits: int = 50_000) -> list[TenantShare]:
    """Every active tenant's share of worker time against its entitlement (weight over the
    weights of the tenants that ran, waited or were in flight in ``window``), from the jobs
    table: four aggregate statements, whatever the number of jobs.

    Parameters:
      max_waits: the most recent job starts the wait percentiles are computed from.
    """
    since = (now or utcnow()) - window
    c = jobs.c
    tenants = Tenant.__table__
    with db.system() as connection:
        counts = connection.execute(
            sa.select(
                c.tenant_id,
                sa.func.count().filter(c.state.in_(("queued", "failed"))),
                sa.func.count().filter(c.state.in_(("dispatched", "running"))),
                sa.func.count().filter(c.state == "queued", c.progress_message.like("deferred:%")),
            ).where(c.state.in_(("queued", "failed", "dispatched", "running"))).group_by(c.tenant_id)
        ).all()
        used = dict(connection.execute(
            sa.select(c.tenant_id, sa.func.sum(c.run_seconds))
            .where(c.finished_at >= since).group_by(c.tenant_id)
        ).all())
        waits: dict[str, list[float]] = defaultdict(list)
        for tenant_id, enqueued_at, started_at in connection.execute(
            sa.select(c.tenant_id, c.enqueued_at, c.started_at)
            .where(c.started_at >= since).order_by(c.started_at.desc()).limit(max_waits)
        ):
            waits[tenant_id].append(max(0.0, (started_at - enqueued_at).total_seconds()))
        known = {row.id: row for row in connection.execute(sa.select(tenants.c.id, tenants.c.weight, tenants.c.paused))}
    now_counts = {tenant_id: (queued, in_flight, deferred) for tenant_id, queued, in_flight, deferred in counts}
    busy = {t for t, (queued, in_flight, _) in now_counts.items() if queued or in_flight}
    used_seconds = {t: float(seconds or 0.0) for t, seconds in used.items()}
    weights = {t: float(row.weight) for t, row in known.items()}
    result = []
    for tenant_id, (share, entitlement) in sorted(shares(used_seconds, weights, busy).items()):
        queued, in_flight, deferred = now_counts.get(tenant_id, (0, 0, 0))
        tenant_waits = waits.get(tenant_id, [])
        result.append(TenantShare(
            tenant_id=tenant_id, weight=weights.get(tenant_id, 1.0), paused=bool(known[tenant_id].paused)
            if tenant_id in known else False, queued=queued, in_flight=in_flight, deferred=deferred,
            share=share, entitlement=entitlement, wait_p99=_percentile(tenant_waits, 0.99),
            jobs_started=len(tenant_waits),
        ))
    return result


def _percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``None`` for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]
