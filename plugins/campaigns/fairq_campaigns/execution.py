"""Campaign execution: a run fans out one delivery job per recipient; a delivery sends one message.

Both are job kinds behind fairq's gate and fair scheduler, so a tenant's large campaign
shares the workers with everyone else's work and its plan rate-limits its deliveries.
"""
from __future__ import annotations

import logging

from app.hooks import DeliveryError, JobCancelled, JobContext, JobFailed, campaigns, channels, get_plugin_manager

__all__ = ["run_campaign", "deliver"]

logger = logging.getLogger(__name__)

_channels: dict = {}


def _channel(name: str):
    """The installed channel called ``name`` (plugin managers are built once per process)."""
    if name not in _channels:
        _channels.update(channels(get_plugin_manager()))
    found = _channels.get(name)
    if found is None or found.deliver is None:
        raise JobFailed(f"channel {name!r} is not installed")
    return found


def run_campaign(job: JobContext) -> dict:
    """Fan a campaign run out: one ``campaign.deliver`` job per recipient, a chunk per
    transaction, checking for cancellation between chunks. Resumes where it stopped."""
    run = campaigns.start_run(job)
    if run is None:
        return {"recipients": 0, "skipped": True}
    queued = run.cursor
    try:
        for start, rows in campaigns.chunks(run):
            job.checkpoint()
            if not campaigns.fan_out(run, start, rows):
                raise JobCancelled()
            queued = start + len(rows)
            job.progress(queued, None, f"{queued} recipients queued")
        campaigns.end_fan_out(run)
    except JobCancelled:
        raise
    except Exception as exc:
        if isinstance(exc, JobFailed) or not job.retries_left:
            campaigns.fail_run(job, str(exc) if isinstance(exc, JobFailed) else repr(exc))
        raise
    job.progress(queued, queued, f"{queued} recipients queued")
    return {"recipients": queued}


def deliver(job: JobContext) -> dict:
    """Send one message through its campaign's channel and log the outcome.

    A retryable failure (a timeout, a 5xx) is logged ``retry`` and tried again after a
    backoff; the last one, or any other failure, is logged ``failed`` and the job goes
    to the dead-letter queue (replayable).
    """
    found = campaigns.delivery(job)
    if found is None:
        raise JobCancelled()  # the campaign was cancelled: this message never goes out
    sent, channel_name = found
    channel = _channel(channel_name)
    try:
        detail = channel.deliver(sent) or {}
    except DeliveryError as exc:
        if exc.retryable and job.retries_left:
            campaigns.record(job, sent, "retry", error=str(exc))
            raise
        campaigns.record(job, sent, "failed", error=str(exc))
        raise JobFailed(f"delivery {sent.delivery_id} failed: {exc}") from None
    written = campaigns.record(job, sent, "success", detail={"channel": channel_name, **detail})
    return {"messages": 1 if written else 0}  # a success logged before (a redelivery) is metered once
