"""The gate: a Dramatiq middleware that admits each job message and records its outcome.

Before a job's actor runs, the gate claims the job: marks it ``running`` in the
database — only if it is still waiting, not cancelled, and its tenant is not paused —
and re-checks the tenant's concurrency cap for that kind (the dispatcher
checked both; they can change while a message waits). A job it turns away is
either finished already (a duplicate delivery: skipped) or deferred: put back
in the queue for later, with no attempt or retry used. After the actor, the
gate records the outcome, the run time and the usage, in one transaction
shared with other threads' outcomes; on PostgreSQL the worker thread does not
wait for it (a stopping worker does, see :meth:`Gate.after_worker_shutdown`),
and the outcomes gather for :data:`OUTCOME_LINGER` before they are written.

On RabbitMQ the claim is asked for as the message arrives in the worker process
(:class:`ClaimingConsumer`, in the consumer thread), not when a worker thread
takes it: a worker process holds up to twice its threads' messages, so the
answer is usually there before a thread is free, and the thread does not wait
for a round trip to the database between two jobs. A claimed job thus counts as
``running`` while its message waits in that buffer; the outcome records when the
actor really began. Messages the worker hands back to the broker unprocessed
(it is stopping) are unclaimed: ``dispatched`` again, no attempt used.

Only :class:`~dramatiq.middleware.SkipMessage` stops a message from a
``before_`` hook; any other exception would be logged and swallowed by
Dramatiq and the job would run unchecked. So every failure in the gate itself
(the database being down, say) becomes a skip: the job stays ``dispatched``
and the dispatcher's lease check re-dispatches it later. Nothing is lost.
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from datetime import timedelta

from dramatiq import Middleware
from dramatiq.middleware import SkipMessage

from app import logs, metrics
from app.db import get_db, utcnow
from app.quota.plans import limits_for, plan_for
from app.scheduling.jobs import DEDICATED_PREFIX
from app.scheduling.kinds import JobContext, JobFailed, JobTimedOut, current_job, kind_for_actor, set_current_job
from app.scheduling.batcher import GroupCommit
from app.scheduling.hotpath import Dedicated
from app.scheduling.store import Outcome, Started, Store
from app.settings import get_settings

__all__ = ["ClaimingConsumer", "Gate", "backoff"]

logger = logging.getLogger(__name__)

#: Seconds a job waits when its tenant is paused or at its concurrency cap.
DEFER_SECONDS = 1.0
#: Seconds the gate trusts its copy of the tenants' plans.
PLAN_TTL = 5.0
#: Seconds a stopping worker waits for its queued outcomes to be written.
OUTCOME_DRAIN = 30.0
#: Seconds the outcomes gather before they are written (PostgreSQL only: no thread waits for them
#: there). Written one by one, as they came at ~2,000 jobs/s, each outcome was a statement, a
#: wake-up of the writer and a notification to the dispatcher; 2 ms makes it one for every few
#: jobs (scenario 5, one run each: the outcome writer 43 -> 27 µs of CPU a job, PostgreSQL
#: 157 -> 129). Its news reaches the dispatcher that much later, which charges the run time
#: then (session 6 gathered for 20 ms and scenario 6's 1,000 tenants lost a fifth; with 2 ms
#: they did not: 1,906-1,997 jobs/s against 1,796-1,806 without).
OUTCOME_LINGER = 0.002


def backoff(attempt: int, *, base: float, maximum: float, rng: random.Random | None = None) -> float:
    """Seconds before retry number ``attempt``: exponential, capped, with jitter (0.5x to 1.5x)."""
    delay = min(maximum, base * 2 ** max(0, attempt - 1))
    return delay * (rng or random).uniform(0.5, 1.5)


def _described(failure: BaseException) -> str:
    """A failed attempt's ``last_error``: the message of a job that gave up (:class:`JobFailed`)
    or was stopped at its time limit (:class:`JobTimedOut`), else the exception's ``repr``."""
    return str(failure) if isinstance(failure, (JobFailed, JobTimedOut)) else repr(failure)


#: Where a message carries its early claim (a :class:`~app.scheduling.batcher.Ticket`).
_CLAIM = "_fairq_claim"


