"""The ``ingest`` job kind: one file of one tenant into ``fintech_transactions``."""
from __future__ import annotations

from app.ingest.loader import Counts
from app.ingest.service import ingest_file
from app.scheduling.kinds import JobContext, job_kind
from app.settings import get_settings

__all__ = ["ingest"]


def _message(counts: Counts) -> str:
    return (f"{counts.rows_read} rows read, {counts.rows_loaded} loaded, {counts.duplicates} duplicates, "
            f"{counts.conflicts} conflicts, {counts.rejected} rejected")


@job_kind("ingest", max_retries=3, time_limit=400, cost_estimate=5.0)
def ingest(job: JobContext) -> dict:
    """Ingest ``payload["s3_path"]`` (relative to the tenant's folder) with ``payload["source"]``.

    Payload: ``{"s3_path": "uploads/...csv", "source": "UPI", "ledger": "external"}``, and
    ``"force": true`` to read a file this tenant already ingested unchanged.
    Reports progress (rows read, loaded) and checks for cancellation between batches.
    Result: ``{"rows_read", "rows_loaded", "duplicates", "conflicts", "rejected"}``, and
    ``"same_file_as_job"`` when the file was recognised instead of read; the
    scheduler meters ``rows_loaded`` into the tenant's usage.

    Raises:
      IngestFailed: missing object, unreadable file, no valid row (the reason, no traceback).
    """

    def between_batches(counts: Counts) -> None:
        job.progress(counts.rows_read, None, _message(counts))
        job.checkpoint()

    payload = job.payload
    done = ingest_file(
        get_settings(),
        tenant_id=job.tenant_id,
        job_id=job.job_id,
        s3_path=str(payload.get("s3_path", "")),
        source=str(payload.get("source", "")),
        ledger=str(payload.get("ledger", "external")),
        force=bool(payload.get("force", False)),
        on_batch=between_batches,
    )
    message = _message(done.counts)
    if done.same_file_as_job is not None:
        message = f"the file job {done.same_file_as_job} ingested, unchanged: {message}"
    job.progress(done.counts.rows_read, done.counts.rows_read, message)
    return done.as_result()
