"""The job state transitions the dispatcher and the gate make, as single SQL statements.

These run on the system pool (across tenants) and are the hot path: each is
one round trip, and state conditions in the ``WHERE`` clause make every
transition safe to attempt twice (at-least-once delivery, two dispatchers in a
failover, a worker killed mid-job).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.db import Database, is_locked, utcnow
from app.quota.models import UsageDaily
from app.scheduling import hotpath, signals
from app.scheduling.hotpath import Dedicated
from app.scheduling.models import Job
from app.tenancy.models import Tenant

__all__ = ["Store", "Started", "Head", "Finished", "Outcome", "again_on_deadlock"]

logger = logging.getLogger(__name__)

jobs = Job.__table__
tenants = Tenant.__table__
usage = UsageDaily.__table__

#: Milliseconds a progress write waits for SQLite's write lock before it is dropped (see :meth:`Store.progress`).
PROGRESS_LOCK_WAIT_MS = 100
#: States the dispatcher may pick a job from (``failed`` once its backoff has passed).
DISPATCHABLE = ("queued", "failed")


@dataclass(frozen=True)
class Started:
    """A job the gate admitted: what the actor needs."""

    job_id: int
    tenant_id: str
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_retries: int
    enqueued_at: datetime | None = None
    #: when the gate took the job (its ``started_at`` until the outcome records the real start)
    claimed_at: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    """The end of one attempt, as the gate records it."""

    started: Started
    state: str
    run_seconds: float
    error: str | None = None
    result: dict[str, Any] | None = None
    not_before: datetime | None = None
    #: when the actor really began (the job was claimed earlier if its message waited in a buffer)
    began_at: datetime | None = None


@dataclass(frozen=True)
class Head:
    """A queued job as the dispatcher sees it."""

    job_id: int
    tenant_id: str
    kind: str
    priority: int
    enqueued_at: datetime
    cost_estimate: float | None
    queue: str | None


@dataclass(frozen=True)
class Finished:
    """An in-flight job that is no longer in flight, and the worker time it took."""

    job_id: int
    tenant_id: str
    kind: str
    state: str
    run_seconds: float


class Store:
    """Job transitions on one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- the gate ----------------------------------------------------------------------------

    def start_many(self, requests: Sequence[tuple[int, bool]], *, on: Dedicated | None = None) -> list[Started | None]:
        """Mark jobs running if they may run now, in one statement: (job id, redelivered) each.

        Returns, for each job in order, what the actor needs, or ``None`` if the job may not run
        (finished, cancelled, its tenant paused, ...). A redelivered message means the worker that
        ran the job died: then a job recorded as ``running`` may start again. On PostgreSQL the
        statement runs on ``on``, the calling thread's own connection (a one-off one if ``None``).
        """
        ids = [job_id for job_id, _ in requests]
        redelivered = [job_id for job_id, again in requests if again] or [-1]
        now = utcnow()
        if self.db.dialect == "postgresql":
            rows = self._run(hotpath.START, (hotpath.ints(ids), hotpath.ints(redelivered), now), on)
        else:
            with self.db.system() as connection:
                rows = connection.execute(_START_MANY, {"ids": ids, "redelivered": redelivered, "now": now}).all()
                signals.claimed(connection, [row[0] for row in rows])
        started = {row[0]: Started(row[0], row[1], row[2], row[3] or {}, row[4], row[5], row[6], now)
                   for row in rows}
        # a job asked for twice in one batch (two copies of its message) starts once: the first asker's
        return [started.pop(job_id, None) for job_id in ids]

    def unclaim_many(self, claims: Sequence[Started]) -> int:
        """Give back jobs the gate claimed but never ran (their messages went back to the broker
        when the worker stopped): ``dispatched`` again, the attempt not counted. A job claimed
        since by someone else (its claim time differs) is left alone. Returns how many went back."""
        count = 0
        with self.db.system() as connection:
            for claim in claims:
                count += connection.execute(_UNCLAIM, {"job_id": claim.job_id, "claimed_at": claim.claimed_at}).rowcount
        return count

    def finish_many(self, outcomes: Sequence[Outcome], *, on: Dedicated | None = None) -> list[None]:
        """Record the outcomes of attempts and meter their usage, in one transaction (usage summed
        per tenant, kind and day), and tell the dispatcher which jobs left flight."""
        now = utcnow()
        day = now.date()
        if self.db.dialect == "postgresql":
            # one statement, one round trip: the outcomes, the usage and the dispatcher's news
            self._run(hotpath.FINISH, _finish_params(outcomes, now, day), on)
            return [None] * len(outcomes)
        usage_rows: dict[tuple[str, str], dict[str, float]] = {}
        updates = []
        for outcome in outcomes:
            result = outcome.result or {}
            final = outcome.state in _FINAL
            updates.append({
                "job_id": outcome.started.job_id, "state": outcome.state, "finished_at": now if final else None,
                "run_seconds": outcome.run_seconds, "last_error": outcome.error,
                "result": result if outcome.state == "succeeded" else None, "not_before": outcome.not_before,
                "began_at": outcome.began_at,
            })
            amounts = usage_rows.setdefault((outcome.started.tenant_id, outcome.started.kind),
                                            {"run_seconds": 0.0, "rows": 0, "messages": 0, "failures": 0})
            amounts["run_seconds"] += outcome.run_seconds
            amounts["rows"] += int(result.get("rows_loaded", 0) or 0)
            amounts["messages"] += int(result.get("messages", 0) or 0)
            amounts["failures"] += 1 if outcome.state in ("failed", "dead") else 0  # cancelled is no failure
        ended = [(o.started.job_id, o.run_seconds) for o in outcomes]
        with self.db.system() as connection:
            connection.execute(_FINISH, updates)
            connection.execute(_usage_upsert(connection.dialect.name), [
                {"tenant_id": tenant, "kind": kind, "day": day, "jobs": 0, **amounts}
                for (tenant, kind), amounts in usage_rows.items()
            ])
            signals.ended(connection, ended)
        return [None] * len(outcomes)

    def _run(self, statement: hotpath.Prepared, params: Sequence, on: Dedicated | None) -> list[tuple]:
        """One of the hot statements on PostgreSQL, on ``on`` or on a connection opened for it."""
        if on is not None:
            return again_on_deadlock(lambda: on.run(statement, params))
        once = Dedicated(self.db, name=statement.name)
        try:
            return again_on_deadlock(lambda: once.run(statement, params))
        finally:
            once.close()

    def why_not_started(self, job_id: int) -> str:
        """Why :meth:`start_many` refused: ``missing``, ``paused``, ``cancelled``, or the job's state."""
        with self.db.system() as connection:
            row = connection.execute(
                sa.select(jobs.c.state, jobs.c.cancel_requested, tenants.c.paused)
                .join(tenants, tenants.c.id == jobs.c.tenant_id)
                .where(jobs.c.id == job_id)
            ).first()
        if row is None:
            return "missing"
        state, cancel_requested, paused = row
        if state in ("queued", "dispatched", "failed") and paused:
            return "paused"
        if cancel_requested and state not in ("succeeded", "dead", "cancelled"):
            return "cancelled"
        return state

    def running_count(self, tenant_id: str, kind: str) -> int:
        """Jobs of this tenant and kind running now."""
        with self.db.system() as connection:
            return connection.scalar(
                sa.select(sa.func.count()).select_from(jobs)
                .where(jobs.c.tenant_id == tenant_id, jobs.c.kind == kind, jobs.c.state == "running")
            )

    def defer(self, job_id: int, *, seconds: float, reason: str) -> str | None:
        """Put a job back in the queue for later, without using an attempt or a retry.

        Returns:
          The job's tenant, or ``None`` if the job was not waiting or running.
        """
        not_before = utcnow() + timedelta(seconds=seconds)
        with self.db.system() as connection:
            tenant_id = connection.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.state.in_(("queued", "dispatched", "failed", "running")))
                .values(
                    state="queued",
                    not_before=not_before,
                    attempts=sa.case((jobs.c.state == "running", jobs.c.attempts - 1), else_=jobs.c.attempts),
                    progress_message=f"{hotpath.DEFERRED_PREFIX}{reason}",
                )
                .returning(jobs.c.tenant_id)
            ).scalar()
            if tenant_id is not None:
                signals.ended(connection, [(job_id, 0.0)])
        return tenant_id

    def progress(self, job_id: int, done: int, total: int | None, message: str | None) -> None:
        """Write a running job's progress; advisory, so on SQLite it may be dropped.

        A job may report from inside its own open transaction (a reconciliation does, between
        phases): on SQLite that transaction can hold the one write lock this write needs, in the
        same thread, so waiting the whole busy timeout would only fail the job. The write waits
        :data:`PROGRESS_LOCK_WAIT_MS` at most and is dropped if the lock stays taken.
        """
        try:
            with self.db.system(lock_wait_ms=PROGRESS_LOCK_WAIT_MS) as connection:
                connection.execute(
                    jobs.update().where(jobs.c.id == job_id)
                    .values(progress_done=done, progress_total=total, progress_message=message)
                )
        except sa.exc.OperationalError as exc:
            if not is_locked(exc):
                raise
            logger.debug("progress of job %s not written: the database is locked", job_id)

    def cancel_requested(self, job_id: int) -> bool:
        with self.db.system() as connection:
            return bool(connection.scalar(sa.select(jobs.c.cancel_requested).where(jobs.c.id == job_id)))

    # -- the dispatcher ----------------------------------------------------------------------

    def heads(self, tenant_id: str, n: int, *, exclude: Iterable[int] = ()) -> list[Head]:
        """Up to ``n`` dispatchable jobs of each priority of one tenant, oldest first."""
        excluded = list(exclude) or [-1]
        with self.db.system() as connection:
            rows = connection.execute(
                _HEADS, {"tenant_id": tenant_id, "n": n, "now": utcnow(), "exclude": excluded}
            ).all()
        return [Head(*row) for row in rows]

    def backlog(self) -> dict[str, int]:
        """Dispatchable jobs per tenant (the leader's start-up view; safety re-counts)."""
        with self.db.system() as connection:
            rows = connection.execute(
                sa.select(jobs.c.tenant_id, sa.func.count())
                .where(jobs.c.state.in_(DISPATCHABLE))
                .group_by(jobs.c.tenant_id)
            ).all()
        return dict(rows)

    def due_since(self, since: datetime, now: datetime) -> list[str]:
        """Tenants with a waiting job whose ``not_before`` passed in (since, now]."""
        with self.db.system() as connection:
            return list(connection.scalars(
                sa.select(jobs.c.tenant_id).distinct().where(
                    jobs.c.not_before > since, jobs.c.not_before <= now, jobs.c.state.in_(DISPATCHABLE)
                )
            ))

    def in_flight(self) -> list[tuple[int, str, str, str]]:
        """Every job dispatched or running: (id, tenant, kind, state)."""
        with self.db.system() as connection:
            return [tuple(row) for row in connection.execute(
                sa.select(jobs.c.id, jobs.c.tenant_id, jobs.c.kind, jobs.c.state)
                .where(jobs.c.state.in_(("dispatched", "running")))
            )]

    def mark_dispatched(self, job_ids: Sequence[int], *, published_at: Sequence[datetime] | None = None,
                        on: Dedicated | None = None) -> None:
        """After the broker confirmed their messages (published at ``published_at``, one time per
        job; now if not given): the jobs are dispatched, if still waiting and not claimed since."""
        if not job_ids:
            return
        times = list(published_at) if published_at is not None else [utcnow()] * len(job_ids)
        if self.db.dialect == "postgresql":
            self._run(hotpath.MARK_DISPATCHED, (hotpath.ints(job_ids), hotpath.times(times)), on)
            return
        with self.db.system() as connection:
            connection.execute(_MARK_DISPATCHED, [{"job_id": j, "at": at} for j, at in zip(job_ids, times, strict=True)])

    def set_queues(self, queues: Mapping[str | None, Sequence[int]]) -> None:
        """Record the broker queue (None: its kind's) each of these jobs is published to."""
        with self.db.system() as connection:
            for queue, job_ids in queues.items():
                connection.execute(jobs.update().where(jobs.c.id.in_(job_ids)).values(queue=queue))

    def settled(self, job_ids: Sequence[int]) -> tuple[list[Finished], set[int]]:
        """Of these in-flight jobs, in one query: those no longer in flight, and those a worker
        has claimed (running)."""
        if not job_ids:
            return [], set()
        with self.db.system() as connection:
            rows = connection.execute(_SETTLED, {"ids": list(job_ids)}).all()
        finished = [Finished(*row) for row in rows if row[3] != "running"]
        return finished, {row[0] for row in rows if row[3] == "running"}

    def lost(self, *, lease_seconds: float, time_limits: dict[str, float], ack_timeout: float | None,
             orphaned: Collection[str] = ()) -> list[int]:
        """Put back in the queue jobs dispatched or running past their lease (lost message, dead worker).

        A running job's clock starts at its claim, and its worker process may hold its message,
        alive, for a while after that, so a running job is lost only after the longer of two bounds,
        plus the lease (slack for the outcome's write after the run, and for clocks that differ):

        - its own time limit and the longest one of any kind: the in-process broker's worker claims
          a job as a thread takes its message, and runs it within its own limit (the longest one
          is slack for a claim made before a thread was free);
        - ``ack_timeout``, the broker's consumer ack timeout. RabbitMQ's workers claim a job as its
          message arrives (:class:`~app.scheduling.gate.ClaimingConsumer`), and the message may then
          wait in the buffer behind :func:`~app.scheduling.acks.rounds` longest limits before it
          runs; the worker's boot check keeps that wait and the run within 90 % of the ack timeout
          (:func:`~app.scheduling.acks.budget`). That budget is fairq's own promise, kept only while
          every time limit works (none stops a thread blocked in C code); the ack timeout is the
          broker's: until it passes, a live worker may still hold the message, and a job put back
          then could run twice. Once it has passed, RabbitMQ has taken the message back and
          delivers it again, and that redelivery starts the job again (the gate lets a redelivered
          message restart a ``running`` job) whatever this check does. So the ack timeout, not the
          budget, is the bound that is safe, and a longer one would only delay the jobs truly lost.

        A job in a state of ``orphaned`` is lost whatever its lease: the process whose in-process
        broker held its message, and whose worker ran it, is gone (or, for ``dispatched``, may be:
        a copy of the message it still holds is skipped by the gate). Either way a running job keeps
        the attempt its claim counted, as for a worker that died (its next claim counts another; a
        job out of retries then dies as any other).

        Parameters:
          lease_seconds: how long a dispatched job may wait for its claim, and the slack past a
            running job's bound.
          time_limits: each job kind's time limit, in seconds.
          ack_timeout: the broker's consumer ack timeout in seconds, ``None`` if it has none.
          orphaned: states (``dispatched``, ``running``) whose jobs are lost at once (see above).

        Returns:
          The ids of the jobs put back.
        """
        now = utcnow()
        longest = max(time_limits.values(), default=600.0)
        held = ack_timeout or 0.0
        requeued = []
        with self.db.system() as connection:
            rows = connection.execute(
                sa.select(jobs.c.id, jobs.c.kind, jobs.c.state, jobs.c.dispatched_at, jobs.c.started_at)
                .where(jobs.c.state.in_(("dispatched", "running")))
            ).all()
            for job_id, kind, state, dispatched_at, started_at in rows:
                since = started_at if state == "running" else dispatched_at
                limit = max(time_limits.get(kind, 600.0) + longest, held) if state == "running" else 0.0
                expired = since is not None and (now - since).total_seconds() > limit + lease_seconds
                if not (state in orphaned or expired):
                    continue
                why = f"left {state} by an earlier process" if state in orphaned else f"lease expired while {state}"
                done = connection.execute(
                    jobs.update().where(jobs.c.id == job_id, jobs.c.state == state)
                    .values(state="queued", last_error=f"{why}; re-dispatched")
                    .returning(jobs.c.tenant_id)
                ).scalar()
                if done is not None:
                    requeued.append(job_id)
                    signals.announce(connection, done)
                    logger.info("job %s queued again: %s", job_id, why,
                                extra={"job_id": job_id, "tenant_id": done, "state": "queued"})
        if requeued:
            logger.warning("re-dispatching %d jobs %s: %s", len(requeued),
                           "left in flight by earlier processes or past their lease" if orphaned else "whose lease expired",
                           requeued[:20])
        return requeued

    def tenants(self) -> dict[str, tuple[int, str, bool]]:
        """Every tenant's (weight, plan, paused)."""
        with self.db.system() as connection:
            return {row[0]: (row[1], row[2], row[3]) for row in connection.execute(
                sa.select(tenants.c.id, tenants.c.weight, tenants.c.plan, tenants.c.paused)
            )}


