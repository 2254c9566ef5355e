"""Prometheus metrics: per-tenant counters and histograms, gauges from the database, and their endpoints.

``instruments`` holds what processes count as it happens (a few increments
per job), ``collector`` what is read from the database at scrape time,
``share`` each tenant's worker time against its entitlement (published by
the leading dispatcher), ``labels`` the cap on the ``tenant`` label and
``exposition`` the endpoints.
"""
from app.metrics.instruments import (
    clear_shares,
    job_deferred,
    job_enqueued,
    job_finished,
    job_started,
    publish_shares,
    quota_rejected,
)
from app.metrics.labels import OTHER

__all__ = [
    "OTHER",
    "clear_shares",
    "exported_names",
    "job_deferred",
    "job_enqueued",
    "job_finished",
    "job_started",
    "publish_shares",
    "quota_rejected",
]


def exported_names() -> set[str]:
    """Every sample name fairq's endpoints can export: what a dashboard may query."""
    from app.metrics.collector import QUOTA_GAUGES, STATE_GAUGES
    from app.metrics.instruments import instruments

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names = set(STATE_GAUGES) | set(QUOTA_GAUGES)
    for family in instruments().registry.collect():
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return names
