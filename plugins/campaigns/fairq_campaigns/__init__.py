"""fairq plugin for campaign execution and its delivery channels.

Job kinds ``campaign.run`` (fan-out) and ``campaign.deliver`` (one message), and the
channels ``log`` and ``webhook``; everything else comes from ``app.hooks``.
"""
from app.hooks import Channel, JobKindSpec, hookimpl

from fairq_campaigns import channels, execution

__all__ = ["fairq_register_channels", "fairq_register_job_kinds"]


@hookimpl
def fairq_register_channels() -> list[Channel]:
    return [
        Channel(name="log", description="record each delivery in the processing log", deliver=channels.log),
        Channel(name="webhook", description="HTTP POST of signed JSON to the tenant's webhook URL",
                deliver=channels.webhook, needs_webhook=True),
    ]


@hookimpl
def fairq_register_job_kinds() -> list[JobKindSpec]:
    return [
        JobKindSpec(name="campaign.run", run=execution.run_campaign, max_retries=3, time_limit=400,
                    cost_estimate=1.0),
        JobKindSpec(name="campaign.deliver", run=execution.deliver, max_retries=4, time_limit=120,
                    cost_estimate=0.005),
    ]