#: PostgreSQL's deadlock_detected and serialization_failure: the statement was undone; run it again.
_TRY_AGAIN = frozenset({"40P01", "40001"})
#: Attempts of a statement that keeps losing deadlocks.
DEADLOCK_ATTEMPTS = 3


def again_on_deadlock(action, *, attempts: int = DEADLOCK_ATTEMPTS):
    """Run ``action`` (one statement, or one transaction), again if PostgreSQL undid it to break a
    deadlock. The gate, the dispatcher's marks and the outcomes each update several job rows at
    once, in whatever order their plans visit them, so two of them can deadlock; the loser,
    tried again, goes through (left alone, a job it was starting would wait for its lease).

    Raises:
      any other error, or the last deadlock.
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:
            # SQLAlchemy wraps the driver's error (``orig``); a dedicated connection raises it bare
            code = getattr(getattr(exc, "orig", exc), "pgcode", None)
            if code not in _TRY_AGAIN or attempt == attempts:
                raise
            logger.info("deadlock on job rows (attempt %d); trying again", attempt)


#: The states that end a job (a ``failed`` one waits for its retry).
_FINAL = frozenset({"succeeded", "dead", "cancelled"})


def _finish_params(outcomes: Sequence[Outcome], now: datetime, day) -> tuple:
    """:data:`hotpath.FINISH`'s parameters, the same rows as ``finish_many``'s portable path, in
    one pass, as array literals (the hot path: see :mod:`app.scheduling.hotpath`). Ids, numbers
    and times need no quoting in a literal; strings go through :func:`hotpath.texts`."""
    now_text = now.isoformat()
    ids, states, finished, run_seconds, errors, results, not_before, began = [], [], [], [], [], [], [], []
    usage_rows: dict[tuple[str, str], list] = {}
    for outcome in outcomes:
        started, state, seconds, result = outcome.started, outcome.state, outcome.run_seconds, outcome.result
        ids.append(str(started.job_id))
        states.append(state)
        finished.append(now_text if state in _FINAL else "NULL")
        run_seconds.append(repr(seconds))
        errors.append(outcome.error)
        if state == "succeeded":
            results.append(json.dumps(result) if result else "{}")
        else:
            results.append(None)
        not_before.append("NULL" if outcome.not_before is None else outcome.not_before.isoformat())
        began.append("NULL" if outcome.began_at is None else outcome.began_at.isoformat())
        amounts = usage_rows.get((started.tenant_id, started.kind))
        if amounts is None:
            amounts = usage_rows[(started.tenant_id, started.kind)] = [0.0, 0, 0, 0]
        amounts[0] += seconds
        if result:
            amounts[1] += int(result.get("rows_loaded", 0) or 0)
            amounts[2] += int(result.get("messages", 0) or 0)
        if state in ("failed", "dead"):  # a cancelled attempt is no failure
            amounts[3] += 1
    ended = signals.ended_payloads([(o.started.job_id, o.run_seconds) for o in outcomes])
    sums = list(usage_rows.values())
    return (
        "{" + ",".join(ids) + "}", hotpath.texts(states), "{" + ",".join(finished) + "}",
        "{" + ",".join(run_seconds) + "}", hotpath.texts(errors), hotpath.texts(results),
        "{" + ",".join(not_before) + "}", "{" + ",".join(began) + "}",
        day,
        hotpath.texts([tenant for tenant, _ in usage_rows]), hotpath.texts([kind for _, kind in usage_rows]),
        hotpath.floats([a[0] for a in sums]), hotpath.ints([a[1] for a in sums]),
        hotpath.ints([a[2] for a in sums]), hotpath.ints([a[3] for a in sums]),
        hotpath.texts(ended),
    )


def add_usage(connection: sa.Connection, *, tenant_id: str, kind: str, day, **amounts: float) -> None:
    """Add to a tenant's usage of one kind on one day (an upsert on both databases)."""
    values = {"tenant_id": tenant_id, "day": day, "kind": kind, **{m: amounts.get(m, 0) for m in _METRICS}}
    connection.execute(_usage_upsert(connection.dialect.name), values)


