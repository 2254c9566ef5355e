"""The benchmark's generated ledgers: every injected break is found, and nothing else (both paths)."""
from collections import Counter

from bench.gen_transactions import OUTCOMES, reconciliation_rows
from tests.test_reconcile_support import backend, breaks, reconcile, tenant  # noqa: F401


def load(tenant_id: str, rows) -> tuple:
    import sqlalchemy as sa

    from app.ingest.models import FintechTransaction
    from app.tenancy.scoping import tenant_session

    values = [{"tenant_id": tenant_id, "ledger": r.ledger, "txn_id": r.txn_id, "source": "UPI", "amount": r.amount,
               "status": r.status, "txn_time": r.when, "direction": r.direction, "reference": r.reference,
               "counterparty": r.counterparty, "raw_row": {}} for r in rows]
    with tenant_session(tenant_id) as session:
        session.execute(sa.insert(FintechTransaction), values)
    days = sorted(v["txn_time"] for v in values)
    return days[0].date(), days[-1].date()


def test_generated_breaks_are_found_with_full_precision_and_recall(backend):
    t = tenant("bench")
    rows, expected = reconciliation_rows(1500, breaks=0.01, seed=3)
    first, last = load(t, list(rows))
    assert set(Counter(b["type"] for b in expected)) == set(OUTCOMES)  # every outcome is injected
    _run, summary = reconcile(t, period=(first, last), hours=48)
    want = {(b["type"], b["internal_txn_id"], b["external_txn_id"]) for b in expected}
    got = {(b.mismatch_type, b.internal_txn_id, b.external_txn_id) for b in breaks(t)}
    assert got == want
    assert summary["total_breaks"] == len(want)
