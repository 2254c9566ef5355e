"""Files an ingest job read to its end: an identical file ingested again is not read again.

A file is *identical* when the same tenant ingests the same path into the same ledger with
the same source, the object store reports the same version of the object (ETag and size on
S3; size and modification time in a local folder), and the same parser would read it (the
plugin's distribution and version, fairq's version, the time zone of local times).

Its rows are then exactly the rows read before, and ``fintech_transactions`` is only ever
inserted into, so each row now meets what it met or stored the first time: rows loaded
then and duplicates are duplicates now, conflicts are conflicts again, rejected rows are
rejected again. The new job reports those counts and records the same rejected and
conflicting rows, without reading the file (like a warehouse's load history that skips
files it has already loaded). ``force`` reads it anyway.

Should anything ever delete or change stored transactions, it must forget these records
for the rows' tenant too, or a re-ingest would not bring the rows back.
"""
from __future__ import annotations

import importlib.metadata
from functools import lru_cache

import sqlalchemy as sa

from app.db import utcnow
from app.hooks import Source
from app.ingest import rejects
from app.ingest.loader import Counts, Target
from app.ingest.models import IngestedFile, IngestRowError

__all__ = ["parser_identity", "find", "repeat", "remember"]

table = IngestedFile.__table__


def parser_identity(source: Source, timezone: str) -> str:
    """What reads a file of ``source``: e.g. ``fairq-csv-upi 0.1.0; fairq 0.1.0; Asia/Kolkata``."""
    module = getattr(source.parse, "__module__", "") or source.name
    return f"{_distribution(module)}; {_distribution('app')}; {timezone}"[:200]


@lru_cache(maxsize=64)
def _distribution(module: str) -> str:
    top = module.partition(".")[0]
    names = importlib.metadata.packages_distributions().get(top)
    if not names:
        return top
    return f"{names[0]} {importlib.metadata.version(names[0])}"


def find(connection: sa.Connection, target: Target, *, s3_path: str, version: str,
         parser: str) -> IngestedFile | None:
    """The latest record of the same file read the same way for the same tenant, if any."""
    c = table.c
    row = connection.execute(
        sa.select(table).where(
            c.tenant_id == target.tenant_id, c.s3_path == s3_path, c.version == version,
            c.ledger == target.ledger, c.source == target.source, c.parser == parser,
            c.job_id != target.job_id,
        ).order_by(c.id.desc()).limit(1)
    ).first()
    return IngestedFile(**row._mapping) if row is not None else None


def repeat(connection: sa.Connection, earlier: IngestedFile, *, job_id: int) -> Counts:
    """The outcome of reading ``earlier``'s file again, recorded for job ``job_id``.

    Its rejected and conflicting rows are recorded for the new job (an earlier attempt's
    records are replaced); returns the counts a full read would give.
    """
    rejects.clear(connection, tenant_id=earlier.tenant_id, job_id=job_id)
    errors = IngestRowError.__table__
    copied = sa.select(
        errors.c.tenant_id, sa.literal(job_id, sa.BigInteger), errors.c.line, errors.c.kind,
        errors.c.reason, errors.c.raw, sa.literal(utcnow(), errors.c.created_at.type),
    ).where(errors.c.tenant_id == earlier.tenant_id, errors.c.job_id == earlier.job_id)
    connection.execute(errors.insert().from_select(
        ["tenant_id", "job_id", "line", "kind", "reason", "raw", "created_at"], copied
    ))
    return Counts(rows_read=earlier.rows_read, rows_loaded=0,
                  duplicates=earlier.rows_loaded + earlier.duplicates,
                  conflicts=earlier.conflicts, rejected=earlier.rejected)


def remember(connection: sa.Connection, target: Target, counts: Counts, *, s3_path: str, version: str,
             parser: str) -> None:
    """Record that job ``target.job_id`` read the file to its end, with these counts."""
    connection.execute(table.insert().values(
        tenant_id=target.tenant_id, job_id=target.job_id, s3_path=s3_path, version=version,
        ledger=target.ledger, source=target.source, parser=parser, created_at=utcnow(),
        **counts.as_result(),
    ))
