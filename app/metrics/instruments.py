"""The metrics fairq's processes count as things happen, per tenant.

Created on first use, not at import: a ``dramatiq app.tasks`` worker process
first switches prometheus_client to its multiprocess mode (which the library
decides when it is imported), exactly as Dramatiq's own Prometheus middleware
does. Each function here is the whole per-event cost: one or two increments
on a child looked up in a plain dict.
"""
from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

from app.metrics.labels import TenantLabels, busiest_tenants
from app.settings import export_to_library, get_settings

__all__ = [
    "instruments", "enable_multiprocess", "multiprocess_dir", "labels",
    "job_enqueued", "job_started", "job_finished", "job_deferred", "quota_rejected",
    "publish_shares", "clear_shares", "OUTCOMES", "LIMITS", "WAIT_BUCKETS", "RUN_BUCKETS",
]

logger = logging.getLogger(__name__)

#: How an attempt ends (``failed``: it will be retried; ``dead``: no retry left).
OUTCOMES = ("succeeded", "failed", "dead", "cancelled")
#: Why a job was put back for later: a rate limit, a concurrency cap, a paused tenant.
LIMITS = ("rate", "concurrency", "paused")
#: Seconds from enqueue to start.
WAIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, float("inf"))
#: Seconds an attempt runs.
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, float("inf"))

_lock = threading.Lock()


