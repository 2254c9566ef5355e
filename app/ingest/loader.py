"""Bulk load of parsed rows into ``fintech_transactions``, batch by batch, idempotently.

Each batch is one transaction of the tenant's scope (row-level security on
PostgreSQL): its rows go to a temporary staging table, then into the table with
``INSERT ... SELECT ... ON CONFLICT (tenant_id, ledger, txn_id) DO NOTHING`` (on PostgreSQL a
plain ``INSERT`` in a savepoint first: the common batch of new rows skips ON CONFLICT's work).
When some rows were not inserted, one more query tells them apart:

- *loaded*: the stored row is this row, put there by this job (an earlier
  attempt of a retried job counts: a job killed halfway and retried reports,
  and meters, exactly the file's rows once);
- *duplicate*: the stored row has the same content (amount, status, reference,
  direction, currency): a quiet no-op;
- *conflict*: the stored row differs; it is kept, and the row is recorded with
  what differs (see :mod:`app.ingest.rejects`).

PostgreSQL: rows stream into ``COPY ... FROM STDIN`` from writer threads while
the caller's thread goes on parsing, so parsing overlaps with the server's work
on the previous chunk and batch; two writers (connections) take batches in turn,
so one batch's ``COPY`` runs beside the previous batch's merge, and the merges
run one after the other in file order. SQLite: ``executemany`` per batch.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace

import sqlalchemy as sa

from app.db import Database, UTCDateTime, utcnow
from app.hooks import RowError, SourceFileError, Transaction
from app.ingest import rejects, rows
from app.ingest.models import FintechTransaction
from app.ingest.rejects import Reject
from app.tenancy.scoping import tenant_session

__all__ = ["Target", "Counts", "load"]

logger = logging.getLogger(__name__)

#: Rows rendered into one chunk of the COPY stream.
CHUNK_ROWS = 2000
#: Chunks waiting for the writer at most (back-pressure: about 25 MB), enough to keep parsing
#: while the writer merges a batch.
QUEUE_CHUNKS = 40
#: Writer threads (connections): one copies a batch into its staging table while another merges.
WRITERS = 2
#: Seconds between checks that the other thread is still alive, while waiting on the queue.
POLL = 0.5

target_table = FintechTransaction.__table__
#: The compared columns: a row that differs in one of them is a conflict.
COMPARED = ("amount", "status", "reference", "direction", "currency")

_staging_metadata = sa.MetaData()
staging = sa.Table(
    "ingest_staging", _staging_metadata,
    sa.Column("txn_id", sa.String(64)),
    sa.Column("amount", sa.Numeric(18, 2)),
    sa.Column("status", sa.String(16)),
    sa.Column("txn_time", UTCDateTime()),
    sa.Column("direction", sa.String(2)),
    sa.Column("currency", sa.String(3)),
    sa.Column("reference", sa.String(64)),
    sa.Column("counterparty", sa.String(255)),
    sa.Column("ifsc", sa.String(11)),
    sa.Column("settlement_date", sa.Date()),
    sa.Column("line", sa.Integer()),
    sa.Column("raw_row", sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")),
    prefixes=["TEMPORARY"],
)
assert tuple(staging.c.keys()) == rows.STAGING_COLUMNS


@dataclass(frozen=True)
class Target:
    """Where the rows of one ingest job go."""

    tenant_id: str
    ledger: str
    source: str
    job_id: int


@dataclass
class Counts:
    """What became of a file's rows; ``as_result()`` is the job's result."""

    rows_read: int = 0
    rows_loaded: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0

    def add(self, other: Counts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_result(self) -> dict[str, int]:
        return asdict(self)


def load(
    db: Database,
    target: Target,
    items: Iterable[Transaction | RowError],
    *,
    batch_rows: int,
    on_batch: Callable[[Counts], None] | None = None,
) -> Counts:
    """Load a parser's output; returns the counts.

    Parameters:
      items: a source plugin's parser output, consumed once, in order: transactions, row
        errors and, from a ``stage`` parser (PostgreSQL only), rows as ``COPY`` text.
      batch_rows: rows read per batch (one transaction each).
      on_batch: called in the caller's thread after each batch is handed over, with the
        counts so far (progress; cancellation: whatever it raises stops the load, and
        the batch in flight is rolled back).

    Raises:
      SourceFileError: from the parser, after the rows before it are loaded and recorded.
    """
    with tenant_session(target.tenant_id, db=db) as session:
        rejects.clear(session.connection(), tenant_id=target.tenant_id, job_id=target.job_id)
    writer: _Writer = _CopyWriter(db, target) if db.dialect == "postgresql" else _ManyWriter(db, target)
    read = in_batch = 0
    try:
        try:
            for item in items:
                read += 1
                in_batch += 1
                if item.__class__ is str:
                    writer.add_line(item)
                elif isinstance(item, Transaction):
                    writer.add(item)
                else:
                    writer.reject(Reject(item.line, "rejected", item.reason, item.raw))
                if in_batch >= batch_rows:
                    writer.end_batch()
                    in_batch = 0
                    if on_batch is not None:
                        on_batch(replace(writer.counts(), rows_read=read))
        except SourceFileError:
            writer.end_batch()  # keep what came before, and every rejected row, then fail
            writer.finish()
            raise
        writer.end_batch()
        counts = replace(writer.finish(), rows_read=read)
    except BaseException:
        writer.abort()
        raise
    return counts


class _Writer:
    """Takes rows in the caller's thread; writes a batch at each ``end_batch``."""

    def __init__(self, db: Database, target: Target) -> None:
        self.db = db
        self.target = target
        self._counts = Counts()
        self._lock = threading.Lock()
        self.rejects: list[Reject] = []

    def add(self, tx: Transaction) -> None:
        raise NotImplementedError

    def add_line(self, line: str) -> None:
        """A row already rendered as ``COPY`` text (see :mod:`app.ingest.staged`)."""
        raise TypeError("rows as COPY text are for PostgreSQL's COPY writer only")

    def reject(self, reject: Reject) -> None:
        self.rejects.append(reject)

    def end_batch(self) -> None:
        raise NotImplementedError

    def finish(self) -> Counts:
        return self.counts()

    def abort(self) -> None:
        """Stop: the batch in flight is rolled back."""

    def counts(self) -> Counts:
        with self._lock:
            return replace(self._counts)

    def _write(self, connection: sa.Connection, staged: int, batch_rejects: list[Reject]) -> None:
        """The end of a batch, in its transaction: rows from staging into the table, and the record."""
        counts = _merge(connection, self.target, staged)
        counts.rejected = len(batch_rejects)
        conflicts = _conflicts(connection, self.target) if counts.conflicts else []
        rejects.record(connection, batch_rejects + conflicts,
                       tenant_id=self.target.tenant_id, job_id=self.target.job_id)
        staging.drop(connection)
        with self._lock:
            self._counts.add(counts)


