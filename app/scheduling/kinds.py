"""Job kinds: what a job does, declared once with :func:`job_kind`.

A job kind is a Dramatiq actor that takes a job id (never an object). The gate
middleware admits each message, marks the job running and hands the actor a
:class:`JobContext`; the actor may report progress, check for cancellation at
checkpoints and return a small result. Retries go back through the fair
scheduler, never straight to the broker: the actor swallows a failure that has
retries left (the gate records it and the dispatcher re-dispatches after a
backoff) and raises only the last one, which Dramatiq then dead-letters. An
attempt stopped at its time limit is such a failure too (:class:`JobTimedOut`),
as it is for Dramatiq's own retries.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq.middleware.time_limit import TimeLimitExceeded

__all__ = [
    "JobKind",
    "JobContext",
    "JobCancelled",
    "JobFailed",
    "JobTimedOut",
    "job_kind",
    "declare_plugin_kinds",
    "kinds",
    "kind_for_actor",
    "current_job",
    "JOBS_QUEUE",
]

logger = logging.getLogger(__name__)

#: The broker queue of every job kind (tenants on a dedicated plan get ``fairq.t.<tenant>``).
JOBS_QUEUE = "fairq.jobs"
#: Least seconds between two progress writes of one job.
PROGRESS_INTERVAL = 0.5


class JobFailed(Exception):
    """Raised by a job that cannot succeed by trying again (a missing file, a file with no
    header): the job is ``dead`` at once, with this message as its error, and no retry is spent."""


class JobTimedOut(Exception):
    """An attempt ran past its kind's time limit and was stopped there. Dramatiq stops it by raising
    ``TimeLimitExceeded`` in its thread, a ``BaseException`` that a job's own ``except Exception``
    does not catch; the actor turns it into this failure, retried with backoff as any other."""

    def __init__(self, time_limit: float) -> None:
        super().__init__(f"ran past its time limit of {time_limit:g} s and was stopped (TimeLimitExceeded)")
        self.time_limit = time_limit


class JobCancelled(Exception):
    """Raised by :meth:`JobContext.checkpoint` when the job was cancelled: the job stops there."""


@dataclass(frozen=True)
class JobKind:
    """A declared job kind and its policy."""

    name: str
    actor: dramatiq.Actor
    max_retries: int
    time_limit: float
    cost_estimate: float
    api: bool


@dataclass
class JobContext:
    """What a running job knows about itself, and how it reports back."""

    job_id: int
    tenant_id: str
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_retries: int
    #: set by the store: writes progress, reads cancellation
    reporter: Any = None
    failure: BaseException | None = None
    cancelled: bool = False
    result: dict[str, Any] | None = None
    started: float = field(default_factory=time.monotonic)
    _last_progress: float = 0.0
    _last_check: float = field(default_factory=time.monotonic)

    @property
    def retries_left(self) -> bool:
        return self.attempt <= self.max_retries

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        """Report progress; written at most every half second (and always at the end)."""
        now = time.monotonic()
        if self.reporter is not None and (now - self._last_progress >= PROGRESS_INTERVAL or done == total):
            self._last_progress = now
            self.reporter.progress(self.job_id, done, total, message)

    def checkpoint(self) -> None:
        """Stop here if the job was cancelled (asked at most every half second).

        Raises:
          JobCancelled: the job was cancelled while it ran.
        """
        now = time.monotonic()
        if self.reporter is None or now - self._last_check < PROGRESS_INTERVAL:
            return
        self._last_check = now
        if self.reporter.cancel_requested(self.job_id):
            raise JobCancelled()


_local = threading.local()
_kinds: dict[str, JobKind] = {}
_by_actor: dict[str, JobKind] = {}


def current_job() -> JobContext | None:
    """The job the current worker thread runs (set by the gate)."""
    return getattr(_local, "job", None)


def set_current_job(job: JobContext | None) -> None:
    _local.job = job


def kinds() -> dict[str, JobKind]:
    """Every declared job kind by name."""
    return dict(_kinds)


def kind_for_actor(actor_name: str) -> JobKind | None:
    """The job kind a Dramatiq actor runs, or ``None`` for other actors."""
    return _by_actor.get(actor_name)


def job_kind(
    name: str,
    *,
    max_retries: int = 3,
    time_limit: float = 300.0,
    cost_estimate: float = 0.05,
    api: bool = False,
) -> Callable[[Callable[[JobContext], dict | None]], JobKind]:
    """Declare a job kind.

    Parameters:
      name: the kind's name, e.g. ``ingest``.
      max_retries: retries after the first attempt before the job is dead.
      time_limit: seconds an attempt may run. Dramatiq acknowledges a message after
        running it, so this and the wait in a worker's buffer must stay below
        RabbitMQ's consumer ack timeout (see :mod:`app.scheduling.acks`: 405 s
        at most with the defaults).
      cost_estimate: expected run time in seconds, charged at dispatch until
        the kind's measured run time replaces it.
      api: whether tenants may enqueue it directly with ``POST /jobs``.

    Returns:
      A decorator for ``fn(job: JobContext) -> dict | None``.

    Raises:
      ValueError: the name is taken, or the time limit alone is over the ack timeout's budget.
    """
    from app.scheduling.acks import check_time_limit
    from app.settings import get_settings

    if name in _kinds:
        raise ValueError(f"job kind {name!r} is declared twice")
    check_time_limit(name, time_limit, get_settings().broker_ack_timeout_seconds)

    def decorate(fn: Callable[[JobContext], dict | None]) -> JobKind:
        import app.broker  # noqa: F401  (the broker is set before the actor is declared)

        def run(job_id: int) -> None:
            job = current_job()
            if job is None or job.job_id != job_id:
                logger.error("job %s reached its actor without the gate; not run", job_id)
                return
            try:
                job.result = fn(job)
            except JobCancelled:
                job.cancelled = True
            except JobFailed:
                raise  # no retry can help: Dramatiq fails the message, the gate records it dead
            except (Exception, TimeLimitExceeded) as exc:
                failure = exc
                if isinstance(exc, TimeLimitExceeded):
                    failure = JobTimedOut(time_limit)
                    failure.__cause__ = exc
                if not job.retries_left:
                    raise failure  # Dramatiq fails the message: it goes to the dead-letter queue
                logger.warning("job %s attempt %d failed: %r; will retry", job_id, job.attempt, failure)
                job.failure = failure

        run.__name__ = run.__qualname__ = fn.__name__
        run.__doc__ = fn.__doc__
        actor = dramatiq.actor(
            run,
            actor_name=f"fairq_job_{name.replace('.', '_')}",
            queue_name=JOBS_QUEUE,
            max_retries=0,
            time_limit=int(time_limit * 1000),
        )
        declared = JobKind(name, actor, max_retries, time_limit, cost_estimate, api)
        _kinds[name] = declared
        _by_actor[actor.actor_name] = declared
        return declared

    return decorate


def declare_plugin_kinds(manager=None) -> list[str]:
    """Declare the job kinds installed plugins run (hook ``fairq_register_job_kinds``).

    Called once by ``app.tasks``; a kind already declared is left as it is.

    Returns:
      The names declared now.
    """
    from app import hooks

    declared = []
    for spec in hooks.job_kinds(manager or hooks.get_plugin_manager()).values():
        if spec.name in _kinds:
            continue
        job_kind(spec.name, max_retries=spec.max_retries, time_limit=spec.time_limit,
                 cost_estimate=spec.cost_estimate)(spec.run)
        declared.append(spec.name)
    return declared
