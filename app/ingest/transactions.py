"""Reading a tenant's transactions: filters, keyset pages, CSV export."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.ingest.models import FintechTransaction as Txn
from app.csv_export import stream_csv

__all__ = ["TransactionFilter", "search", "export_csv", "CSV_COLUMNS"]

#: The columns of a transactions CSV export, in order.
CSV_COLUMNS = ("id", "ledger", "source", "txn_id", "reference", "txn_time", "amount", "currency", "direction",
               "status", "counterparty", "ifsc", "settlement_date")


@dataclass(frozen=True)
class TransactionFilter:
    """What to look for; ``None`` matches everything."""

    source: str | None = None
    ledger: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_amount: Decimal | None = None
    max_amount: Decimal | None = None
    reference_id: str | None = None
    txn_id: str | None = None

    def apply(self, query: sa.Select) -> sa.Select:
        checks = [
            (self.source, lambda v: Txn.source == v.upper()),
            (self.ledger, lambda v: Txn.ledger == v),
            (self.status, lambda v: Txn.status == v.upper()),
            (self.since, lambda v: Txn.txn_time >= v),
            (self.until, lambda v: Txn.txn_time < v),
            (self.min_amount, lambda v: Txn.amount >= v),
            (self.max_amount, lambda v: Txn.amount <= v),
            (self.reference_id, lambda v: Txn.reference == v),
            (self.txn_id, lambda v: Txn.txn_id == v),
        ]
        for value, clause in checks:
            if value is not None:
                query = query.where(clause(value))
        return query


def search(session: Session, where: TransactionFilter, *, after: int | None = None, limit: int = 50) -> list[Txn]:
    """A page of the session tenant's transactions, newest first (``after``: the last id seen)."""
    query = where.apply(sa.select(Txn)).order_by(Txn.id.desc()).limit(limit)
    if after is not None:
        query = query.where(Txn.id < after)
    return list(session.scalars(query))


def export_csv(session: Session, where: TransactionFilter, *, page: int = 5000) -> Iterator[str]:
    """Every matching transaction as CSV, streamed page by page; cells escaped against formula injection."""
    return stream_csv(CSV_COLUMNS, lambda after, limit: search(session, where, after=after, limit=limit), page=page)
