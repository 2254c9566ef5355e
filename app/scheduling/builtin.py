"""Job kinds that ship with fairq itself."""
from __future__ import annotations

import time

from app.scheduling.kinds import JobContext, job_kind

__all__ = ["noop"]


@job_kind("noop", api=True, max_retries=3, time_limit=60, cost_estimate=0.002)
def noop(job: JobContext) -> dict:
    """Sleeps ``sleep_ms`` (default 0) and succeeds; fails the first ``fail_attempts`` attempts.

    For trying fairq out, the fairness benchmark and tests. Payload:
    ``{"sleep_ms": 2, "fail_attempts": 0}``.
    """
    sleep_ms = float(job.payload.get("sleep_ms", 0) or 0)
    if not 0 <= sleep_ms <= 60_000:
        raise ValueError("sleep_ms must be between 0 and 60000")
    if job.attempt <= int(job.payload.get("fail_attempts", 0) or 0):
        raise RuntimeError(f"failing attempt {job.attempt} on purpose")
    deadline = time.monotonic() + sleep_ms / 1000
    while time.monotonic() < deadline:
        job.checkpoint()
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    return {"slept_ms": sleep_ms}
