"""Usage: ``/usage`` (your tenant) and ``/admin/usage`` (operators, every tenant), as JSON or CSV."""
from __future__ import annotations

from datetime import date, timedelta

from apiflask import APIBlueprint, Schema
from flask import Response
from apiflask.fields import Date, Float, Integer, List, Nested, String
from apiflask.validators import Length, OneOf

from app.api.guards import operator_required, tenant_user_required
from app.db import utcnow
from app.quota import usage
from app.tenancy.identity import request_session
from app.tenancy.scoping import system_session, tenant_session

bp = APIBlueprint("usage", __name__, tag="Usage")


class UsageQuery(Schema):
    from_ = Date(data_key="from", metadata={"description": "first day (default: 30 days ago)"})
    to = Date(metadata={"description": "last day, inclusive (default: today)"})
    granularity = String(load_default="day", validate=OneOf(usage.GRANULARITIES))
    format = String(load_default="json", validate=OneOf(["json", "csv"]),
                    metadata={"description": "`csv` downloads the report as CSV"})


class AdminUsageQuery(UsageQuery):
    tenant = String(validate=Length(max=64))


class UsageRow(Schema):
    period = String()
    tenant_id = String()
    kind = String()
    jobs = Integer()
    run_seconds = Float()
    rows = Integer()
    messages = Integer()
    failures = Integer()


class UsageOut(Schema):
    items = List(Nested(UsageRow))


def _range(query) -> tuple[date, date]:
    end = query.get("to") or utcnow().date()
    return query.get("from_") or end - timedelta(days=30), end


def _answer(items: list[dict], query, name: str):
    if query["format"] == "csv":
        return Response(usage.to_csv(items), mimetype="text/csv",
                        headers={"Content-Disposition": f"attachment; filename={name}.csv"})
    return {"items": items}


@bp.get("/usage")
@tenant_user_required
@bp.input(UsageQuery, location="query", arg_name="query")
@bp.output(UsageOut)
@bp.doc(summary="Your tenant's usage per day or month and job kind", security="BearerAuth",
        description="From the durable usage records; `format=csv` for a CSV file.")
def own_usage(query):
    start, end = _range(query)
    items = usage.report(request_session(), start=start, end=end, granularity=query["granularity"])
    return _answer(items, query, "usage")


@bp.get("/admin/usage")
@operator_required
@bp.input(AdminUsageQuery, location="query", arg_name="query")
@bp.output(UsageOut)
@bp.doc(summary="Every tenant's usage (or one tenant's)", tags=["Admin"], security="BearerAuth",
        description="`format=csv` for a CSV file (what `fairq usage export` writes).")
def all_usage(query):
    start, end = _range(query)
    scope = tenant_session(query["tenant"]) if query.get("tenant") else system_session()
    with scope as session:
        items = usage.report(session, start=start, end=end, granularity=query["granularity"])
    return _answer(items, query, "usage-all")
