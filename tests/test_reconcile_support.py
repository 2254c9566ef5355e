"""Helpers of the reconciliation tests (no test here): rows on each side, a run, its breaks."""
from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

#: The period of the hand-written fixtures (the issue's example), and a "now" well after it.
FROM, TO = date(2026, 11, 1), date(2026, 11, 7)
LATER = datetime(2026, 11, 20, tzinfo=UTC)
#: A 12-digit RRN from a number.
RRN = "5{:011d}".format


def at(day: int, hour: int = 10, minute: int = 0) -> datetime:
    """A time in November 2026, UTC."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


@pytest.fixture(params=["postgresql", "sqlite"])
def backend(request):
    """Each test on the real path (PostgreSQL, row-level security) and on the embedded SQLite path."""
    request.getfixturevalue("db" if request.param == "postgresql" else "sqlite_app")
    return request.param


def tenant(tenant_id: str = "acme") -> str:
    from app.tenancy import service

    service.create_tenant(tenant_id)
    return tenant_id


def add(tenant_id: str, ledger: str, txn_id: str, amount: str, *, reference: str | None = None, when=None,
        status: str = "SUCCESS", direction: str | None = "CR", counterparty: str | None = None,
        settlement_date: date | None = None, source: str = "UPI") -> None:
    """One row of a tenant's ledger (``internal``) or bank / switch file (``external``)."""
    from app.ingest.models import FintechTransaction
    from app.tenancy.scoping import tenant_session

    with tenant_session(tenant_id) as session:
        session.add(FintechTransaction(
            tenant_id=tenant_id, ledger=ledger, txn_id=txn_id, amount=Decimal(amount), reference=reference,
            txn_time=when or at(3), status=status, direction=direction, counterparty=counterparty,
            settlement_date=settlement_date, source=source, raw_row={},
        ))


def both(tenant_id: str, txn_id: str, amount: str, **fields) -> None:
    """The same payment in the ledger and in the bank file."""
    add(tenant_id, "internal", txn_id, amount, **fields)
    add(tenant_id, "external", txn_id, amount, **fields)


def reconcile(tenant_id: str = "acme", *, source: str = "UPI", period=(FROM, TO), tolerance: str = "0.00",
              hours: int = 48, now: datetime = LATER) -> tuple[int, dict]:
    """Enqueue a run as the API does and run it here, as the job would; returns its id and summary."""
    from app import tasks  # noqa: F401  (the job kinds)
    from app.reconcile import service
    from app.settings import get_settings
    from app.tenancy.scoping import tenant_session

    settings = get_settings()
    with tenant_session(tenant_id) as session:
        _job, run, _created = service.enqueue_reconcile(
            session, settings, source=source, period_from=period[0], period_to=period[1],
            amount_tolerance=Decimal(tolerance), date_tolerance_hours=hours)
        run_id = run.id
    return run_id, service.run_reconciliation(settings, tenant_id=tenant_id, run_id=run_id, now=now)


def breaks(tenant_id: str = "acme", **where) -> list:
    """The tenant's breaks (``where``: column equals value), in id order."""
    from app.reconcile.models import Reconciliation
    from app.tenancy.scoping import tenant_session

    with tenant_session(tenant_id) as session:
        query = sa.select(Reconciliation).order_by(Reconciliation.id)
        for name, value in where.items():
            query = query.where(getattr(Reconciliation, name) == value)
        return list(session.scalars(query))


def kinds(tenant_id: str = "acme", **where) -> list[tuple]:
    """(type, internal txn id, external txn id) of each break, sorted."""
    return sorted(((b.mismatch_type, b.internal_txn_id, b.external_txn_id) for b in breaks(tenant_id, **where)),
                  key=lambda k: tuple(part or "" for part in k))
