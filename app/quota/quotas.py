"""Hard quotas, checked when work is accepted: jobs, rows and messages per day and per month.

Usage comes from the ``usage_daily`` table (the durable record), so a Redis
flush never resets a quota. Over a quota, the request is refused with 429 and
a problem naming the quota, its limit, the usage and when it resets.

A job is metered in the transaction that enqueues it, so a jobs quota is exact
only if no other enqueue of the tenant reads the usage between this one's read
and its commit: :func:`check` first takes a lock that the caller's transaction
holds until it ends (a transaction-level advisory lock per tenant on
PostgreSQL, the database's write lock on SQLite), and only for a plan with a
jobs quota: other tenants, and plans without one, never wait for it.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app import metrics
from app.db import utcnow
from app.errors import ServiceError
from app.quota.models import UsageDaily
from app.quota.plans import QUOTA_FIELDS
from app.settings import PlanSpec

__all__ = ["QuotaExceeded", "Standing", "check", "standing", "period_bounds"]

#: First key of the advisory locks that serialise a tenant's jobs-quota checks (PostgreSQL's
#: two-key locks: they never meet the dispatcher's one-key leadership lock).
QUOTA_LOCK_SPACE = 0x0F41_0001


class QuotaExceeded(ServiceError):
    status = 429
    slug = "quota-exceeded"


def period_bounds(period: str, today: date) -> tuple[date, datetime]:
    """The first day of the period containing ``today``, and when the next one starts (UTC)."""
    if period == "day":
        return today, datetime.combine(today + timedelta(days=1), time(), UTC)
    first = today.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, datetime.combine(following, time(), UTC)


@dataclass(frozen=True)
class Standing:
    """Where the session's tenant stands against one quota of its plan."""

    quota: str
    metric: str
    limit: int
    used: int
    resets_at: datetime


def standing(session: Session, plan: PlanSpec, metrics_wanted: set[str] | None = None) -> list[Standing]:
    """Every quota the plan sets (of ``metrics_wanted``, if given), with the session tenant's usage."""
    today = utcnow().date()
    found = []
    for field, (metric, period) in QUOTA_FIELDS.items():
        limit = getattr(plan, field)
        if limit is None or (metrics_wanted is not None and metric not in metrics_wanted):
            continue
        start, resets_at = period_bounds(period, today)
        used = session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(getattr(UsageDaily, metric)), 0)).where(UsageDaily.day >= start)
        )
        found.append(Standing(field, metric, limit, int(used), resets_at))
    return found


def check(session: Session, plan: PlanSpec, *, plan_name: str, tenant_id: str, **adding: int) -> None:
    """Refuse work that would take the tenant over a quota of its plan.

    Parameters:
      plan_name: the plan's name, for the refusal's detail.
      adding: the amount of each metric the work adds (``jobs=1``); ``rows=0``
        asks only that the tenant is not already over its rows quota.

    Raises:
      QuotaExceeded: with the quota, limit, usage and reset time.
    """
    if adding.get("jobs") and (plan.jobs_per_day is not None or plan.jobs_per_month is not None):
        _serialise(session, tenant_id)
    for quota in standing(session, plan, set(adding)):
        amount = adding[quota.metric]
        if quota.used + amount > quota.limit or (amount == 0 and quota.used >= quota.limit):
            retry = max(1, int((quota.resets_at - utcnow()).total_seconds()))
            metrics.quota_rejected(tenant_id, quota.quota)
            raise QuotaExceeded(
                f"quota {quota.quota} of plan {plan_name!r} exceeded: {quota.used} used of {quota.limit}; "
                f"resets at {quota.resets_at.isoformat()}",
                headers={"Retry-After": str(retry)},
                quota=quota.quota,
                limit=quota.limit,
                usage=quota.used,
                resets_at=quota.resets_at.isoformat(),
            )


def _serialise(session: Session, tenant_id: str) -> None:
    """Wait for, then hold until the session's transaction ends, the right to read and add to the
    tenant's jobs usage (see the module docstring)."""
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(tenant_id.encode()) - 2**31  # PostgreSQL's int4
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(QUOTA_LOCK_SPACE, key)))
    else:  # SQLite begins a transaction at its first write, IMMEDIATE (app.db): this one, writing nothing
        session.execute(sa.update(UsageDaily).where(sa.false()).values(jobs=UsageDaily.jobs)
                        .execution_options(synchronize_session=False))
