"""How long a message can stay unacknowledged, kept below the broker's consumer ack timeout.

Dramatiq acknowledges a message after processing it, and RabbitMQ closes the
channel of a consumer that holds a message unacknowledged longer than its
``consumer_timeout`` (30 minutes by default), then delivers the message again,
and every other message of that channel with it. A message is unacknowledged
from the moment it reaches a worker process: it waits in that process's buffer
until a thread is free, then runs. Dramatiq prefetches ``P`` messages for each
queue a worker process consumes (``dramatiq_queue_prefetch``; by default twice
its ``T`` threads), into one buffer shared by its threads. With ``Q`` queues, up
to ``Q·P − 1`` messages can be ahead of one, ``T`` of them running, so it starts
within ``⌊(Q·P − 1) / T⌋`` times the longest time limit ``L`` of any actor, and
is acknowledged at most ``(1 + ⌊(Q·P − 1) / T⌋) · L`` after it arrived.

That must stay below the ack timeout (``FAIRQ_BROKER_ACK_TIMEOUT_SECONDS``, which
says what the server's ``consumer_timeout`` is) less :data:`MARGIN` of it. With
Dramatiq's defaults and fairq's two queues (``fairq.jobs``,
``fairq.housekeeping``) that is ``4 · L ≤ 1,620 s``: no actor may run longer
than 405 s. A worker that could break the rule refuses to start
(:class:`AckDeadline`); a job kind whose own limit breaks it is refused when it
is declared (:func:`check_time_limit`).
"""
from __future__ import annotations

import logging

from dramatiq import Middleware
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import q_name
from dramatiq.middleware import MiddlewareError, TimeLimit

__all__ = ["AckDeadline", "AckDeadlineError", "MARGIN", "budget", "check_time_limit", "longest_time_limit",
           "longest_wait", "rounds"]

logger = logging.getLogger(__name__)

#: Share of the ack timeout kept in hand: the claim before a job, its outcome and ack after it.
MARGIN = 0.1


class AckDeadlineError(MiddlewareError):
    """A message could stay unacknowledged past the broker's ack timeout (raised at worker boot)."""


def budget(ack_timeout: float) -> float:
    """Seconds a message may stay unacknowledged: the ack timeout less :data:`MARGIN`."""
    return ack_timeout * (1 - MARGIN)


def rounds(*, threads: int, prefetch: int, queues: int) -> int:
    """How many times the longest time limit a message can wait in a worker process's buffer.

    Parameters:
      threads: the process's worker threads.
      prefetch: messages it prefetches per queue.
      queues: queues it consumes (delay queues aside: their messages wait there unprocessed).
    """
    return max(0, queues * prefetch - 1) // max(1, threads)


def longest_wait(*, longest: float, threads: int, prefetch: int, queues: int) -> float:
    """The longest a message can stay unacknowledged in a worker process (see the module docstring):
    its own run plus the :func:`rounds` it can wait behind, all of ``longest`` seconds, the longest
    time limit of any actor the process runs."""
    return (1 + rounds(threads=threads, prefetch=prefetch, queues=queues)) * longest


def check_time_limit(name: str, time_limit: float, ack_timeout: float) -> None:
    """Refuse a job kind whose own time limit leaves no room below the ack timeout.

    Raises:
      ValueError: ``time_limit`` is over :func:`budget` (the worker's own check at boot adds the
        wait in its buffer).
    """
    if time_limit > budget(ack_timeout):
        raise ValueError(
            f"job kind {name!r}: time_limit {time_limit:g} s is over {budget(ack_timeout):g} s, the broker's "
            f"{ack_timeout:g} s consumer ack timeout less {MARGIN:.0%} (FAIRQ_BROKER_ACK_TIMEOUT_SECONDS)")


class AckDeadline(Middleware):
    """Refuses to start a RabbitMQ worker whose messages could outlast the ack timeout."""

    def before_worker_boot(self, broker, worker) -> None:
        """Called before a worker starts.

        Raises:
          AckDeadlineError: a message could stay unacknowledged past the budget (a ``MiddlewareError``:
            Dramatiq lets only those stop the boot).
        """
        if not isinstance(broker, RabbitmqBroker):
            return  # the in-process broker has no ack timeout
        from app.settings import get_settings

        ack_timeout = get_settings().broker_ack_timeout_seconds
        longest, actor = longest_time_limit(broker)
        whitelist = worker.consumer_whitelist
        queues = len(whitelist) if whitelist else len({q_name(q) for q in broker.get_declared_queues()})
        wait = longest_wait(longest=longest, threads=worker.worker_threads, prefetch=worker.queue_prefetch,
                            queues=queues)
        if wait > budget(ack_timeout):
            wait_rounds = rounds(threads=worker.worker_threads, prefetch=worker.queue_prefetch, queues=queues)
            message = (
                f"a message could stay unacknowledged {wait:g} s, over {budget(ack_timeout):g} s (the "
                f"{ack_timeout:g} s consumer ack timeout, FAIRQ_BROKER_ACK_TIMEOUT_SECONDS, less {MARGIN:.0%}): "
                f"{worker.worker_threads} threads prefetching {worker.queue_prefetch} messages on each of "
                f"{queues} queues can hold one behind {wait_rounds} rounds of the longest time limit, "
                f"{longest:g} s ({actor}). Lower that limit, lower dramatiq_queue_prefetch, or raise RabbitMQ's "
                f"consumer_timeout and FAIRQ_BROKER_ACK_TIMEOUT_SECONDS together.")
            logger.critical(message)
            raise AckDeadlineError(message)


def longest_time_limit(broker) -> tuple[float, str]:
    """The longest time limit (seconds) of any actor on ``broker``, and that actor's name: any of them
    can be ahead of a message (a job kind's message may be on any tenant's dedicated queue)."""
    default = next((m.time_limit for m in broker.middleware if isinstance(m, TimeLimit)), 600_000)
    limits = {name: actor.options.get("time_limit", default) / 1000 for name, actor in broker.actors.items()}
    name = max(limits, key=limits.get, default="-")
    return limits.get(name, default / 1000), name
