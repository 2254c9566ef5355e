"""Usage reports: what tenants used, per day or month and job kind (from ``usage_daily`` and its
monthly roll-ups), as JSON items or CSV; and the current usage that quotas count."""
from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.errors import Invalid
from app.ingest.rejects import escape_cell
from app.quota import rollups
from app.quota.models import METRICS, UsageDaily, UsageMonthly

__all__ = ["report", "check_range", "to_csv", "current_usage", "GRANULARITIES", "CSV_COLUMNS"]

#: How usage can be summed.
GRANULARITIES = ("day", "month")
#: The longest range one report covers.
MAX_DAYS = 366
#: The columns of a report as CSV.
CSV_COLUMNS = ("period", "tenant_id", "kind", *METRICS)


def report(session: Session, *, start: date, end: date, granularity: str = "day") -> list[dict]:
    """Usage between ``start`` and ``end`` (inclusive) per period, tenant and kind.

    The session decides whose usage: a tenant session sees its own, a system session everyone's.
    By month, each month wholly in the range with a final roll-up is read from ``usage_monthly``
    (one row per tenant and kind), the rest day by day from ``usage_daily``: the same sums.

    Raises:
      Invalid: a reversed or too long range, or an unknown granularity.
    """
    check_range(start, end, granularity)
    totals: dict[tuple[str, str, str], dict] = {}

    def add(period: str, tenant_id: str, kind: str, values) -> None:
        entry = totals.setdefault((period, tenant_id, kind), {
            "period": period, "tenant_id": tenant_id, "kind": kind, **{m: 0 for m in METRICS},
        })
        for metric, value in zip(METRICS, values):
            entry[metric] += value or 0

    rolled = rollups.final_months(session, start, end) if granularity == "month" else set()
    if rolled:
        for tenant_id, month, kind, *values in session.execute(
            sa.select(UsageMonthly.tenant_id, UsageMonthly.month, UsageMonthly.kind,
                      *(getattr(UsageMonthly, m) for m in METRICS))
            .where(UsageMonthly.month.in_(rolled))
        ):
            add(month.strftime("%Y-%m"), tenant_id, kind, values)
    days = sa.and_(UsageDaily.day >= start, UsageDaily.day <= end,
                   *(sa.not_(sa.and_(UsageDaily.day >= m, UsageDaily.day < rollups.next_month(m))) for m in rolled))
    for tenant_id, day, kind, *values in session.execute(
        sa.select(UsageDaily.tenant_id, UsageDaily.day, UsageDaily.kind, *(getattr(UsageDaily, m) for m in METRICS))
        .where(days)
    ):
        add(day.isoformat() if granularity == "day" else day.strftime("%Y-%m"), tenant_id, kind, values)
    items = [totals[key] for key in sorted(totals)]
    for entry in items:
        entry["run_seconds"] = round(float(entry["run_seconds"]), 3)
    return items


def check_range(start: date, end: date, granularity: str) -> None:
    """Raises: Invalid (a ``validation-error`` problem naming the field) for a range no report covers."""
    if granularity not in GRANULARITIES:
        raise Invalid("granularity must be day or month", errors=[{"field": "granularity", "message": "day or month"}])
    if end < start:
        raise Invalid("to must not be before from", errors=[{"field": "to", "message": "before from"}])
    if end - start > timedelta(days=MAX_DAYS):
        raise Invalid(f"a report covers at most {MAX_DAYS} days", errors=[{"field": "from", "message": "range too long"}])


def to_csv(items: list[dict]) -> str:
    """A report as CSV (a header, then one line per period, tenant and kind)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for item in items:
        writer.writerow([escape_cell(item[column]) for column in CSV_COLUMNS])
    return buffer.getvalue()


def current_usage(connection: sa.Connection, today: date) -> dict[tuple[str, str, str], int]:
    """What every tenant used so far today and this month: ``(tenant, metric, "day"|"month") -> amount``
    for the metrics quotas limit (jobs, rows, messages); one statement over this month's rows."""
    first = today.replace(day=1)
    metered = ("jobs", "rows", "messages")
    columns = []
    for metric in metered:
        column = getattr(UsageDaily, metric)
        columns += [sa.func.sum(sa.case((UsageDaily.day == today, column), else_=0)), sa.func.sum(column)]
    rows = connection.execute(
        sa.select(UsageDaily.tenant_id, *columns).where(UsageDaily.day >= first).group_by(UsageDaily.tenant_id)
    ).all()
    used: dict[tuple[str, str, str], int] = {}
    for tenant_id, *amounts in rows:
        for index, metric in enumerate(metered):
            used[(tenant_id, metric, "day")] = int(amounts[2 * index] or 0)
            used[(tenant_id, metric, "month")] = int(amounts[2 * index + 1] or 0)
    return used