class ClaimingConsumer:
    """A broker consumer whose job messages are claimed as they arrive (see the module docstring).

    Everything else is the wrapped consumer's own: Dramatiq's consumer thread iterates over it,
    acks, nacks and requeues through it.
    """

    def __init__(self, consumer, gate: "Gate") -> None:
        self._consumer = consumer
        self._gate = gate

    def __iter__(self):
        return self

    def __next__(self):
        message = next(self._consumer)
        if message is not None:
            self._gate.claim_early(message)
        return message

    def requeue(self, messages) -> None:
        messages = list(messages)
        self._gate.unclaim(messages)
        self._consumer.requeue(messages)

    def __getattr__(self, name: str):
        return getattr(self._consumer, name)


class Gate(Middleware):
    """Admits job messages and records their outcomes (see the module docstring)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._plans: dict[str, str] = {}
        self._plans_at = 0.0
        self._lock = threading.Lock()
        self._commits: tuple[int, GroupCommit, GroupCommit] | None = None

    @property
    def store(self) -> Store:
        return Store(get_db())

    def _claims(self) -> GroupCommit:
        return self._group_commits()[0]

    @staticmethod
    def _claim_request(message) -> tuple[int, bool]:
        return int(message.args[0]), bool(getattr(message, "redelivered", False))

    def claim_early(self, message) -> None:
        """Called by the consumer thread as a message arrives: asks for its claim now, so the worker
        thread that takes the message finds the answer waiting (PostgreSQL; see the module docstring)."""
        if (kind_for_actor(message.actor_name) is None or "eta" in message.options
                or get_db().dialect != "postgresql"):
            return
        try:
            message.__dict__[_CLAIM] = self._claims().request(self._claim_request(message))
        except Exception:  # the worker thread asks again itself
            logger.exception("could not ask early for the claim of job %s", message.args[0])

    def unclaim(self, messages) -> None:
        """Called as a stopping worker hands messages back unprocessed: their jobs were claimed for
        nothing, so they go back to ``dispatched`` without using an attempt."""
        claims = []
        for message in messages:
            claim = message.__dict__.pop(_CLAIM, None)
            try:
                started = claim.wait(OUTCOME_DRAIN) if claim is not None else None
            except Exception:
                continue  # never claimed
            if started is not None:
                claims.append(started)
        if claims:
            try:
                given_back = self.store.unclaim_many(claims)
            except Exception:
                logger.exception("could not give back %d claimed jobs; they run again after their lease", len(claims))
                return
            logger.info("gave back %d claimed jobs the stopping worker did not run", given_back)

    def _group_commits(self) -> tuple[GroupCommit, GroupCommit]:
        """This process's group commits for starts and outcomes (made after any fork)."""
        with self._lock:
            if self._commits is None or self._commits[0] != os.getpid():
                # each flusher thread writes on a connection of its own (PostgreSQL; see hotpath)
                starts, finishes = Dedicated(get_db(), name="fairq-gate-start"), Dedicated(get_db(), name="fairq-gate-finish")
                # outcomes gather only where they are posted; the embedded default's worker waits for its own
                linger = OUTCOME_LINGER if get_db().dialect == "postgresql" else 0.0
                self._commits = (
                    os.getpid(),
                    GroupCommit(lambda requests: self.store.start_many(requests, on=starts), name="fairq-gate-start"),
                    GroupCommit(lambda outcomes: self.store.finish_many(outcomes, on=finishes), name="fairq-gate-finish",
                                linger=linger),
                )
            return self._commits[1], self._commits[2]

    def before_worker_boot(self, broker, worker) -> None:
        """Called before a worker starts: declares the dedicated queues it was told to consume (``-Q``)."""
        for queue in sorted(worker.consumer_whitelist or ()):
            if queue.startswith(DEDICATED_PREFIX):
                broker.declare_queue(queue)

    def after_worker_shutdown(self, broker, worker) -> None:
        """Called once a worker has stopped: writes the outcomes still queued."""
        with self._lock:
            commits = self._commits if self._commits is not None and self._commits[0] == os.getpid() else None
        if commits is not None and not commits[2].drain(OUTCOME_DRAIN):
            logger.warning("outcomes still unwritten after %.0f s at shutdown; their jobs re-run after their lease",
                           OUTCOME_DRAIN)

    def before_process_message(self, broker, message) -> None:
        """Called before a message is processed.

        Raises:
          SkipMessage: the job must not run now (finished, cancelled, deferred, or the gate failed).
        """
        kind = kind_for_actor(message.actor_name)
        if kind is None:
            return
        job_id = int(message.args[0])
        try:
            claim = message.__dict__.pop(_CLAIM, None)
            started = claim.wait() if claim is not None else self._claims().submit(self._claim_request(message))
            if started is None:
                self._turn_away(job_id)
                raise SkipMessage()
            cap = limits_for(plan_for(get_settings(), self._plan(started.tenant_id)), started.kind).concurrency
            if cap is not None and self.store.running_count(started.tenant_id, started.kind) > cap:
                self.store.defer(job_id, seconds=DEFER_SECONDS, reason="concurrency cap")
                metrics.job_deferred(started.tenant_id, "concurrency")
                logger.info("job %s deferred: concurrency cap", job_id,
                            extra={"job_id": job_id, "tenant_id": started.tenant_id, "state": "queued"})
                raise SkipMessage()
        except SkipMessage:
            raise
        except Exception:
            logger.exception("gate failed for job %s; left for re-dispatch", job_id)
            raise SkipMessage() from None
        self._local.started = started
        self._local.began_at = utcnow()
        if started.attempt == 1 and started.enqueued_at is not None:
            metrics.job_started(started.tenant_id, started.kind, (utcnow() - started.enqueued_at).total_seconds())
        logs.bind(job_id=job_id, tenant_id=started.tenant_id)  # the job's own log lines carry both
        set_current_job(JobContext(
            job_id=job_id, tenant_id=started.tenant_id, kind=started.kind, payload=started.payload,
            attempt=started.attempt, max_retries=started.max_retries, reporter=self.store,
        ))
        logger.info("job %s running (attempt %d)", job_id, started.attempt,
                    extra={"job_id": job_id, "tenant_id": started.tenant_id, "state": "running"})

    def _turn_away(self, job_id: int) -> None:
        reason = self.store.why_not_started(job_id)
        extra = {"job_id": job_id}
        if reason == "paused":
            tenant_id = self.store.defer(job_id, seconds=DEFER_SECONDS, reason="tenant paused")
            if tenant_id is not None:
                metrics.job_deferred(tenant_id, "paused")
                extra.update(tenant_id=tenant_id, state="queued")
        logger.info("job %s not run: %s", job_id, reason, extra=extra)

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        """Called after a message is processed: records the job's outcome, run time and usage."""
        job = current_job()
        started: Started | None = getattr(self._local, "started", None)
        if job is None or started is None:
            return
        set_current_job(None)
        self._local.started = None
        settings = get_settings()
        run_seconds = time.monotonic() - job.started
        not_before = None
        if exception is not None:
            state, error = "dead", _described(exception)
        elif job.cancelled:
            state, error = "cancelled", "cancelled while running"
        elif job.failure is not None:
            state, error = "failed", _described(job.failure)
            delay = backoff(job.attempt, base=settings.retry_backoff_seconds,
                            maximum=settings.retry_backoff_max_seconds)
            not_before = utcnow() + timedelta(seconds=delay)
        else:
            state, error = "succeeded", None
        outcome = Outcome(started, state, run_seconds, error, job.result, not_before, self._local.began_at)
        try:
            _, finishes = self._group_commits()
            if get_db().dialect == "postgresql":
                # written behind the worker's back (drained at shutdown): the thread takes its next
                # message at once. Should the process die before the write, the job stays
                # ``running`` and the lease check runs it again (at-least-once, as for any crash).
                finishes.post(outcome)
            else:  # the embedded default: a message joined is a job recorded
                finishes.submit(outcome)
        except Exception:
            logger.exception("could not record the outcome of job %s; left for re-dispatch", job.job_id)
            logs.bind(job_id=None, tenant_id=None)
            return
        metrics.job_finished(job.tenant_id, job.kind, state, run_seconds)
        logger.info("job %s %s", job.job_id, state, extra={
            "job_id": job.job_id, "tenant_id": job.tenant_id, "kind": job.kind, "state": state,
            "run_seconds": round(run_seconds, 4),
        })
        logs.bind(job_id=None, tenant_id=None)

    def after_skip_message(self, broker, message) -> None:
        """Called for skipped messages too: a job admitted and then skipped goes back to the queue."""
        job = current_job()
        if job is None or getattr(self._local, "started", None) is None:
            return
        set_current_job(None)
        self._local.started = None
        logs.bind(job_id=None, tenant_id=None)
        self.store.defer(job.job_id, seconds=0, reason="skipped")

    def _plan(self, tenant_id: str) -> str:
        with self._lock:
            if time.monotonic() - self._plans_at > PLAN_TTL or tenant_id not in self._plans:
                self._plans = {t: plan for t, (_w, plan, _p) in self.store.tenants().items()}
                self._plans_at = time.monotonic()
            return self._plans.get(tenant_id, "default")
