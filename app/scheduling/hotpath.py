"""The gate's and the dispatcher's batch statements on PostgreSQL, each on a connection of its own.

Every job passes three multi-row statements: the gate's start, the gate's
outcome and the dispatcher's mark. Each runs on one group-commit thread
(:mod:`app.scheduling.batcher`), and here that thread keeps one DBAPI connection
for itself, in autocommit mode, with its statement prepared and planned on the
server once (see :data:`SESSION`). A batch is then exactly one round trip. Through the pool it was four:
checkout, switch to autocommit, the statement, and the reset on return
(measured with py-spy: the isolation-level switch alone took as long as the
statement), plus SQLAlchemy's execution path around a statement of well
under a millisecond.

Their array parameters are passed as array literals built here (:func:`ints`, :func:`floats`,
:func:`texts`, :func:`times`), one string each: psycopg2 adapts a Python list element by element
into ``ARRAY[...]``, and that adaptation was most of a batch's client CPU (measured: 73 µs for the
outcome statement's parameters of 8 jobs, against 6 µs for the round trip itself).

The statements keep the same meaning as the portable ones in
:mod:`app.scheduling.store`, which the embedded default (SQLite) runs; the
tests run both.
"""
from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.db import Database
from app.scheduling import signals
from app.scheduling.models import STATES

