"""A tenant's transactions: ``GET /transactions`` (JSON pages, or CSV with ``format=csv``)."""
from __future__ import annotations

from apiflask import APIBlueprint, Schema
from apiflask.fields import Date, DateTime, Decimal, Integer, String
from apiflask.validators import Length, OneOf

from app.downloads import csv_download
from app.api.guards import tenant_user_required
from app.api.pagination import PageIn, page, page_of
from app.ingest import transactions
from app.ingest.models import LEDGERS
from app.tenancy.identity import current_identity
from app.tenancy.scoping import tenant_session

bp = APIBlueprint("transactions", __name__, tag="Ingest")


class TransactionOut(Schema):
    id = Integer()
    ledger = String()
    source = String()
    txn_id = String()
    reference = String(allow_none=True)
    txn_time = DateTime(allow_none=True)
    amount = Decimal(as_string=True)
    currency = String()
    direction = String(allow_none=True)
    status = String(allow_none=True)
    counterparty = String(allow_none=True)
    ifsc = String(allow_none=True)
    settlement_date = Date(allow_none=True)


TransactionPage = page_of(TransactionOut, "Transaction")


class TransactionQuery(PageIn):
    source = String(validate=Length(max=32))
    ledger = String(validate=OneOf(LEDGERS))
    status = String(validate=OneOf(["SUCCESS", "FAILED", "PENDING", "success", "failed", "pending"]))
    since = DateTime(metadata={"description": "transactions at or after (ISO 8601)"})
    until = DateTime(metadata={"description": "transactions before (ISO 8601)"})
    min_amount = Decimal()
    max_amount = Decimal()
    reference_id = String(validate=Length(max=64))
    txn_id = String(validate=Length(max=64))
    format = String(load_default="json", validate=OneOf(["json", "csv"]))


def _filter(query) -> transactions.TransactionFilter:
    names = ("source", "ledger", "status", "since", "until", "min_amount", "max_amount", "reference_id", "txn_id")
    return transactions.TransactionFilter(**{name: query.get(name) for name in names})


@bp.get("/transactions")
@tenant_user_required
@bp.input(TransactionQuery, location="query", arg_name="query")
@bp.output(TransactionPage)
@bp.doc(
    summary="Your tenant's transactions, newest first",
    description="`format=csv` downloads every match as CSV (cells escaped against formula injection).",
    security="BearerAuth",
)
def list_transactions(query):
    tenant_id = current_identity().tenant_id
    where = _filter(query)
    if query["format"] == "csv":
        return csv_download(tenant_id, lambda session: transactions.export_csv(session, where), "transactions.csv")
    with tenant_session(tenant_id) as session:
        items = transactions.search(session, where, after=query.get("after"), limit=query["limit"])
    return page(items, limit=query["limit"])
