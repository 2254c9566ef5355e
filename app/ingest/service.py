"""Ingest services: upload a file, enqueue its ingest, and run it (the job, the CLI).

The API, the job kind and any CLI call these functions; views never hold this logic.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy.orm import Session

from app.db import get_db
from app.errors import Invalid, ServiceError
from app.hooks import ParseContext, SourceFileError
from app.ingest import files
from app.ingest.loader import Counts, Target, load
from app.ingest.models import LEDGERS
from app.ingest.paths import object_key, relative_path, tenant_prefix, upload_path
from app.ingest.rejects import INGEST_KIND
from app.ingest.sources import find_source
from app.quota import quotas
from app.quota.plans import plan_for
from app.scheduling import jobs
from app.scheduling.kinds import JobFailed
from app.scheduling.models import Job
from app.settings import Settings
from app.storage import READ_BUFFER, ObjectNotFound, make_store, opened_version
from app.tenancy.scoping import session_tenant, tenant_session
from app.tenancy.service import get_tenant

__all__ = ["IngestFailed", "Ingested", "upload", "enqueue_ingest", "ingest_file", "READ_BUFFER"]

logger = logging.getLogger(__name__)

class IngestFailed(JobFailed):
    """The file cannot be ingested (missing, unreadable, no valid rows): one clear reason."""


def upload(settings: Settings, tenant_id: str, stream: BinaryIO, filename: str | None) -> tuple[str, int]:
    """Store an uploaded file under the tenant's ``uploads/`` folder, streaming.

    Returns:
      Its path relative to the tenant's folder (what ``s3_path`` takes), and its size.

    Raises:
      Invalid: the file is empty (nothing is stored).
    """
    first = stream.read(READ_BUFFER)
    if not first:
        raise Invalid("the file is empty", slug="empty-file", errors=[{"field": "file", "message": "empty"}])
    path = upload_path(filename)
    size = make_store(settings).put(tenant_prefix(tenant_id) + path, _Prepended(first, stream))
    logger.info("uploaded %s (%d bytes)", path, size, extra={"tenant_id": tenant_id})
    return path, size


def enqueue_ingest(
    session: Session,
    settings: Settings,
    *,
    s3_path: str,
    source: str,
    ledger: str = "external",
    priority: str = "normal",
    force: bool = False,
    idempotency_key: str | None = None,
) -> tuple[Job, bool]:
    """Queue the ingest of a file of the session's tenant, in the session's transaction.

    Nothing is read here: the path is checked, the source looked up, the quota asked.
    ``force``: read the file even if the same file was ingested before (see ``ingest_file``).

    Returns:
      The job, and whether it is new (``False``: the same ``idempotency_key`` was seen before).

    Raises:
      Invalid: a bad path, an unknown source or ledger (400).
      Forbidden: a path in another tenant's folder (403).
      QuotaExceeded: the tenant is over its rows quota (429).
    """
    tenant_id = session_tenant(session)
    if tenant_id is None:
        raise RuntimeError("enqueue_ingest needs a session scoped to a tenant")
    path = relative_path(tenant_id, s3_path)
    found = find_source(source)
    if ledger not in LEDGERS:
        raise Invalid(f"ledger must be one of {', '.join(LEDGERS)}",
                      errors=[{"field": "ledger", "message": "external or internal"}])
    plan_name = get_tenant(tenant_id).plan
    quotas.check(session, plan_for(settings, plan_name), plan_name=plan_name, tenant_id=tenant_id, rows=0)
    payload = {"s3_path": path, "source": found.name.upper(), "ledger": ledger}
    if force:
        payload["force"] = True
    return jobs.enqueue(session, settings, kind=INGEST_KIND, payload=payload, priority=priority,
                        idempotency_key=idempotency_key)


@dataclass(frozen=True)
class Ingested:
    """What an ingest did: its counts, and the job whose identical file it recognised, if any."""

    counts: Counts
    same_file_as_job: int | None = None

    def as_result(self) -> dict[str, int]:
        result = self.counts.as_result()
        if self.same_file_as_job is not None:
            result["same_file_as_job"] = self.same_file_as_job
        return result


def ingest_file(
    settings: Settings,
    *,
    tenant_id: str,
    job_id: int,
    s3_path: str,
    source: str,
    ledger: str = "external",
    force: bool = False,
    on_batch: Callable[[Counts], None] | None = None,
) -> Ingested:
    """Stream a tenant's file from the store through its source's parser into the table.

    Safe to run again for the same job: rows already loaded are not loaded twice. A file
    this tenant already ingested, unchanged and read the same way, is not read again
    (see :mod:`app.ingest.files`) unless ``force``.

    Raises:
      IngestFailed: the path or source is not valid any more, the object is missing, or the
        parser cannot read the file (no header, no valid row, broken CSV).
    """
    try:
        key = object_key(tenant_id, s3_path)
        found = find_source(source)
    except ServiceError as exc:
        raise IngestFailed(exc.detail) from None
    if ledger not in LEDGERS:
        raise IngestFailed(f"ledger {ledger!r} is not one of {', '.join(LEDGERS)}")
    db, store = get_db(settings), make_store(settings)
    target = Target(tenant_id=tenant_id, ledger=ledger, source=source.upper()[:32], job_id=job_id)
    parser = files.parser_identity(found, settings.ingest_timezone)
    context = ParseContext(timezone=settings.ingest_timezone, ledger=ledger)
    try:
        if not force:
            with tenant_session(tenant_id, db=db) as session:
                connection = session.connection()
                earlier = files.find(connection, target, s3_path=s3_path, version=store.version(key),
                                     parser=parser)
                if earlier is not None:
                    counts = files.repeat(connection, earlier, job_id=job_id)
            if earlier is not None:
                logger.info("%s is the file job %d ingested: not read again", s3_path, earlier.job_id,
                            extra={"job_id": job_id, "tenant_id": tenant_id})
                return Ingested(counts, same_file_as_job=earlier.job_id)
        with opened_version(store, key) as (stream, version):
            parse = found.stage if found.stage is not None and db.dialect == "postgresql" else found.parse
            items = parse(stream, context)
            try:
                counts = load(db, target, items, batch_rows=settings.ingest_batch_rows, on_batch=on_batch)
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()  # a parser stopped halfway cleans up while its stream is still open
    except ObjectNotFound:
        raise IngestFailed(f"s3_path {s3_path!r} not found in your tenant's folder") from None
    except SourceFileError as exc:
        raise IngestFailed(f"{s3_path}: {exc}") from None
    with tenant_session(tenant_id, db=db) as session:
        files.remember(session.connection(), target, counts, s3_path=s3_path, version=version, parser=parser)
    logger.info("ingested %s: %s", s3_path, counts.as_result(),
                extra={"job_id": job_id, "tenant_id": tenant_id})
    return Ingested(counts)


class _Prepended:
    """A stream whose first bytes were already read: those, then the rest."""

    def __init__(self, first: bytes, rest: BinaryIO) -> None:
        self.first = first
        self.rest = rest

    def read(self, size: int = -1) -> bytes:
        if self.first:
            if size is None or size < 0:
                data, self.first = self.first + self.rest.read(), b""
                return data
            data, self.first = self.first[:size], self.first[size:]
            return data
        return self.rest.read(size)
