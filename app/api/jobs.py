"""A tenant's jobs: ``/jobs`` (list, enqueue), ``/jobs/{id}``, ``/jobs/{id}/cancel``."""
from __future__ import annotations

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, DateTime, Dict, Float, Integer, Method, String
from apiflask.validators import Length, OneOf, Range
from flask import current_app, request, url_for

from app.api.guards import tenant_user_required
from app.api.pagination import PageIn, page, page_of
from app.errors import Invalid
from app.scheduling import jobs as job_service
from app.scheduling.models import PRIORITIES, PRIORITY_NAMES, STATES
from app.tenancy.identity import request_session

bp = APIBlueprint("jobs", __name__, tag="Jobs")


class JobOut(Schema):
    id = Integer()
    tenant_id = String()
    kind = String()
    state = String(metadata={"enum": list(STATES)})
    priority = Method("_priority", metadata={"enum": list(PRIORITIES)})
    attempts = Integer()
    max_retries = Integer()
    enqueued_at = DateTime()
    dispatched_at = DateTime(allow_none=True)
    started_at = DateTime(allow_none=True)
    finished_at = DateTime(allow_none=True)
    not_before = DateTime(allow_none=True)
    run_seconds = Float()
    cancel_requested = Boolean()
    last_error = String(allow_none=True)
    progress = Method("_progress")
    result = Dict(allow_none=True)

    def _priority(self, job) -> str:
        return PRIORITY_NAMES.get(job.priority, "normal")

    def _progress(self, job) -> dict:
        return {"done": job.progress_done, "total": job.progress_total, "message": job.progress_message}


JobPage = page_of(JobOut, "Job")


class JobQuery(PageIn):
    state = String(validate=OneOf(STATES))
    kind = String(validate=Length(max=64))


class EnqueueIn(Schema):
    kind = String(required=True, validate=Length(min=1, max=64))
    payload = Dict(load_default=dict)
    priority = String(load_default="normal", validate=OneOf(list(PRIORITIES)))
    cost = Float(validate=Range(min=0.0001, max=3600), metadata={"description": "expected seconds"})


class Accepted(Schema):
    job_id = Integer()
    state = String()


def _settings():
    return current_app.config["FAIRQ_SETTINGS"]


def accepted(job, created: bool):
    """The answer to an enqueue: 202 with the job id and a ``Location`` (200 if the key was seen before)."""
    location = url_for("jobs.get_job", job_id=job.id)
    return {"job_id": job.id, "state": job.state}, 202 if created else 200, {"Location": location}


def idempotency_key() -> str | None:
    """The request's ``Idempotency-Key`` header (at most 200 characters)."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 200:
        raise Invalid("Idempotency-Key must be 1 to 200 characters",
                      errors=[{"field": "Idempotency-Key", "message": "1 to 200 characters"}])
    return key


@bp.post("/jobs")
@tenant_user_required
@bp.input(EnqueueIn, arg_name="body")
@bp.output(Accepted, status_code=202)
@bp.doc(
    summary="Enqueue a job of a kind open to the API (e.g. noop)",
    description="Send an `Idempotency-Key` header to make retries safe: the same key returns the same job.",
    security="BearerAuth",
    responses={429: "Over a quota of the plan"},
)
def enqueue(body):
    job_service.require_api_kind(body["kind"])
    session = request_session()
    job, created = job_service.enqueue(
        session, _settings(), kind=body["kind"], payload=body["payload"], priority=body["priority"],
        cost=body.get("cost"), idempotency_key=idempotency_key(),
    )
    session.commit()
    return accepted(job, created)


@bp.get("/jobs")
@tenant_user_required
@bp.input(JobQuery, location="query", arg_name="query")
@bp.output(JobPage)
@bp.doc(summary="Your tenant's jobs, newest first", security="BearerAuth")
def list_jobs(query):
    items = job_service.list_jobs(
        request_session(), state=query.get("state"), kind=query.get("kind"),
        after=query.get("after"), limit=query["limit"],
    )
    return page(items, limit=query["limit"])


@bp.get("/jobs/<int:job_id>")
@tenant_user_required
@bp.output(JobOut)
@bp.doc(summary="One job: state, attempts, progress, result", security="BearerAuth", responses={404: "No such job"})
def get_job(job_id: int):
    return job_service.get_job(request_session(), job_id)


@bp.post("/jobs/<int:job_id>/cancel")
@tenant_user_required
@bp.output(JobOut)
@bp.doc(
    summary="Cancel a job",
    description="A waiting job never runs; a running one stops at its next checkpoint.",
    security="BearerAuth",
    responses={404: "No such job", 409: "Already finished"},
)
def cancel_job(job_id: int):
    session = request_session()
    job = job_service.cancel_job(session, job_id)
    session.commit()
    return job
