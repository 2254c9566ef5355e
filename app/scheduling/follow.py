"""Following a job from the CLI: a progress bar until it ends, then its result or a clear failure."""
from __future__ import annotations

import time
from collections.abc import Callable

import click

from app.scheduling.models import FINAL_STATES

__all__ = ["follow_job", "POLL"]

#: Seconds between two looks at the job while waiting.
POLL = 0.5


def follow_job(
    tenant_id: str,
    job_id: int,
    *,
    label: Callable[[str, int, int | None], str],
    length: int | None = None,
) -> dict:
    """Show a progress bar for a tenant's job until it ends (workers must be running).

    Parameters:
      label: ``label(state, done, total)``: the bar's text at each look.
      length: the bar's length (e.g. a file's bytes); default: the job's own progress total.

    Returns:
      The job's result.

    Raises:
      click.ClickException: the job ended dead or cancelled (exit 1, with its error).
    """
    from app.scheduling.jobs import get_job
    from app.tenancy.scoping import tenant_session

    with click.progressbar(length=length or 1, label="queued", show_pos=False) as bar:
        while True:
            with tenant_session(tenant_id) as session:
                job = get_job(session, job_id)
                state, done, total = job.state, job.progress_done or 0, job.progress_total
                result, error = job.result, job.last_error
            bar.label = label(state, done, total)
            if length is None and total:
                bar.length = total
                bar.update(min(done, total) - bar.pos)
            bar.render_progress()
            if state in FINAL_STATES:
                break
            time.sleep(POLL)
    if state != "succeeded":
        raise click.ClickException(f"job {job_id} {state}: {error}")
    return result or {}
