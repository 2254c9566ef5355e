"""Ingest: ``/files`` (upload), ``/enqueue/ingest``, and ``/jobs/{id}/errors`` (rows not loaded)."""
from __future__ import annotations

import functools

from apiflask import APIBlueprint, FileSchema, Schema
from apiflask.fields import Boolean, File, Integer, String
from apiflask.validators import Length, OneOf
from flask import Response, current_app, request

from app.api.guards import tenant_user_required
from app.api.jobs import Accepted, accepted, idempotency_key
from app.errors import ServiceError
from app.ingest import rejects, service
from app.ingest.models import LEDGERS
from app.scheduling.models import PRIORITIES
from app.tenancy.identity import current_identity, request_session
from app.tenancy.service import require_same_tenant

bp = APIBlueprint("ingest", __name__, tag="Ingest")


class UploadIn(Schema):
    file = File(required=True, metadata={"description": "the file (multipart/form-data field `file`)"})


class UploadOut(Schema):
    s3_path = String(metadata={"description": "the file's path relative to your tenant's folder"})
    size = Integer(metadata={"description": "bytes stored"})


class IngestIn(Schema):
    tenant_id = String(validate=Length(min=1, max=64), metadata={"description": "must be your token's"})
    s3_path = String(required=True, validate=Length(min=1, max=1024),
                     metadata={"description": "relative to your tenant's folder, e.g. upi_sample.csv"})
    source = String(required=True, validate=Length(min=1, max=64),
                    metadata={"description": "an installed source, any case: UPI, NEFT, IMPS, RTGS, ..."})
    priority = String(load_default="normal", validate=OneOf(list(PRIORITIES)))
    ledger = String(load_default="external", validate=OneOf(LEDGERS),
                    metadata={"description": "external: a bank / switch file; internal: your own ledger"})
    force = Boolean(load_default=False,
                    metadata={"description": "read the file even if this exact file was ingested before "
                                             "(otherwise it is recognised and not read again)"})


def _settings():
    return current_app.config["FAIRQ_SETTINGS"]


def upload_limit(view):
    """Let this view's request body be as large as ``FAIRQ_MAX_UPLOAD_BYTES`` (413 beyond)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        limit = _settings().max_upload_bytes
        request.max_content_length = limit
        if request.content_length is not None and request.content_length > limit:
            raise ServiceError(f"the upload is larger than the limit of {limit} bytes",
                               slug="payload-too-large", status=413, limit=limit)
        return view(*args, **kwargs)

    return wrapper


@bp.post("/files")
@tenant_user_required
@upload_limit
@bp.input(UploadIn, location="files", arg_name="body")
@bp.output(UploadOut, status_code=201)
@bp.doc(
    summary="Upload a transaction file",
    description="Stored under your tenant's `uploads/` folder; pass the answer's `s3_path` to "
                "`POST /enqueue/ingest`. Larger than `FAIRQ_MAX_UPLOAD_BYTES`: 413.",
    security="BearerAuth",
    responses={400: "No file, or an empty one", 413: "Larger than the upload limit"},
)
def upload_file(body):
    uploaded = body["file"]
    path, size = service.upload(_settings(), current_identity().tenant_id, uploaded.stream, uploaded.filename)
    return {"s3_path": path, "size": size}


@bp.post("/enqueue/ingest")
@tenant_user_required
@bp.input(IngestIn, arg_name="body")
@bp.output(Accepted, status_code=202)
@bp.doc(
    summary="Ingest a file of your tenant's folder",
    description="Answers 202 with the job id and a `Location` to follow it; its result counts the rows "
                "read, loaded, duplicates, conflicts and rejected. Send an `Idempotency-Key` header to "
                "make retries safe.",
    security="BearerAuth",
    responses={400: "A bad path or an unknown source", 403: "Another tenant's id or folder",
               429: "Over the rows quota of the plan"},
)
def enqueue_ingest(body):
    require_same_tenant(current_identity(), body.get("tenant_id"))
    session = request_session()
    job, created = service.enqueue_ingest(
        session, _settings(), s3_path=body["s3_path"], source=body["source"], ledger=body["ledger"],
        priority=body["priority"], force=body["force"], idempotency_key=idempotency_key(),
    )
    session.commit()
    return accepted(job, created)


@bp.get("/jobs/<int:job_id>/errors")
@tenant_user_required
@bp.output(FileSchema(type="string", format="binary"), content_type="text/csv",
           description="line, kind (rejected or conflict), reason, raw")
@bp.doc(
    summary="The rows of an ingest job that were not loaded, as CSV",
    description="Cells that start like a spreadsheet formula (`=`, `+`, `-`, `@`) get a leading `'`.",
    security="BearerAuth",
    responses={404: "No such ingest job"},
)
def job_errors(job_id: int):
    chunks = rejects.export_csv(request_session(), job_id)
    return Response(
        chunks,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="job-{job_id}-errors.csv"'},
    )