_METRICS = ("jobs", "run_seconds", "rows", "messages", "failures")
_UPSERTS: dict[str, sa.Executable] = {}


def _usage_upsert(dialect: str) -> sa.Executable:
    """The usage upsert for a dialect, built once (it runs for every job)."""
    if dialect not in _UPSERTS:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        statement = insert(usage).values(
            {name: sa.bindparam(name) for name in ("tenant_id", "day", "kind", *_METRICS)}
        )
        _UPSERTS[dialect] = statement.on_conflict_do_update(
            index_elements=["tenant_id", "day", "kind"],
            set_={name: usage.c[name] + statement.excluded[name] for name in _METRICS},
        )
    return _UPSERTS[dialect]


# -- the hot statements, built once (building and caching a statement costs more than running it)

_START_MANY = (
    jobs.update()
    .where(
        jobs.c.id.in_(sa.bindparam("ids", expanding=True)),
        sa.or_(
            jobs.c.state.in_(("queued", "dispatched")),
            sa.and_(jobs.c.state == "failed",
                    sa.or_(jobs.c.not_before.is_(None), jobs.c.not_before <= sa.bindparam("now"))),
            sa.and_(jobs.c.state == "running", jobs.c.id.in_(sa.bindparam("redelivered", expanding=True))),
        ),
        jobs.c.cancel_requested.is_(False),
        ~sa.select(tenants.c.paused).where(tenants.c.id == jobs.c.tenant_id).scalar_subquery(),
    )
    .values(state="running", started_at=sa.bindparam("now"), attempts=jobs.c.attempts + 1, last_error=None,
            dispatched_at=sa.case((jobs.c.state.in_(DISPATCHABLE), sa.bindparam("now")), else_=jobs.c.dispatched_at),
            progress_message=sa.case((jobs.c.progress_message.like(hotpath.DEFERRED_PREFIX + "%"), None),
                                     else_=jobs.c.progress_message))
    .returning(jobs.c.id, jobs.c.tenant_id, jobs.c.kind, jobs.c.payload, jobs.c.attempts, jobs.c.max_retries,
               jobs.c.enqueued_at)
)