class _ManyWriter(_Writer):
    """SQLite: a batch is held as values and written with ``executemany`` at its end."""

    def __init__(self, db: Database, target: Target) -> None:
        super().__init__(db, target)
        self.values: list[dict] = []

    def add(self, tx: Transaction) -> None:
        problem = rows.problem(tx)
        if problem is None:
            try:
                self.values.append(rows.row_values(tx))
                return
            except (TypeError, ValueError):
                problem = "raw_row is not a JSON object of text"
        self.reject(Reject(tx.line, "rejected", problem, rows.raw_text(tx)))

    def end_batch(self) -> None:
        if not self.values and not self.rejects:
            return
        with tenant_session(self.target.tenant_id, db=self.db) as session:
            connection = session.connection()
            _new_staging(connection)
            if self.values:
                connection.execute(staging.insert(), self.values)
            self._write(connection, len(self.values), self.rejects)
        self.values, self.rejects = [], []


class _CopyWriter(_Writer):
    """PostgreSQL: rendered rows stream through queues into ``COPY`` in :data:`WRITERS` threads.

    Batch *n* goes to writer *n* mod :data:`WRITERS`, each with its own connection and staging
    table: one writer's ``COPY`` runs while the other merges the batch before. The merges take
    turns in file order (a batch is merged and committed before the next one's merge starts), so
    what a row meets in the table is what it would meet with one writer.
    """

    def __init__(self, db: Database, target: Target) -> None:
        super().__init__(db, target)
        self.chunk: list[str] = []
        self.staged = 0
        self.batch = 0
        self.failure: BaseException | None = None
        self.stopping = False
        self.turn = 0  # the batch whose merge may run
        self.turns = threading.Condition()
        self.inboxes = [queue.Queue(QUEUE_CHUNKS) for _ in range(WRITERS)]
        self.threads = [
            threading.Thread(target=self._run, args=(number,), name=f"ingest-copy-{target.job_id}-{number}",
                             daemon=True)
            for number in range(WRITERS)
        ]
        for thread in self.threads:
            thread.start()

    def add(self, tx: Transaction) -> None:
        problem = rows.problem(tx)
        line = None
        if problem is None:
            try:
                line = rows.copy_line(tx)
            except (TypeError, ValueError):
                problem = "raw_row is not a JSON object of text"
        if line is None:
            self.reject(Reject(tx.line, "rejected", problem or "the row holds a NUL character",
                               rows.raw_text(tx)))
            return
        self.add_line(line)

    def add_line(self, line: str) -> None:
        chunk = self.chunk
        chunk.append(line)
        self.staged += 1
        if len(chunk) >= CHUNK_ROWS:
            self._send(("data", "".join(chunk).encode()))
            self.chunk = []

    def end_batch(self) -> None:
        if not self.staged and not self.rejects:
            return
        if self.chunk:
            self._send(("data", "".join(self.chunk).encode()))
        self._send(("end", self.staged, self.rejects))
        self.chunk, self.staged, self.rejects = [], 0, []
        self.batch += 1

    def finish(self) -> Counts:
        for number in range(WRITERS):
            self._send(("stop",), number)
        self._join()
        return self.counts()

    def abort(self) -> None:
        self._stop()
        for number, thread in enumerate(self.threads):
            if thread.is_alive():
                try:
                    self._send(("abort",), number)
                except BaseException:  # the writer failed meanwhile: it is stopping anyway
                    pass
        for thread in self.threads:
            thread.join()

    def _send(self, message: tuple, number: int | None = None) -> None:
        number = self.batch % WRITERS if number is None else number
        inbox, thread = self.inboxes[number], self.threads[number]
        while True:
            if self.failure is not None or not thread.is_alive():
                self._stop()
                self._join()
                raise RuntimeError("the ingest writer stopped")
            try:
                inbox.put(message, timeout=POLL)
                return
            except queue.Full:
                continue

    def _stop(self) -> None:
        with self.turns:
            self.stopping = True
            self.turns.notify_all()

    def _join(self) -> None:
        for thread in self.threads:
            thread.join()
        if self.failure is not None:
            raise self.failure

    # -- the writer threads ------------------------------------------------------------------

    def _run(self, number: int) -> None:
        inbox, batch = self.inboxes[number], number
        try:
            while True:
                message = inbox.get()
                if message[0] in ("stop", "abort"):
                    return
                self._copy_batch(inbox, message, batch)
                with self.turns:
                    self.turn = batch + 1
                    self.turns.notify_all()
                batch += WRITERS
        except _Aborted:
            return
        except BaseException as exc:  # handed to the caller's thread at its next send
            if self.failure is None:
                self.failure = exc
            self._stop()

    def _wait_turn(self, batch: int) -> None:
        with self.turns:
            while self.turn != batch:
                if self.stopping:
                    raise _Aborted()
                self.turns.wait(POLL)

    def _copy_batch(self, inbox: queue.Queue, first: tuple, batch: int) -> None:
        with tenant_session(self.target.tenant_id, db=self.db) as session:
            connection = session.connection()  # begins: the tenant's scope is set for this transaction
            _new_staging(connection)
            feed = _Feed(inbox, first)
            cursor = connection.connection.dbapi_connection.cursor()
            try:
                cursor.copy_expert(
                    f"COPY {staging.name} ({', '.join(rows.STAGING_COLUMNS)}) FROM STDIN", feed, size=1 << 20
                )
            finally:
                cursor.close()
            if feed.aborted:
                raise _Aborted()
            _kind, staged, batch_rejects = feed.end
            self._wait_turn(batch)
            self._write(connection, staged, batch_rejects)


