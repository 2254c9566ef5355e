"""Hard quotas, checked when work is accepted: jobs, rows and messages per day and per month.

Usage comes from the ``usage_daily`` table (the durable record), so a Redis
flush never resets a quota. Over a quota, the request is refused with 429 and
a problem naming the quota, its limit, the usage and when it resets.
"""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app import metrics
from app.db import utcnow
from app.errors import ServiceError
from app.quota.models import UsageDaily
from app.quota.plans import QUOTA_FIELDS
from app.settings import PlanSpec

__all__ = ["QuotaExceeded", "check", "period_bounds"]


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


def check(session: Session, plan: PlanSpec, *, tenant_id: str, **adding: int) -> None:
    """Refuse work that would take the tenant over a quota of its plan.

    Parameters:
      adding: the amount of each metric the work adds (``jobs=1``); ``rows=0``
        asks only that the tenant is not already over its rows quota.

    Raises:
      QuotaExceeded: with the quota, limit, usage and reset time.
    """
    today = utcnow().date()
    for field, (metric, period) in QUOTA_FIELDS.items():
        limit = getattr(plan, field)
        if limit is None or metric not in adding:
            continue
        start, resets_at = period_bounds(period, today)
        used = session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(getattr(UsageDaily, metric)), 0)).where(UsageDaily.day >= start)
        )
        amount = adding[metric]
        if used + amount > limit or (amount == 0 and used >= limit):
            retry = max(1, int((resets_at - utcnow()).total_seconds()))
            metrics.quota_rejected(tenant_id, field)
            raise QuotaExceeded(
                f"quota {field} of plan exceeded: {used} used of {limit}; resets at {resets_at.isoformat()}",
                headers={"Retry-After": str(retry)},
                quota=field,
                limit=limit,
                usage=int(used),
                resets_at=resets_at.isoformat(),
            )
