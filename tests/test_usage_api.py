"""Usage per day and kind: /usage for a tenant, /admin/usage for operators."""
from datetime import timedelta

from app.db import utcnow
from app.scheduling.store import add_usage
from app.tenancy import service
from app.tenancy.scoping import system_session
from tests.helpers import PASSWORD, login, sign_up


def record(tenant, kind, day, **amounts):
    with system_session() as session:
        add_usage(session.connection(), tenant_id=tenant, kind=kind, day=day, **amounts)


def test_a_tenant_sees_its_own_usage_per_day_and_month(client):
    a = sign_up(client, "acme")
    sign_up(client, "globex")
    today = utcnow().date()
    record("acme", "noop", today, jobs=3, run_seconds=1.5)
    record("acme", "noop", today - timedelta(days=1), jobs=2, run_seconds=0.5)
    record("globex", "noop", today, jobs=99)
    daily = client.get("/usage", headers=a.headers).get_json()["items"]
    assert {(row["period"], row["jobs"]) for row in daily} == {
        (today.isoformat(), 3), ((today - timedelta(days=1)).isoformat(), 2)
    }
    assert all(row["tenant_id"] == "acme" for row in daily)
    start = (today - timedelta(days=1)).isoformat()
    monthly = client.get(f"/usage?granularity=month&from={start}", headers=a.headers).get_json()["items"]
    assert sum(row["jobs"] for row in monthly) == 5


def test_enqueued_jobs_are_metered(client):
    a = sign_up(client, "acme")
    for _ in range(3):
        assert client.post("/jobs", json={"kind": "noop"}, headers=a.headers).status_code == 202
    rows = client.get("/usage", headers=a.headers).get_json()["items"]
    assert [(r["kind"], r["jobs"]) for r in rows] == [("noop", 3)]


def test_bad_ranges_are_400(client):
    a = sign_up(client, "acme")
    assert client.get("/usage?from=2026-11-10&to=2026-11-01", headers=a.headers).status_code == 400
    assert client.get("/usage?from=2020-01-01&to=2026-11-01", headers=a.headers).status_code == 400
    assert client.get("/usage?granularity=week", headers=a.headers).status_code == 400


def test_operators_see_every_tenant_and_tenants_do_not(client):
    a = sign_up(client, "acme")
    sign_up(client, "globex")
    today = utcnow().date()
    record("acme", "noop", today, jobs=1)
    record("globex", "noop", today, jobs=2)
    assert client.get("/admin/usage", headers=a.headers).status_code == 403
    service.create_operator(client.application.config["FAIRQ_SETTINGS"], email="o@f.example", password=PASSWORD)
    ops = login(client, "_platform", "o@f.example")
    everyone = client.get("/admin/usage", headers=ops.headers).get_json()["items"]
    assert {(r["tenant_id"], r["jobs"]) for r in everyone} == {("acme", 1), ("globex", 2)}
    one = client.get("/admin/usage?tenant=globex", headers=ops.headers).get_json()["items"]
    assert [(r["tenant_id"], r["jobs"]) for r in one] == [("globex", 2)]
