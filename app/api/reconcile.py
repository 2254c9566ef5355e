"""Reconciliation: ``/enqueue/reconcile``, ``/reconciliations`` (breaks) and ``/reconciliation-runs/{id}``."""
from __future__ import annotations

from decimal import Decimal as Exact

from apiflask import APIBlueprint, Schema
from apiflask.fields import Date, DateTime, Decimal, Dict, Integer, String
from apiflask.validators import Length, OneOf, Range
from flask import current_app

from app.downloads import csv_download
from app.api.guards import tenant_user_required
from app.api.jobs import accepted, idempotency_key
from app.api.pagination import PageIn, page, page_of
from app.reconcile import service
from app.reconcile.models import BREAK_STATUSES, MISMATCH_TYPES, RUN_STATES
from app.scheduling.models import PRIORITIES
from app.tenancy.identity import current_identity, request_session
from app.tenancy.service import require_same_tenant

bp = APIBlueprint("reconcile", __name__, tag="Reconciliation")


class ReconcileIn(Schema):
    tenant_id = String(validate=Length(min=1, max=64), metadata={"description": "must be your token's"})
    source = String(required=True, validate=Length(min=1, max=64),
                    metadata={"description": "an installed source with matching rules: UPI, NEFT, IMPS, RTGS, ..."})
    from_ = Date(required=True, data_key="from", metadata={"description": "first day of the period (ISO date)"})
    to = Date(required=True, metadata={"description": "last day of the period, included"})
    amount_tolerance = Decimal(load_default=Exact("0.00"), validate=Range(min=0, max=10**9),
                               metadata={"description": "largest absolute amount difference that still matches "
                                                        "(default 0.00)"})
    date_tolerance_hours = Integer(load_default=48, validate=Range(min=0, max=24 * 60))
    priority = String(load_default="normal", validate=OneOf(list(PRIORITIES)))


class ReconcileAccepted(Schema):
    job_id = Integer()
    run_id = Integer()
    state = String()


class BreakOut(Schema):
    id = Integer()
    run_id = Integer(allow_none=True)
    first_run_id = Integer(allow_none=True)
    source = String(allow_none=True)
    mismatch_type = String(metadata={"enum": list(MISMATCH_TYPES)})
    status = String(metadata={"enum": list(BREAK_STATUSES)})
    rule = String(allow_none=True)
    internal_txn_id = String(allow_none=True)
    external_txn_id = String(allow_none=True)
    internal_amount = Decimal(as_string=True, allow_none=True)
    external_amount = Decimal(as_string=True, allow_none=True)
    internal_time = DateTime(allow_none=True)
    external_time = DateTime(allow_none=True)
    internal_status = String(allow_none=True)
    external_status = String(allow_none=True)
    notes = String(allow_none=True)
    created_at = DateTime()
    updated_at = DateTime(allow_none=True)


BreakPage = page_of(BreakOut, "Break")


class BreakQuery(PageIn):
    run_id = Integer(metadata={"description": "breaks the run changed: found new, found changed or again, resolved"})
    mismatch_type = String(validate=OneOf(MISMATCH_TYPES))
    status = String(validate=OneOf(BREAK_STATUSES))
    source = String(validate=Length(max=32))
    format = String(load_default="json", validate=OneOf(["json", "csv"]))


class RunOut(Schema):
    id = Integer()
    job_id = Integer(allow_none=True)
    source = String()
    period_from = Date(data_key="from")
    period_to = Date(data_key="to")
    amount_tolerance = Decimal(as_string=True)
    date_tolerance_hours = Integer()
    state = String(metadata={"enum": list(RUN_STATES)})
    summary = Dict(allow_none=True, metadata={"description": "counts per outcome, matched count and amount, "
                                                             "unmatched amount on each side, new / persisting / resolved"})
    created_at = DateTime()
    finished_at = DateTime(allow_none=True)


def _settings():
    return current_app.config["FAIRQ_SETTINGS"]


@bp.post("/enqueue/reconcile")
@tenant_user_required
@bp.input(ReconcileIn, arg_name="body")
@bp.output(ReconcileAccepted, status_code=202)
@bp.doc(
    summary="Reconcile your ledger against the bank / switch files of a period",
    description="Answers 202 with the job id, the run id and a `Location` to follow the job; read the outcome "
                "at `/reconciliation-runs/{run_id}` and `/reconciliations?run_id=`. Send an `Idempotency-Key` "
                "header to make retries safe.",
    security="BearerAuth",
    responses={400: "An unknown source, from after to, a bad tolerance", 403: "Another tenant's id",
               429: "Over a quota of the plan"},
)
def enqueue_reconcile(body):
    require_same_tenant(current_identity(), body.get("tenant_id"))
    session = request_session()
    job, run, created = service.enqueue_reconcile(
        session, _settings(), source=body["source"], period_from=body["from_"], period_to=body["to"],
        amount_tolerance=body["amount_tolerance"],
        date_tolerance_hours=body["date_tolerance_hours"], priority=body["priority"],
        idempotency_key=idempotency_key(),
    )
    session.commit()
    answer, status, headers = accepted(job, created)
    return {**answer, "run_id": run.id}, status, headers


@bp.get("/reconciliations")
@tenant_user_required
@bp.input(BreakQuery, location="query", arg_name="query")
@bp.output(BreakPage)
@bp.doc(
    summary="Your tenant's reconciliation breaks, newest first",
    description="`notes` says in plain words which rule fired, and both amounts, dates and statuses. "
                "`format=csv` downloads every match as CSV (cells escaped against formula injection).",
    security="BearerAuth",
)
def list_breaks(query):
    tenant_id = current_identity().tenant_id
    where = service.BreakFilter(**{name: query.get(name) for name in ("run_id", "mismatch_type", "status", "source")})
    if query["format"] == "csv":
        return csv_download(tenant_id, lambda session: service.export_csv(session, where), "reconciliations.csv")
    items = service.search(request_session(), where, after=query.get("after"), limit=query["limit"])
    return page(items, limit=query["limit"])


@bp.get("/reconciliation-runs/<int:run_id>")
@tenant_user_required
@bp.output(RunOut)
@bp.doc(summary="One reconciliation run: its period, state and summary", security="BearerAuth",
        responses={404: "No such run"})
def get_run(run_id: int):
    return service.get_run(request_session(), run_id)
