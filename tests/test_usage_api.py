"""Usage per day and kind: /usage for a tenant, /admin/usage for operators, CSV, roll-ups, the export."""
import csv
import io
from datetime import date, timedelta

import sqlalchemy as sa

from app.db import utcnow
from app.quota.models import UsageDaily, UsageMonthly
from app.quota.rollups import final_months, roll_up
from app.scheduling.store import add_usage
from app.tenancy import service
from app.tenancy.scoping import system_session
from tests.conftest import run_fairq
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


# -- CSV, monthly roll-ups, the billing export -------------------------------------------------

def operator(client):
    service.create_operator(client.application.config["FAIRQ_SETTINGS"], email="o@f.example", password=PASSWORD)
    return login(client, "_platform", "o@f.example")


def parse_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_usage_as_csv_for_a_tenant_and_for_operators(client):
    a, b = sign_up(client, "acme"), sign_up(client, "globex")
    today = utcnow().date()
    record("acme", "noop", today, jobs=3, run_seconds=1.25, rows=7)
    record("globex", "ingest", today, jobs=1, rows=100)
    response = client.get("/usage?format=csv", headers=a.headers)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = parse_csv(response.get_data(as_text=True))
    assert rows == [{"period": today.isoformat(), "tenant_id": "acme", "kind": "noop", "jobs": "3",
                     "run_seconds": "1.25", "rows": "7", "messages": "0", "failures": "0"}]
    # the other tenant's token: its own usage only, never acme's
    other = parse_csv(client.get("/usage?format=csv", headers=b.headers).get_data(as_text=True))
    assert [(r["tenant_id"], r["kind"]) for r in other] == [("globex", "ingest")]
    assert client.get("/admin/usage?format=csv", headers=a.headers).status_code == 403
    everyone = parse_csv(client.get("/admin/usage?format=csv&granularity=month",
                                    headers=operator(client).headers).get_data(as_text=True))
    assert {(r["period"], r["tenant_id"], r["rows"]) for r in everyone} == {
        (today.strftime("%Y-%m"), "acme", "7"), (today.strftime("%Y-%m"), "globex", "100")}


def test_bad_usage_queries_are_validation_problems(client):
    a = sign_up(client, "acme")
    for query in ("from=2026-11-10&to=2026-11-01", "granularity=week", "format=xml", "from=yesterday"):
        response = client.get(f"/usage?{query}", headers=a.headers)
        assert response.status_code == 400 and response.mimetype == "application/problem+json", query
        assert response.get_json()["type"] == "/problems/validation-error"


def test_months_with_a_final_roll_up_are_read_from_it(client):
    a = sign_up(client, "acme")
    sign_up(client, "globex")
    record("acme", "noop", date(2026, 9, 3), jobs=2, run_seconds=1.0)
    record("acme", "noop", date(2026, 9, 30), jobs=5, messages=4)
    record("globex", "noop", date(2026, 9, 12), jobs=9)
    record("acme", "noop", date(2026, 10, 1), jobs=1)
    assert roll_up(date(2026, 9, 1)) == 2
    with system_session() as session:
        assert final_months(session, date(2026, 9, 1), date(2026, 10, 31)) == {date(2026, 9, 1)}
        assert final_months(session, date(2026, 9, 2), date(2026, 10, 31)) == set()  # September not whole
        # the daily rows of September go (archived, say): reports by month still have them
        session.execute(sa.delete(UsageDaily).where(UsageDaily.day < date(2026, 10, 1)))
    items = client.get("/usage?granularity=month&from=2026-09-01&to=2026-10-31", headers=a.headers).get_json()["items"]
    assert [(i["period"], i["jobs"], i["messages"], i["run_seconds"]) for i in items] == [
        ("2026-09", 7, 4, 1.0), ("2026-10", 1, 0, 0.0)]


def test_a_roll_up_taken_before_the_month_ended_is_not_final(client):
    this_month = utcnow().date().replace(day=1)
    record("acme", "noop", this_month, jobs=1)
    roll_up(this_month)
    with system_session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(UsageMonthly)) == 1
        assert final_months(session, this_month, this_month.replace(day=28) + timedelta(days=4)) == set()


def test_fairq_usage_export_writes_a_month_as_csv(client, tmp_path):
    sign_up(client, "acme")
    sign_up(client, "globex")
    record("acme", "noop", date(2026, 11, 2), jobs=4, rows=10)
    record("acme", "noop", date(2026, 11, 20), jobs=1)
    record("globex", "ingest", date(2026, 11, 30), rows=5)
    record("acme", "noop", date(2026, 12, 1), jobs=100)  # another month
    result = run_fairq("usage", "export", "--month", "2026-11")
    assert result.returncode == 0, result.stderr
    assert {(r["period"], r["tenant_id"], r["kind"], r["jobs"], r["rows"]) for r in parse_csv(result.stdout)} == {
        ("2026-11", "acme", "noop", "5", "10"), ("2026-11", "globex", "ingest", "0", "5")}
    target = tmp_path / "acme.csv"
    assert run_fairq("usage", "export", "--month", "2026-11", "--tenant", "acme", "-o", str(target)).returncode == 0
    assert [r["tenant_id"] for r in parse_csv(target.read_text())] == ["acme"]
    bad = run_fairq("usage", "export", "--month", "November")
    assert bad.returncode == 2 and "not a month like 2026-11" in bad.stderr


def test_a_redis_flush_loses_no_billable_usage(client, real_settings):
    import redis

    a = sign_up(client, "acme")
    for _ in range(2):
        assert client.post("/jobs", json={"kind": "noop"}, headers=a.headers).status_code == 202
    redis.Redis.from_url(real_settings.redis_url).flushdb()
    rows = client.get("/usage", headers=a.headers).get_json()["items"]
    assert [(r["kind"], r["jobs"]) for r in rows] == [("noop", 2)]


def test_the_hourly_roll_up_covers_this_month_and_the_last(client):
    from app.quota.rollups import roll_up_usage

    today = utcnow().date()
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    record("acme", "noop", today, jobs=2)
    record("acme", "noop", last_month, jobs=3)
    assert "periodic" in roll_up_usage.options
    roll_up_usage()  # the actor's function, called directly
    with system_session() as session:
        rolled = dict(session.execute(sa.select(UsageMonthly.month, UsageMonthly.jobs)).all())
    assert rolled == {today.replace(day=1): 2, last_month: 3}
