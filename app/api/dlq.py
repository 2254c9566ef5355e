"""Operator endpoints for dead letters: ``/admin/dlq``."""
from __future__ import annotations

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, Dict, Integer, List, String
from apiflask.validators import Length, Range
from flask import current_app

from app.api.guards import operator_required
from app.api.jobs import JobOut
from app.api.pagination import page_of
from app.errors import NotFound
from app.scheduling import dlq

bp = APIBlueprint("dlq", __name__, url_prefix="/admin/dlq", tag="Admin")


class DeadJob(JobOut):
    """A dead job (operators see every tenant's)."""


class DeadJobDetail(DeadJob):
    """One dead job in full, as ``fairq dlq show`` prints it: with what it was asked to do."""

    payload = Dict(metadata={"description": "the job's input, as enqueued (a replay runs it again)"})
    queue = String(allow_none=True, metadata={"description": "the broker queue it died in (none: its kind's)"})


DeadPage = page_of(DeadJob, "DeadJob")


class DeadQuery(Schema):
    tenant = String(validate=Length(max=64))
    kind = String(validate=Length(max=64))
    after = Integer()
    limit = Integer(load_default=100, validate=Range(min=1, max=1000))


class Selection(Schema):
    tenant = String(validate=Length(max=64))
    kind = String(validate=Length(max=64))
    job_ids = List(Integer(), load_default=list)
    all = Boolean(load_default=False, metadata={"description": "every dead job, when no filter is given"})


class Outcome(Schema):
    job_ids = List(Integer())


class _Row:
    """Attribute access over a row mapping, for the JobOut schema."""

    def __init__(self, mapping: dict) -> None:
        self.__dict__.update(mapping)


def _selection(body) -> dlq.DeadFilter:
    return dlq.DeadFilter(tenant_id=body.get("tenant"), kind=body.get("kind"), job_ids=tuple(body["job_ids"]))


@bp.get("")
@operator_required
@bp.input(DeadQuery, location="query", arg_name="query")
@bp.output(DeadPage)
@bp.doc(summary="Dead jobs of every tenant, newest first", security="BearerAuth")
def list_dead(query):
    rows = dlq.list_dead(dlq.DeadFilter(tenant_id=query.get("tenant"), kind=query.get("kind")),
                         after=query.get("after"), limit=query["limit"])
    return {"items": [_Row(r) for r in rows], "next": rows[-1]["id"] if len(rows) == query["limit"] else None}


@bp.get("/<int:job_id>")
@operator_required
@bp.output(DeadJobDetail)
@bp.doc(summary="One dead job, with its payload", security="BearerAuth", responses={404: "Not a dead job"})
def show_dead(job_id: int):
    rows = dlq.list_dead(dlq.DeadFilter(job_ids=(job_id,)), limit=1)
    if not rows:
        raise NotFound(f"job {job_id} is not in the dead-letter queue")
    return _Row(rows[0])


@bp.post("/replay")
@operator_required
@bp.input(Selection, arg_name="body")
@bp.output(Outcome)
@bp.doc(summary="Replay dead jobs through the fair scheduler", security="BearerAuth")
def replay(body):
    from app.tasks import broker

    return {"job_ids": dlq.replay(_selection(body), broker=broker, settings=current_app.config["FAIRQ_SETTINGS"],
                                  allow_all=body["all"])}


@bp.post("/purge")
@operator_required
@bp.input(Selection, arg_name="body")
@bp.output(Outcome)
@bp.doc(summary="Forget dead jobs for good", security="BearerAuth")
def purge(body):
    from app.tasks import broker

    return {"job_ids": dlq.purge(_selection(body), broker=broker, allow_all=body["all"])}