__all__ = ["Dedicated", "Prepared", "SESSION", "START", "FINISH", "MARK_DISPATCHED", "ints", "floats", "texts", "times"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A statement prepared on the server: ``$1``, ``$2``, ... of the given types."""

    name: str
    types: tuple[str, ...]
    sql: str

    @property
    def prepare(self) -> str:
        return f"PREPARE {self.name} ({', '.join(self.types)}) AS {self.sql}"

    @functools.cached_property
    def execute(self) -> str:
        # explicit casts: an array literal (see :func:`ints`) is a string until cast, and psycopg2
        # sends a list as ARRAY[...], whose element type PostgreSQL would otherwise guess from the
        # first element (or not at all when every one is NULL)
        return f"EXECUTE {self.name} ({', '.join(f'%s::{t}' for t in self.types)})"


def ints(values: Iterable[int]) -> str:
    """An array literal of integers (for ``bigint[]``)."""
    return "{" + ",".join(map(str, values)) + "}"


def floats(values: Iterable[float]) -> str:
    """An array literal of numbers (for ``float8[]``); ``repr`` reads back as the same float."""
    return "{" + ",".join(map(repr, values)) + "}"


def _quoted(value: str | None) -> str:
    if value is None:
        return "NULL"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def texts(values: Iterable[str | None]) -> str:
    """An array literal of strings, ``None`` as NULL (for ``text[]``, ``jsonb[]``)."""
    return "{" + ",".join(map(_quoted, values)) + "}"


def times(values: Iterable[datetime | None]) -> str:
    """An array literal of timestamps, ``None`` as NULL (for ``timestamptz[]``); a naive one is
    read in the session's time zone, as psycopg2's own adaptation has it."""
    return "{" + ",".join("NULL" if value is None else value.isoformat() for value in values) + "}"


#: The settings of a dedicated connection's session, which runs only the statements below.
#:
#: - Commits do not wait for the WAL's flush: a job whose write is lost in a crash of the
#:   database runs again after its lease (at-least-once, as for any crash).
#: - Each statement is planned once per connection (a generic plan), not at every execution.
#:   Left to choose, PostgreSQL planned every execution anew: for an array parameter of known
#:   length a custom plan always looks cheaper than the generic one, so it never switched
#:   (``pg_prepared_statements``: 0 generic plans, 1,000 custom ones). Measured on the bench
#:   database, batches of 4, 1,000 each: backend CPU a batch 480 / 480 / 390 µs (start / outcome
#:   / mark) re-planned, 200 / 240 / 170 with the generic plan; each round trip took half as long.
#: - No sequential scans: a generic plan is made once, from the statistics of that moment, and a
#:   ``jobs`` table never analyzed (or analyzed while nearly empty) looks small enough to scan
#:   whole — the outcome's and the mark's plans did, and would have kept doing so as the table
#:   grew. With scans off they find their jobs by id whatever the statistics say
#:   (``tests/test_scheduling_hotpath.py`` checks each plan, on a table analyzed large and on one
#:   never analyzed).
SESSION = (
    "SET synchronous_commit = off",
    "SET plan_cache_mode = force_generic_plan",
    "SET enable_seqscan = off",
)


class Dedicated:
    """One thread's own connection to PostgreSQL, across all tenants, in autocommit mode.

    Opened on first use from the system pool's settings (so it is opened for all
    tenants like the pool's connections) and then detached from the pool. After
    an error that may have broken it, it is closed and opened again on the next
    call; a deadlock or another statement error leaves it as it is.
    """

    def __init__(self, db: Database, *, name: str) -> None:
        self.db = db
        self.name = name
        self._connection = None
        self._prepared: set[str] = set()
        self._owner: int | None = None

    def run(self, statement: Prepared, params: Sequence[Any]) -> list[tuple]:
        """Execute ``statement`` with ``params``; its rows (empty when it returns none).

        Raises:
          psycopg2.Error: the statement failed (see :func:`app.scheduling.store.again_on_deadlock`).
        """
        import psycopg2

        owner = threading.get_ident()
        if self._owner is None:
            self._owner = owner
        assert self._owner == owner, f"{self.name}: a dedicated connection belongs to one thread"
        connection = self._connect()
        try:
            with connection.cursor() as cursor:
                if statement.name not in self._prepared:
                    cursor.execute(statement.prepare)
                    self._prepared.add(statement.name)
                cursor.execute(statement.execute, tuple(params))
                return cursor.fetchall() if cursor.description is not None else []
        except psycopg2.errors.TransactionRollbackError:
            raise  # a deadlock victim or a serialisation failure: the connection is fine
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            self.close()
            raise

    def _connect(self):
        if self._connection is None or self._connection.closed:
            proxied = self.db.system_engine.raw_connection()
            connection = proxied.driver_connection
            proxied.detach()  # ours until closed; the pool opens another for its own users
            connection.autocommit = True
            with connection.cursor() as cursor:
                for setting in SESSION:
                    cursor.execute(setting)
            self._connection = connection
            self._prepared = set()
        return self._connection

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.closed:
            try:
                connection.close()
            except Exception:  # pragma: no cover - closing a broken connection
                logger.debug("closing %s's connection failed", self.name, exc_info=True)


def state_in(*wanted: str) -> str:
    """A test that a job is in one of the ``wanted`` states, written as "in none of the others".

    The statements below find their jobs by id (``= ANY``). A plain ``state = 'running'``
    beside that matches the predicate of a partial index on the state (``ix_jobs_state_id``,
    ``ix_jobs_dispatchable``), and when the statistics say few jobs are in that state the
    planner walks the index instead — every entry left there by the jobs that ever were in it,
    until vacuum. Measured: the outcome statement took 2.9 ms a batch (of 8) instead of well
    under one with 20,000 jobs run, and the mark's database CPU per job tripled. No partial
    index predicate follows from ``NOT IN``, so the jobs are found by their ids.
    """
    unknown = set(wanted) - set(STATES)
    assert not unknown, f"not states: {unknown}"
    others = ", ".join(f"'{state}'" for state in STATES if state not in wanted)
    return f"jobs.state NOT IN ({others})"


#: How the progress message of a job the gate put back begins (``Store.defer``); the job's start
#: clears such a message, and only such a one (a job's own progress stays).
DEFERRED_PREFIX = "deferred: "

#: The gate's start: jobs that may run now become ``running``, and the dispatcher hears which
#: (see ``Store.start_many``; the notification is sent only when a job was claimed).
START = Prepared(
    "fairq_start",
    ("bigint[]", "bigint[]", "timestamptz"),
    f"""
    WITH started AS (
        UPDATE jobs SET state = 'running', started_at = $3, attempts = attempts + 1, last_error = NULL,
            dispatched_at = CASE WHEN state IN ('queued', 'failed') THEN $3 ELSE dispatched_at END,
            progress_message = CASE WHEN progress_message LIKE '{DEFERRED_PREFIX}%' THEN NULL
                                    ELSE progress_message END
        WHERE id = ANY($1)
          AND (state IN ('queued', 'dispatched')
               OR (state = 'failed' AND (not_before IS NULL OR not_before <= $3))
               OR (state = 'running' AND id = ANY($2)))
          AND cancel_requested IS false
          AND NOT (SELECT paused FROM tenants WHERE tenants.id = jobs.tenant_id)
        RETURNING id, tenant_id, kind, payload, attempts, max_retries, enqueued_at
    ), told AS (
        SELECT pg_notify('{signals.CHANNEL}', '{signals.CLAIMED}' || string_agg(id::text, ',')) FROM started
    )
    SELECT started.*, (SELECT count(*) FROM told) FROM started
    """,
)

#: The gate's outcomes, their usage and the dispatcher's news, in one statement
#: (see ``Store.finish_many``).
FINISH = Prepared(
    "fairq_finish",
    ("bigint[]", "text[]", "timestamptz[]", "float8[]", "text[]", "jsonb[]", "timestamptz[]", "timestamptz[]",
     "date", "text[]", "text[]", "float8[]", "bigint[]", "bigint[]", "bigint[]", "text[]"),
    f"""
    WITH done AS (
        UPDATE jobs SET
            state = v.state,
            finished_at = v.finished_at,
            run_seconds = jobs.run_seconds + v.run_seconds,
            last_error = v.last_error,
            result = COALESCE(v.result, jobs.result),
            not_before = v.not_before,
            started_at = COALESCE(v.began_at, jobs.started_at)
        FROM unnest($1, $2, $3, $4, $5, $6, $7, $8)
            AS v(id, state, finished_at, run_seconds, last_error, result, not_before, began_at)
        WHERE jobs.id = ANY($1) AND jobs.id = v.id AND {state_in('running')}
        RETURNING jobs.id
    ), metered AS (
        INSERT INTO usage_daily (tenant_id, day, kind, jobs, run_seconds, rows, messages, failures)
        SELECT t, $9, k, 0, r, ro, m, f FROM unnest($10, $11, $12, $13, $14, $15) AS x(t, k, r, ro, m, f)
        ON CONFLICT (tenant_id, day, kind) DO UPDATE SET
            run_seconds = usage_daily.run_seconds + excluded.run_seconds,
            rows = usage_daily.rows + excluded.rows,
            messages = usage_daily.messages + excluded.messages,
            failures = usage_daily.failures + excluded.failures
        RETURNING 1
    )
    SELECT pg_notify('{signals.CHANNEL}', news) FROM unnest($16) AS n(news)
    """,
)

#: After publishing: waiting jobs not claimed since their publish become ``dispatched``
#: (see ``Store.mark_dispatched``): ``$2`` holds each job's publish time. The jobs are found by
#: id (see :func:`state_in`).
MARK_DISPATCHED = Prepared(
    "fairq_mark_dispatched",
    ("bigint[]", "timestamptz[]"),
    f"""
    UPDATE jobs SET state = 'dispatched', not_before = NULL, dispatched_at = v.at
    FROM unnest($1, $2) AS v(id, at)
    WHERE jobs.id = ANY($1) AND jobs.id = v.id
      AND {state_in('queued', 'failed')}
      AND (jobs.not_before IS NULL OR jobs.not_before <= v.at)
      AND (jobs.started_at IS NULL OR jobs.started_at < v.at)
    """,
)
