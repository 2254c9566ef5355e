"""The ``tenant`` label, capped: beyond ``FAIRQ_METRICS_MAX_TENANTS`` tenants, the rest are ``_other``.

Every metric with a ``tenant`` label asks :meth:`TenantLabels.label` for it. A
tenant keeps a label of its own while it is among the busiest tenants (jobs
over the last week, from ``usage_daily``), re-ranked every minute off the hot
path; while there is room, a tenant seen for the first time gets a label at
once. So every process ranks the same way, and the number of series stays
bounded however many tenants there are.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import sqlalchemy as sa

__all__ = ["TenantLabels", "OTHER"]

logger = logging.getLogger(__name__)

#: The label of every tenant beyond the cap.
OTHER = "_other"
#: Seconds between re-rankings.
REFRESH_SECONDS = 60.0
#: Days of usage a ranking looks at.
RANKING_DAYS = 7


class TenantLabels:
    """Which tenants get a ``tenant`` label of their own.

    Parameters:
      cap: how many tenants at most.
      ranking: returns tenant ids, busiest first (called in a background thread); ``None``: no
        re-ranking, first come first labelled.
    """

    def __init__(self, cap: int, *, ranking=None, clock=time.monotonic) -> None:
        self.cap = cap
        self._ranking = ranking
        self._clock = clock
        self._labelled: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._next_refresh = 0.0

    def label(self, tenant_id: str) -> str:
        """The label value of ``tenant_id``: itself, or :data:`OTHER`. Cheap: a set lookup."""
        if self._ranking is not None and self._clock() >= self._next_refresh:
            self._refresh_soon()
        labelled = self._labelled
        if tenant_id in labelled:
            return tenant_id
        if len(labelled) < self.cap:
            with self._lock:
                if len(self._labelled) < self.cap:
                    self._labelled = self._labelled | {tenant_id}
                    return tenant_id
        return OTHER

    def rank(self, busiest_first: list[str]) -> None:
        """Label these tenants (the first ``cap`` of them), and only them until the next ranking."""
        with self._lock:
            self._labelled = frozenset(busiest_first[: self.cap])

    def _refresh_soon(self) -> None:
        with self._lock:
            if self._clock() < self._next_refresh:
                return
            self._next_refresh = self._clock() + REFRESH_SECONDS
        threading.Thread(target=self._refresh, name="fairq-metrics-labels", daemon=True).start()

    def _refresh(self) -> None:
        try:
            self.rank(list(self._ranking()))
        except Exception as exc:  # a ranking is an optimisation: keep the current labels
            logger.warning("could not rank tenants for metric labels: %r", exc)


def busiest_tenants(limit: int) -> list[str]:
    """Tenant ids by jobs enqueued over the last :data:`RANKING_DAYS` days, busiest first."""
    from app.db import get_db, utcnow
    from app.quota.models import UsageDaily

    usage = UsageDaily.__table__
    since = utcnow().date() - timedelta(days=RANKING_DAYS)
    with get_db().system() as connection:
        return list(connection.scalars(
            sa.select(usage.c.tenant_id).where(usage.c.day >= since)
            .group_by(usage.c.tenant_id)
            .order_by(sa.func.sum(usage.c.jobs).desc(), usage.c.tenant_id)
            .limit(limit)
        ))
