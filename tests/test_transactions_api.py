"""GET /transactions: tenant-scoped, filtered, paged, and as CSV escaped against formula injection."""
from datetime import UTC, datetime
from decimal import Decimal

from app.ingest.models import FintechTransaction
from app.tenancy.scoping import tenant_session
from tests.helpers import sign_up


def add(tenant_id, txn_id, amount, *, ledger="external", status="SUCCESS", reference=None, source="UPI",
        counterparty=None, when=datetime(2026, 11, 3, 10, tzinfo=UTC)):
    with tenant_session(tenant_id) as session:
        session.add(FintechTransaction(
            tenant_id=tenant_id, txn_id=txn_id, amount=Decimal(amount), ledger=ledger, status=status,
            reference=reference, source=source, counterparty=counterparty, txn_time=when, raw_row={},
        ))


def test_filters_and_pages(client):
    a = sign_up(client, "acme")
    add("acme", "T1", "10.00", reference="111111111111")
    add("acme", "T2", "250.50", status="PENDING")
    add("acme", "T2", "250.50", ledger="internal", status="SUCCESS")
    add("acme", "T3", "99.99", when=datetime(2026, 11, 9, tzinfo=UTC))
    get = lambda q: client.get(f"/transactions?{q}", headers=a.headers).get_json()  # noqa: E731
    assert [t["txn_id"] for t in get("limit=10")["items"]] == ["T3", "T2", "T2", "T1"]
    assert [t["ledger"] for t in get("txn_id=T2")["items"]] == ["internal", "external"]
    assert [t["txn_id"] for t in get("status=pending")["items"]] == ["T2"]
    assert [t["txn_id"] for t in get("min_amount=50&max_amount=100")["items"]] == ["T3"]
    assert [t["txn_id"] for t in get("reference_id=111111111111")["items"]] == ["T1"]
    assert [t["txn_id"] for t in get("until=2026-11-05T00:00:00Z&ledger=external")["items"]] == ["T2", "T1"]
    assert get("txn_id=T1")["items"][0]["amount"] == "10.00"
    first = get("limit=2")
    rest = get(f"limit=2&after={first['next']}")
    assert [t["txn_id"] for t in first["items"] + rest["items"]] == ["T3", "T2", "T2", "T1"]
    assert client.get("/transactions?ledger=bogus", headers=a.headers).status_code == 400


def test_another_tenant_sees_none_of_them(client):
    a = sign_up(client, "acme")
    add("acme", "T1", "10.00")
    b = sign_up(client, "globex")
    assert client.get("/transactions", headers=b.headers).get_json()["items"] == []
    assert client.get("/transactions?txn_id=T1&format=csv", headers=b.headers).get_data(as_text=True).count("\n") == 1
    assert len(client.get("/transactions", headers=a.headers).get_json()["items"]) == 1


def test_csv_export_escapes_formulas(client):
    a = sign_up(client, "acme")
    add("acme", "T1", "10.00", counterparty="=HYPERLINK(\"http://x\")")
    response = client.get("/transactions?format=csv", headers=a.headers)
    assert response.mimetype == "text/csv"
    text = response.get_data(as_text=True)
    assert text.splitlines()[0].startswith("id,ledger,source,txn_id")
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text
