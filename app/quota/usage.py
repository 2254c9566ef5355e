"""Usage reports: what tenants used, per day or month and job kind (from ``usage_daily``)."""
from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.errors import Invalid
from app.quota.models import METRICS, UsageDaily

__all__ = ["report", "GRANULARITIES"]

#: How usage can be summed.
GRANULARITIES = ("day", "month")
#: The longest range one report covers.
MAX_DAYS = 366


def report(session: Session, *, start: date, end: date, granularity: str = "day") -> list[dict]:
    """Usage between ``start`` and ``end`` (inclusive) per period, tenant and kind.

    The session decides whose usage: a tenant session sees its own, a system session everyone's.

    Raises:
      Invalid: a reversed or too long range, or an unknown granularity.
    """
    if granularity not in GRANULARITIES:
        raise Invalid("granularity must be day or month", errors=[{"field": "granularity", "message": "day or month"}])
    if end < start:
        raise Invalid("to must not be before from", errors=[{"field": "to", "message": "before from"}])
    if end - start > timedelta(days=MAX_DAYS):
        raise Invalid(f"a report covers at most {MAX_DAYS} days", errors=[{"field": "from", "message": "range too long"}])
    rows = session.execute(
        sa.select(UsageDaily.tenant_id, UsageDaily.day, UsageDaily.kind, *(getattr(UsageDaily, m) for m in METRICS))
        .where(UsageDaily.day >= start, UsageDaily.day <= end)
        .order_by(UsageDaily.day, UsageDaily.tenant_id, UsageDaily.kind)
    ).all()
    totals: dict[tuple[str, str, str], dict] = {}
    for tenant_id, day, kind, *values in rows:
        period = day.isoformat() if granularity == "day" else day.strftime("%Y-%m")
        entry = totals.setdefault((period, tenant_id, kind), {
            "period": period, "tenant_id": tenant_id, "kind": kind, **{m: 0 for m in METRICS},
        })
        for metric, value in zip(METRICS, values):
            entry[metric] += value or 0
    for entry in totals.values():
        entry["run_seconds"] = round(float(entry["run_seconds"]), 3)
    return list(totals.values())
