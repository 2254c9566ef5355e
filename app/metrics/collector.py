"""Gauges read from the database when Prometheus scrapes: jobs waiting, in flight and dead, and quotas.

These are states, not events, and the database is their source of truth, so
they are never counted job by job: two aggregate statements per scrape (jobs
by tenant, kind and state over an index; this month's usage by tenant). The
API's ``/metrics`` serves them; worker endpoints do not (every endpoint would
report the same numbers).
"""
from __future__ import annotations

import logging
from collections import defaultdict

from app.db import get_db, utcnow
from app.metrics.instruments import labels
from app.quota.plans import QUOTA_FIELDS, plan_for
from app.quota.usage import current_usage
from app.scheduling.stats import job_counts, tenant_plans
from app.settings import get_settings

__all__ = ["DatabaseCollector", "STATE_GAUGES", "QUOTA_GAUGES"]

logger = logging.getLogger(__name__)

#: Gauge name, help, and the job states it counts.
STATE_GAUGES = {
    "fairq_jobs_queued": ("Jobs waiting to be dispatched (queued, or failed and due for a retry).",
                          ("queued", "failed")),
    "fairq_jobs_in_flight": ("Jobs dispatched to the broker or running.", ("dispatched", "running")),
    "fairq_jobs_dead": ("Jobs in the dead-letter queue (no retry left).", ("dead",)),
}
#: Gauge name and help of quota usage, per tenant and quota of its plan.
QUOTA_GAUGES = {
    "fairq_quota_used": "Usage counted against each quota of the tenant's plan, this day or month.",
    "fairq_quota_limit": "The limit of each quota of the tenant's plan.",
}


class DatabaseCollector:
    """A prometheus_client collector (``collect()`` at scrape time)."""

    def describe(self):
        return []  # the families are only known by querying; describe nothing at registration

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        families = {name: GaugeMetricFamily(name, text, labels=["tenant", "kind"])
                    for name, (text, _) in STATE_GAUGES.items()}
        quota = {name: GaugeMetricFamily(name, text, labels=["tenant", "quota"]) for name, text in QUOTA_GAUGES.items()}
        try:
            self._jobs(families)
            self._quotas(quota)
        except Exception as exc:  # a scrape must answer even when the database does not
            logger.warning("metrics from the database unavailable: %r", exc)
        yield from families.values()
        yield from quota.values()

    def _jobs(self, families) -> None:
        cap = labels()
        by_gauge: dict[tuple[str, str, str], int] = defaultdict(int)
        for tenant_id, kind, state, count in job_counts(get_db()):
            for name, (_, states) in STATE_GAUGES.items():
                if state in states:
                    by_gauge[(name, cap.label(tenant_id), kind)] += count
        for (name, tenant, kind), count in sorted(by_gauge.items()):
            families[name].add_metric([tenant, kind], count)

    def _quotas(self, families) -> None:
        settings, db, cap = get_settings(), get_db(), labels()
        with db.system() as connection:
            used = current_usage(connection, utcnow().date())
        totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for tenant_id, plan_name in tenant_plans(db).items():
            plan = plan_for(settings, plan_name)
            for field, (metric, period) in QUOTA_FIELDS.items():
                limit = getattr(plan, field)
                if limit is not None:
                    entry = totals[(cap.label(tenant_id), field)]
                    entry[0] += used.get((tenant_id, metric, period), 0)
                    entry[1] += limit
        for (tenant, field), (amount, limit) in sorted(totals.items()):
            families["fairq_quota_used"].add_metric([tenant, field], amount)
            families["fairq_quota_limit"].add_metric([tenant, field], limit)
