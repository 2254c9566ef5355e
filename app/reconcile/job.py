"""The ``reconcile`` job kind: one run of one tenant's ledger against its bank / switch files."""
from __future__ import annotations

from app.reconcile.engine import PHASES
from app.reconcile.service import RECONCILE_KIND, ReconcileFailed, run_reconciliation
from app.scheduling.kinds import JobContext, job_kind
from app.settings import get_settings

__all__ = ["reconcile"]


@job_kind(RECONCILE_KIND, max_retries=3, time_limit=400, cost_estimate=10.0)
def reconcile(job: JobContext) -> dict:
    """Run ``payload["run_id"]`` (made by ``enqueue_reconcile``, which holds the source, period and tolerances).

    Reports progress by phase (done of ``len(PHASES)``) and checks for cancellation between
    phases (the run's transaction is then rolled back: nothing is written).
    Result: the run's summary, with ``run_id``.

    Raises:
      ReconcileFailed: the run or its source is gone (dead at once, no retry).
    """

    def between_phases(number: int, name: str) -> None:
        job.progress(number, len(PHASES), f"{name} ({number + 1} of {len(PHASES)})")
        job.checkpoint()

    run_id = job.payload.get("run_id")
    if not isinstance(run_id, int):
        raise ReconcileFailed("the job names no reconciliation run")
    summary = run_reconciliation(get_settings(), tenant_id=job.tenant_id, run_id=run_id, on_phase=between_phases)
    job.progress(len(PHASES), len(PHASES), f"{summary['total_breaks']} breaks, {summary['matched']['count']} matched")
    return {"run_id": run_id, **summary}