class _Aborted(Exception):
    """The caller stopped the load; the batch in flight is rolled back."""


class _Feed:
    """The file-like object ``COPY`` reads: chunks from the queue until the batch ends."""

    def __init__(self, inbox: queue.Queue, first: tuple) -> None:
        self.inbox = inbox
        self.pending: tuple | None = first
        self.end: tuple | None = None
        self.aborted = False

    def read(self, _size: int = -1) -> bytes:
        if self.end is not None or self.aborted:
            return b""
        message, self.pending = self.pending or self.inbox.get(), None
        if message[0] == "data":
            return message[1]
        if message[0] == "end":
            self.end = message
        else:
            self.aborted = True  # ends the COPY; the transaction is rolled back
        return b""


def _new_staging(connection: sa.Connection) -> None:
    """An empty staging table (SQLite commits DDL at once: a failed batch may have left one)."""
    staging.drop(connection, checkfirst=True)
    staging.create(connection)


def _insert(connection: sa.Connection):
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(target_table)


def _merge(connection: sa.Connection, target: Target, staged: int) -> Counts:
    """Staged rows into the table; the counts of the batch (conflicts: how many, not which)."""
    if not staged:
        return Counts()
    columns = ["tenant_id", "ledger", "source", "job_id", "created_at", *rows.STAGING_COLUMNS]
    select = sa.select(
        sa.literal(target.tenant_id, sa.String), sa.literal(target.ledger, sa.String),
        sa.literal(target.source, sa.String), sa.literal(target.job_id, sa.BigInteger),
        sa.literal(utcnow(), UTCDateTime()), *(staging.c[name] for name in rows.STAGING_COLUMNS),
    ).where(sa.true())  # SQLite needs a WHERE before ON CONFLICT in INSERT ... SELECT
    insert = _insert(connection).from_select(columns, select)
    if connection.dialect.name == "postgresql":
        # The common case, a file of new rows: a plain INSERT spares the server the speculative
        # insertion of ON CONFLICT. A row stored already (or twice in the batch) undoes it, in
        # its savepoint, and the batch goes the ON CONFLICT way below.
        try:
            with connection.begin_nested():
                inserted = connection.execute(insert).rowcount
        except sa.exc.IntegrityError:
            inserted = None
        if inserted == staged:
            return Counts(rows_loaded=inserted)
    statement = insert.on_conflict_do_nothing(index_elements=["tenant_id", "ledger", "txn_id"])
    inserted = connection.execute(statement).rowcount
    if inserted == staged:
        return Counts(rows_loaded=inserted)
    own, same = _verdicts(target)
    loaded, duplicates, conflicts = connection.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(sa.case((own, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((own, 0), (same, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((own, 0), (same, 0), else_=1)), 0),
        ).select_from(_joined(target))
    ).one()
    return Counts(rows_loaded=int(loaded), duplicates=int(duplicates), conflicts=int(conflicts))


def _joined(target: Target):
    t = target_table.c
    return staging.join(
        target_table,
        sa.and_(t.tenant_id == target.tenant_id, t.ledger == target.ledger, t.txn_id == staging.c.txn_id),
    )


def _verdicts(target: Target):
    """Two conditions on a staged row joined to its stored row: it *is* that row; it has its content."""
    t, s = target_table.c, staging.c
    own = sa.func.coalesce(sa.and_(t.job_id == target.job_id, t.line == s.line), sa.false())
    same = sa.and_(*(t[name].is_not_distinct_from(s[name]) for name in COMPARED))
    return own, same


def _conflicts(connection: sa.Connection, target: Target) -> list[Reject]:
    """The batch's conflicting rows, each with what differs from the stored row."""
    own, same = _verdicts(target)
    t, s = target_table.c, staging.c
    shown = [sa.cast(column[name], sa.String) for name in COMPARED for column in (s, t)]
    found = connection.execute(
        sa.select(s.line, s.txn_id, sa.cast(s.raw_row, sa.Text), *shown)
        .select_from(_joined(target))
        .where(sa.not_(own), sa.not_(same))
        .order_by(s.line)
    ).all()
    out = []
    for line, txn_id, raw, *values in found:
        pairs = dict(zip(COMPARED, zip(values[0::2], values[1::2])))
        differs = ", ".join(
            f"{name} {new if new is not None else 'empty'} (stored: {old if old is not None else 'empty'})"
            for name, (new, old) in pairs.items() if new != old
        )
        reason = (f"txn_id {txn_id} is already in the {target.ledger} ledger with other content: "
                  f"{differs or 'amount differs'}; the stored row is kept")
        out.append(Reject(line, "conflict", reason, raw or ""))
    return out