_UNCLAIM = (
    jobs.update()
    .where(jobs.c.id == sa.bindparam("job_id"), jobs.c.state == "running",
           jobs.c.started_at == sa.bindparam("claimed_at"))
    .values(state="dispatched", started_at=None, attempts=jobs.c.attempts - 1)
)

_FINISH = (
    jobs.update()
    .where(jobs.c.id == sa.bindparam("job_id"), jobs.c.state == "running")
    .values(
        state=sa.bindparam("state"),
        finished_at=sa.bindparam("finished_at"),
        run_seconds=jobs.c.run_seconds + sa.bindparam("run_seconds", type_=sa.Float),
        last_error=sa.bindparam("last_error"),
        result=sa.func.coalesce(sa.bindparam("result", type_=jobs.c.result.type), jobs.c.result),
        not_before=sa.bindparam("not_before"),
        started_at=sa.func.coalesce(sa.bindparam("began_at", type_=jobs.c.started_at.type), jobs.c.started_at),
    )
)

def _mark_dispatched():
    """After publishing: a waiting job becomes ``dispatched``. The mark runs a moment after the
    publish (the marks gather for a while), so a worker may have claimed the job since, and it
    may even have failed and be waiting for its retry: a job whose ``started_at`` is not older
    than the publish is left alone (so most rows of a busy system are written once, not twice),
    as is a job the gate deferred meanwhile (its ``not_before`` is later than the publish)."""
    at = sa.bindparam("at", type_=jobs.c.dispatched_at.type)
    return (
        jobs.update()
        .where(
            jobs.c.id == sa.bindparam("job_id"),
            sa.or_(*(jobs.c.state == state for state in DISPATCHABLE)),  # no IN list: run for many rows
            sa.or_(jobs.c.not_before.is_(None), jobs.c.not_before <= at),
            sa.or_(jobs.c.started_at.is_(None), jobs.c.started_at < at),
        )
        .values(state="dispatched", not_before=None, dispatched_at=at)
    )


_MARK_DISPATCHED = _mark_dispatched()

_SETTLED = sa.select(jobs.c.id, jobs.c.tenant_id, jobs.c.kind, jobs.c.state, jobs.c.run_seconds).where(
    jobs.c.id.in_(sa.bindparam("ids", expanding=True)), jobs.c.state != "dispatched"
)


def _heads_of(priority: int):
    return (
        sa.select(jobs.c.id, jobs.c.tenant_id, jobs.c.kind, jobs.c.priority, jobs.c.enqueued_at,
                  jobs.c.cost_estimate, jobs.c.queue)
        .where(
            jobs.c.tenant_id == sa.bindparam("tenant_id"),
            jobs.c.state.in_(DISPATCHABLE),
            jobs.c.priority == priority,
            sa.or_(jobs.c.not_before.is_(None), jobs.c.not_before <= sa.bindparam("now")),
            jobs.c.id.not_in(sa.bindparam("exclude", expanding=True)),
        )
        .order_by(jobs.c.id)
        .limit(sa.bindparam("n"))
        .subquery()
        .select()
    )


_HEADS = sa.union_all(*(_heads_of(priority) for priority in (2, 1, 0)))