class Instruments:
    """The metric objects, in their own registry (see :func:`instruments`)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # no `_created` series: half the samples, nothing a dashboard reads
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.enqueued = Counter("fairq_jobs_enqueued", "Jobs accepted (queued) per tenant and kind.",
                                ["tenant", "kind"], registry=r)
        self.outcomes = Counter("fairq_job_outcomes", "Attempts that ended, per tenant, kind and outcome "
                                "(succeeded, failed: will retry, dead: in the dead-letter queue, cancelled).",
                                ["tenant", "kind", "outcome"], registry=r)
        self.wait = Histogram("fairq_job_wait_seconds", "Seconds from enqueue to the first start of a job.",
                              ["tenant", "kind"], buckets=WAIT_BUCKETS, registry=r)
        self.run = Histogram("fairq_job_run_seconds", "Seconds each attempt ran (worker time).",
                             ["tenant", "kind"], buckets=RUN_BUCKETS, registry=r)
        self.deferrals = Counter("fairq_job_deferrals", "Jobs put back for later by a limit "
                                 "(rate, concurrency, paused), without using an attempt.",
                                 ["tenant", "limit"], registry=r)
        self.quota_rejections = Counter("fairq_quota_rejections", "Requests refused (429) by a hard quota.",
                                        ["tenant", "quota"], registry=r)
        self.worker_share = Gauge("fairq_tenant_worker_share", "Each tenant's fraction of the worker time "
                                  "spent over the share window (FAIRQ_METRICS_SHARE_WINDOW_SECONDS).",
                                  ["tenant"], registry=r, multiprocess_mode="livemax")
        self.entitlement = Gauge("fairq_tenant_entitlement", "Each tenant's entitlement: its weight over the "
                                 "sum of the weights of the tenants active in the share window.",
                                 ["tenant"], registry=r, multiprocess_mode="livemax")
        self.children: dict[tuple, object] = {}
        self.shared: set[str] = set()

    def child(self, metric, *values: str):
        """``metric.labels(*values)``, cached (the hot path skips prometheus_client's lock and checks)."""
        key = (id(metric), *values)
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = metric.labels(*values)
        return found


class _Once:
    """A value made on first use, once per process (``value`` can be replaced, e.g. by a test)."""

    def __init__(self, make, doc: str) -> None:
        self._make = make
        self.value = None
        self.__doc__ = doc

    def __call__(self):
        if self.value is None:
            with _lock:
                if self.value is None:
                    self.value = self._make()
        return self.value


#: ``instruments()``: the process's metrics, created on first use.
instruments = _Once(Instruments, "The process's metrics, created on first use.")
#: ``labels()``: the process's tenant labels (capped at ``FAIRQ_METRICS_MAX_TENANTS``).
labels = _Once(lambda: TenantLabels(get_settings().metrics_max_tenants,
                                    ranking=lambda: busiest_tenants(get_settings().metrics_max_tenants)),
               "The process's tenant labels (capped at FAIRQ_METRICS_MAX_TENANTS).")


def multiprocess_dir() -> Path:
    """Where the processes of one ``dramatiq`` command share their metrics."""
    import tempfile

    settings = get_settings()
    return settings.metrics_dir or Path(tempfile.gettempdir()) / f"fairq-metrics-{settings.metrics_port}"


def enable_multiprocess(directory: Path) -> bool:
    """Keep this process's metrics in files under ``directory`` (prometheus_client's multiprocess
    mode), for an exposition server in another process. Must run before the first metric exists.

    Returns:
      False if it is too late (prometheus_client was already imported in single-process mode).
    """
    if "prometheus_client" in sys.modules:
        from prometheus_client import values

        if getattr(values.ValueClass, "_multiprocess", False):
            return True
        logger.warning("metrics stay in this process: prometheus_client was imported before %s was set",
                       "PROMETHEUS_MULTIPROC_DIR")
        return False
    directory.mkdir(parents=True, exist_ok=True)
    export_to_library("PROMETHEUS_MULTIPROC_DIR", str(directory))
    return True


def _tenant(tenant_id: str) -> str:
    return labels().label(tenant_id)


def job_enqueued(tenant_id: str, kind: str, count: int = 1) -> None:
    """``count`` jobs were accepted."""
    m = instruments()
    m.child(m.enqueued, _tenant(tenant_id), kind).inc(count)


def job_started(tenant_id: str, kind: str, wait_seconds: float) -> None:
    """A job started for the first time, ``wait_seconds`` after it was enqueued."""
    m = instruments()
    m.child(m.wait, _tenant(tenant_id), kind).observe(max(0.0, wait_seconds))


def job_finished(tenant_id: str, kind: str, outcome: str, run_seconds: float) -> None:
    """An attempt ended with ``outcome`` after running ``run_seconds``."""
    m = instruments()
    tenant = _tenant(tenant_id)
    m.child(m.run, tenant, kind).observe(run_seconds)
    m.child(m.outcomes, tenant, kind, outcome).inc()


def job_deferred(tenant_id: str, limit: str, count: int = 1) -> None:
    """``count`` jobs were put back for later because of ``limit`` (one of :data:`LIMITS`)."""
    m = instruments()
    m.child(m.deferrals, _tenant(tenant_id), limit).inc(count)


def quota_rejected(tenant_id: str, quota: str) -> None:
    """A request was refused by the hard quota ``quota`` (``jobs_per_day``, ...)."""
    m = instruments()
    m.child(m.quota_rejections, _tenant(tenant_id), quota).inc()


def publish_shares(shares: dict[str, tuple[float, float]]) -> None:
    """Set each tenant's (worker share, entitlement); tenants beyond the label cap are summed as
    ``_other``, and tenants published before but absent now drop to 0."""
    m = instruments()
    summed: dict[str, list[float]] = {}
    for tenant_id, (share, entitled) in shares.items():
        entry = summed.setdefault(_tenant(tenant_id), [0.0, 0.0])
        entry[0] += share
        entry[1] += entitled
    for tenant in m.shared - summed.keys():
        summed[tenant] = [0.0, 0.0]
    for tenant, (share, entitled) in summed.items():
        m.child(m.worker_share, tenant).set(share)
        m.child(m.entitlement, tenant).set(entitled)
    m.shared = {tenant for tenant, (share, entitled) in summed.items() if share or entitled}


def clear_shares() -> None:
    """This process no longer leads the dispatching: its shares drop to 0."""
    if instruments.value is not None:
        publish_shares({})
