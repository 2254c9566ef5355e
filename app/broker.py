"""The Dramatiq broker, set before any actor is declared.

Every module that declares an actor imports this module first (``app.tasks``
does so at its top), so the import order is never a trap: the broker is
RabbitMQ when ``FAIRQ_BROKER_URL`` is set and Dramatiq's in-process
StubBroker otherwise.
"""
from __future__ import annotations

import logging

import dramatiq
from dramatiq.broker import Broker
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage
from periodiq import PeriodiqMiddleware

from app.settings import Settings, get_settings

__all__ = ["FairqRabbitmqBroker", "HOUSEKEEPING_TIME_LIMIT_MS", "broker", "build_broker"]

logger = logging.getLogger(__name__)

#: A periodic message older than this (seconds) when a worker picks it up is a missed tick.
PERIODIC_SKIP_DELAY = 120
#: Time limit (ms) of the housekeeping actors (purges, roll-ups, campaign ticks: seconds of work). Set, not
#: Dramatiq's 10 minute default: any actor's limit counts in the wait of every message in a worker's
#: buffer, which must stay below RabbitMQ's ack timeout (see :mod:`app.scheduling.acks`).
HOUSEKEEPING_TIME_LIMIT_MS = 300_000


class FairqRabbitmqBroker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker whose consumers let the gate claim each job as its message arrives
    (see :class:`app.scheduling.gate.ClaimingConsumer`)."""

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000):
        from app.scheduling.gate import ClaimingConsumer, Gate

        consumer = super().consume(queue_name, prefetch, timeout)
        gate = next((m for m in self.middleware if isinstance(m, Gate)), None)
        return consumer if gate is None else ClaimingConsumer(consumer, gate)


def build_broker(settings: Settings) -> Broker:
    """A broker for ``settings`` with fairq's middleware installed.

    Publisher confirms are on for RabbitMQ: a message counts as sent only
    once the broker has it.
    """
    if settings.broker_url:
        new: Broker = FairqRabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
    else:
        new = StubBroker(fail_fast_default=False)
    new.add_middleware(CurrentMessage())
    new.add_middleware(PeriodiqMiddleware(skip_delay=PERIODIC_SKIP_DELAY))
    from app.metrics.exposition import WorkerMetrics
    from app.scheduling.affinity import CpuAffinity
    from app.scheduling.dispatcher import DispatcherMiddleware
    from app.scheduling.gate import Gate
    from app.scheduling.periodic import PeriodicOnce

    new.add_middleware(WorkerMetrics())
    new.add_middleware(PeriodicOnce())
    new.add_middleware(Gate())
    new.add_middleware(DispatcherMiddleware())
    new.add_middleware(CpuAffinity(settings.worker_cpu_affinity))
    if settings.broker_url:
        from app.scheduling.acks import AckDeadline

        new.add_middleware(AckDeadline())
    return new


#: The process's broker. Actors bind to it when they are declared.
broker: Broker = build_broker(get_settings())
dramatiq.set_broker(broker)
