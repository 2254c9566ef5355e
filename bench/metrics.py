"""Per-job cost of fairq's instrumentation: the metric calls and the log lines of one job.

Prints figures, never passes or fails. ``python bench/metrics.py [--multiprocess]``: with
``--multiprocess`` the metrics go to files, as in a ``dramatiq app.tasks`` worker process.
"""
from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def per_call(fn, n: int) -> float:
    """Microseconds per call of ``fn``, best of three runs of ``n`` calls."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--multiprocess", action="store_true", help="metrics in files (a worker process)")
    parser.add_argument("-n", type=int, default=20_000, help="calls per measurement")
    args = parser.parse_args()

    from app.metrics import instruments
    from app.metrics.labels import TenantLabels

    if args.multiprocess:
        instruments.enable_multiprocess(Path(tempfile.mkdtemp(prefix="fairq-bench-metrics-")))
    instruments.labels.value = TenantLabels(50)  # no ranking thread: the label cap's lookup only
    tenants = [f"t{i}" for i in range(100)]  # half of them beyond the cap

    def metrics(i: int) -> None:  # what the gate does for one job that ran once
        tenant = tenants[i % 100]
        instruments.job_started(tenant, "noop", 0.012)
        instruments.job_finished(tenant, "noop", "succeeded", 0.002)

    from app.logs import bind, configure_logging

    configure_logging("INFO", stream=io.StringIO())
    logger = logging.getLogger("app.scheduling.gate")

    def log_lines(i: int) -> None:  # dispatched, running, succeeded
        bind(job_id=i, tenant_id="t1")
        for state in ("dispatched", "running", "succeeded"):
            logger.info("job %s %s", i, state, extra={"job_id": i, "tenant_id": "t1", "state": state})
        bind(job_id=None, tenant_id=None)

    mode = "files (worker process)" if args.multiprocess else "memory (fairq up, API)"
    print(f"metrics in {mode}: {per_call(metrics, args.n):6.1f} us per job (2 histograms, 1 counter)")
    print(f"JSON log lines:   {per_call(log_lines, args.n // 4):6.1f} us per job (3 lines, redacted)")


if __name__ == "__main__":
    main()
