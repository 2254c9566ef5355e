"""Rows a file could not give: recorded per ingest job, and exported as CSV.

A row is recorded when its parser rejected it (``rejected``: line, reason, the
original text) or when its txn_id is already stored with different content
(``conflict``). A spreadsheet opening the export must not run it: a cell that
starts like a formula is escaped (:func:`escape_cell`).
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import NotFound
from app.ingest.models import IngestRowError
from app.scheduling.jobs import get_job
from app.tenancy.scoping import tenant_session

__all__ = ["Reject", "clear", "record", "export_csv", "escape_cell", "CSV_HEADER", "INGEST_KIND"]

#: The job kind whose rows these are.
INGEST_KIND = "ingest"
#: The columns of the export.
CSV_HEADER = ("line", "kind", "reason", "raw")
#: A cell starting with one of these is a formula to a spreadsheet (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: Rows read from the database per round trip of an export.
EXPORT_PAGE = 2000

table = IngestRowError.__table__


class Reject(NamedTuple):
    """One row that was not loaded."""

    line: int
    kind: str
    reason: str
    raw: str


def clear(connection: sa.Connection, *, tenant_id: str, job_id: int) -> None:
    """Forget what an earlier attempt of the job recorded (the new attempt records it again)."""
    connection.execute(table.delete().where(table.c.tenant_id == tenant_id, table.c.job_id == job_id))


def record(connection: sa.Connection, rejects: Iterable[Reject], *, tenant_id: str, job_id: int) -> int:
    """Record rows that were not loaded, in the connection's transaction. Returns how many."""
    now = utcnow()
    rows = [
        {"tenant_id": tenant_id, "job_id": job_id, "line": r.line, "kind": r.kind,
         "reason": r.reason, "raw": r.raw.replace("\x00", "\ufffd"), "created_at": now}
        for r in rejects
    ]
    if rows:
        connection.execute(table.insert(), rows)
    return len(rows)


def escape_cell(value: object) -> object:
    """A cell safe to open in a spreadsheet: text that starts like a formula gets a leading ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def export_csv(session: Session, job_id: int) -> Iterator[str]:
    """The job's unloaded rows as CSV text, in line order, a page at a time.

    The job is looked up now, with ``session``; the rows are read as the text is consumed,
    in a session of the same tenant that the iterator owns (a streamed response outlives
    its request's session), closed when the iterator ends or is closed.

    Raises:
      NotFound: no ingest job ``job_id`` of the session's tenant (raised before any text).
    """
    job = get_job(session, job_id)
    if job.kind != INGEST_KIND:
        raise NotFound(f"job {job_id} is not an ingest job: it has no row errors")
    return _pages(job.tenant_id, job_id)


def _pages(tenant_id: str, job_id: int) -> Iterator[str]:
    with tenant_session(tenant_id) as session:
        yield from _read(session, job_id)


def _read(session: Session, job_id: int) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    after = (0, 0)
    while True:
        page = session.execute(
            sa.select(IngestRowError.id, IngestRowError.line, IngestRowError.kind,
                      IngestRowError.reason, IngestRowError.raw)
            .where(IngestRowError.job_id == job_id,
                   sa.tuple_(IngestRowError.line, IngestRowError.id) > sa.tuple_(*after))
            .order_by(IngestRowError.line, IngestRowError.id)
            .limit(EXPORT_PAGE)
        ).all()
        for row_id, line, kind, reason, raw in page:
            writer.writerow((line, escape_cell(kind), escape_cell(reason), escape_cell(raw)))
            after = (line, row_id)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if len(page) < EXPORT_PAGE:
            return
