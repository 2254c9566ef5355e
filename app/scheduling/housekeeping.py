"""Housekeeping that runs on a schedule (``periodiq app.tasks`` or ``fairq up``)."""
from __future__ import annotations

import logging
from datetime import timedelta

import dramatiq
import sqlalchemy as sa
from periodiq import cron

from app.broker import HOUSEKEEPING_TIME_LIMIT_MS  # (the broker is set before any actor is declared)
from app.db import get_db, utcnow
from app.scheduling.periodic import PeriodicRun
from app.settings import get_settings

__all__ = ["purge_periodic_runs", "purge_old_periodic_runs", "purge_revoked_tokens"]

logger = logging.getLogger(__name__)


def purge_old_periodic_runs(*, older_than: timedelta) -> int:
    """Delete the records of periodic runs that finished more than ``older_than`` ago.

    Returns:
      The number of records deleted.
    """
    cutoff = utcnow() - older_than
    with get_db().session() as session:
        result = session.execute(
            sa.delete(PeriodicRun).where(
                PeriodicRun.scheduled_at < cutoff, PeriodicRun.outcome != "running"
            )
        )
    return result.rowcount or 0


@dramatiq.actor(queue_name="fairq.housekeeping", max_retries=0, time_limit=HOUSEKEEPING_TIME_LIMIT_MS,
                periodic=cron("17 * * * *"))
def purge_periodic_runs() -> None:
    """Hourly: forget periodic runs older than ``FAIRQ_PERIODIC_RETENTION_DAYS``. Safe to run twice."""
    days = get_settings().periodic_retention_days
    deleted = purge_old_periodic_runs(older_than=timedelta(days=days))
    logger.info("purged %d periodic run records older than %d days", deleted, days)


@dramatiq.actor(queue_name="fairq.housekeeping", max_retries=0, time_limit=HOUSEKEEPING_TIME_LIMIT_MS,
                periodic=cron("23 * * * *"))
def purge_revoked_tokens() -> None:
    """Hourly: forget revocations of tokens that have expired anyway. Safe to run twice."""
    from app.tenancy.tokens import purge_expired_revocations

    logger.info("purged %d expired token revocations", purge_expired_revocations())
