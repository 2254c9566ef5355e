"""Monthly roll-ups of usage: ``usage_daily`` summed per tenant, month and kind into ``usage_monthly``.

The daily rows stay the record; a roll-up is a copy that makes reading a month
one row instead of thirty. It is redone every hour for this month and the
previous one (each roll-up replaces the month's rows in one transaction), and
a month's roll-up is *final* once it was taken after the month ended, plus a
margin for jobs that finished on its last evening: only final roll-ups are read
(:func:`final_months`), so a report never depends on when the job last ran.
"""
from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta

import dramatiq
import sqlalchemy as sa
from periodiq import cron
from sqlalchemy.orm import Session

from app.broker import HOUSEKEEPING_TIME_LIMIT_MS  # (the broker is set before any actor is declared)
from app.db import Database, get_db, utcnow
from app.quota.models import METRICS, UsageDaily, UsageMonthly

__all__ = ["roll_up", "roll_up_usage", "final_months", "month_start", "next_month", "FINAL_AFTER"]

logger = logging.getLogger(__name__)

#: A month's roll-up taken this long after the month ended is final.
FINAL_AFTER = timedelta(hours=1)

daily = UsageDaily.__table__
monthly = UsageMonthly.__table__


def month_start(day: date) -> date:
    """The first day of ``day``'s month."""
    return day.replace(day=1)


def next_month(first: date) -> date:
    """The first day of the month after the one starting on ``first``."""
    return (first + timedelta(days=32)).replace(day=1)


def roll_up(first: date, *, db: Database | None = None) -> int:
    """Replace the roll-up of the month starting on ``first`` (every tenant). Returns its rows."""
    now = utcnow()
    summed = (
        sa.select(daily.c.tenant_id, sa.literal(first, sa.Date), daily.c.kind,
                  *(sa.func.sum(daily.c[m]) for m in METRICS), sa.literal(now, monthly.c.rolled_at.type))
        .where(daily.c.day >= first, daily.c.day < next_month(first))
        .group_by(daily.c.tenant_id, daily.c.kind)
    )
    with (db or get_db()).system() as connection:
        connection.execute(monthly.delete().where(monthly.c.month == first))
        inserted = connection.execute(monthly.insert().from_select(
            ["tenant_id", "month", "kind", *METRICS, "rolled_at"], summed))
    return inserted.rowcount or 0


def final_months(session: Session, start: date, end: date) -> set[date]:
    """The months wholly inside [start, end] whose roll-up is final (seen through ``session``'s scope)."""
    first = month_start(start) if start.day == 1 else next_month(month_start(start))
    candidates = []
    while next_month(first) - timedelta(days=1) <= end:
        candidates.append(first)
        first = next_month(first)
    if not candidates:
        return set()
    rolled = session.execute(
        sa.select(UsageMonthly.month, sa.func.min(UsageMonthly.rolled_at))
        .where(UsageMonthly.month.in_(candidates)).group_by(UsageMonthly.month)
    ).all()
    return {month for month, at in rolled
            if at >= datetime.combine(next_month(month), time(), UTC) + FINAL_AFTER}


@dramatiq.actor(queue_name="fairq.housekeeping", max_retries=0, time_limit=HOUSEKEEPING_TIME_LIMIT_MS,
                periodic=cron("41 * * * *"))
def roll_up_usage() -> None:
    """Hourly: roll up this month's usage and the previous month's. Safe to run twice."""
    this = month_start(utcnow().date())
    previous = month_start(this - timedelta(days=1))
    for first in (previous, this):
        logger.info("rolled up usage of %s: %d rows", first.strftime("%Y-%m"), roll_up(first))
