"""The jobs API on the real database: enqueue (outbox), idempotency, list, get, cancel, quotas."""
import pytest

from tests.helpers import assert_cross_tenant_404, sign_up


def enqueue(client, who, body=None, **headers):
    return client.post("/jobs", json=body or {"kind": "noop"}, headers={**who.headers, **headers})


def test_enqueue_answers_202_with_location(client):
    a = sign_up(client, "acme")
    response = enqueue(client, a, {"kind": "noop", "payload": {"sleep_ms": 1}, "priority": "high"})
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    assert response.headers["Location"] == f"/jobs/{job_id}"
    job = client.get(response.headers["Location"], headers=a.headers).get_json()
    assert job["state"] == "queued" and job["priority"] == "high" and job["tenant_id"] == "acme"
    assert job["max_retries"] == 3 and job["attempts"] == 0


def test_the_same_idempotency_key_returns_the_same_job(client):
    a = sign_up(client, "acme")
    first = enqueue(client, a, **{"Idempotency-Key": "batch-7"})
    again = enqueue(client, a, **{"Idempotency-Key": "batch-7"})
    assert first.status_code == 202 and again.status_code == 200
    assert first.get_json()["job_id"] == again.get_json()["job_id"]
    # another tenant's identical key is its own
    b = sign_up(client, "globex")
    assert enqueue(client, b, **{"Idempotency-Key": "batch-7"}).get_json()["job_id"] != first.get_json()["job_id"]


@pytest.mark.parametrize("body, field", [
    ({"kind": "no-such-kind"}, "kind"),
    ({"kind": "noop", "priority": "urgent"}, "priority"),
    ({"kind": "noop", "payload": [1, 2]}, "payload"),
    ({"kind": "noop", "extra": 1}, "extra"),
])
def test_bad_enqueues_are_400_naming_the_field(client, body, field):
    a = sign_up(client, "acme")
    response = enqueue(client, a, body)
    assert response.status_code == 400
    assert field in {e["field"] for e in response.get_json()["errors"]}


def test_listing_filters_and_pages_newest_first(client):
    a = sign_up(client, "acme")
    ids = [enqueue(client, a).get_json()["job_id"] for _ in range(5)]
    client.post(f"/jobs/{ids[0]}/cancel", headers=a.headers)
    page = client.get("/jobs?limit=2&state=queued", headers=a.headers).get_json()
    assert [j["id"] for j in page["items"]] == [ids[4], ids[3]]
    rest = client.get(f"/jobs?limit=10&state=queued&after={page['next']}", headers=a.headers).get_json()
    assert [j["id"] for j in rest["items"]] == [ids[2], ids[1]] and rest["next"] is None
    cancelled = client.get("/jobs?state=cancelled", headers=a.headers).get_json()["items"]
    assert [j["id"] for j in cancelled] == [ids[0]]
    assert client.get("/jobs?state=bogus", headers=a.headers).status_code == 400


def test_a_cancelled_queued_job_never_runs_and_cannot_be_cancelled_twice(client):
    a = sign_up(client, "acme")
    job_id = enqueue(client, a).get_json()["job_id"]
    cancelled = client.post(f"/jobs/{job_id}/cancel", headers=a.headers).get_json()
    assert cancelled["state"] == "cancelled" and cancelled["cancel_requested"]
    again = client.post(f"/jobs/{job_id}/cancel", headers=a.headers)
    assert again.status_code == 409 and again.get_json()["type"] == "/problems/job-finished"


def test_another_tenant_never_reaches_a_job(client):
    a = sign_up(client, "acme")
    job_id = enqueue(client, a).get_json()["job_id"]
    b = sign_up(client, "globex")
    assert_cross_tenant_404(client, "GET", f"/jobs/{job_id}", other=b)
    assert_cross_tenant_404(client, "POST", f"/jobs/{job_id}/cancel", other=b)
    assert client.get("/jobs", headers=b.headers).get_json()["items"] == []
    assert client.get(f"/jobs/{job_id}", headers=a.headers).get_json()["state"] == "queued"


def test_operators_do_not_enqueue(client):
    from app.tenancy import service
    from tests.helpers import PASSWORD, login

    service.create_operator(client.application.config["FAIRQ_SETTINGS"], email="o@f.example", password=PASSWORD)
    ops = login(client, "_platform", "o@f.example")
    assert enqueue(client, ops).status_code == 403


def test_over_a_hard_quota_the_enqueue_is_429_naming_it(real_settings, db):
    from app import create_app
    from app.settings import Settings
    from app.tenancy import service

    settings = Settings.load(**{**real_settings.model_dump(), "plans": {"tiny": {"jobs_per_day": 2}}})
    client = create_app(settings).test_client()
    a = sign_up(client, "acme")
    service.update_tenant("acme", service.TenantChanges(plan="tiny"))
    assert enqueue(client, a).status_code == 202
    assert enqueue(client, a).status_code == 202
    refused = enqueue(client, a)
    assert refused.status_code == 429
    body = refused.get_json()
    assert body["type"] == "/problems/quota-exceeded"
    assert (body["quota"], body["limit"], body["usage"]) == ("jobs_per_day", 2, 2)
    assert body["detail"].startswith("quota jobs_per_day of plan 'tiny' exceeded: 2 used of 2; resets at ")
    assert body["resets_at"] and int(refused.headers["Retry-After"]) > 0
    # nothing half-applied: still two jobs
    assert len(client.get("/jobs", headers=a.headers).get_json()["items"]) == 2


def test_a_monthly_quota_counts_every_day_of_the_month_and_only_this_month(real_settings, db, monkeypatch):
    """On a faked 20 May: usage from 2 May counts against ``jobs_per_month``, usage from 30 April
    does not, and the refusal says the quota resets on 1 June (the daily quota is not the one hit)."""
    from datetime import UTC, date, datetime

    from app import create_app
    from app.scheduling.store import add_usage
    from app.settings import Settings
    from app.tenancy import service
    from app.tenancy.scoping import tenant_session

    now = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)
    monkeypatch.setattr("app.quota.quotas.utcnow", lambda: now)  # the quota's clock
    monkeypatch.setattr("app.scheduling.jobs.utcnow", lambda: now)  # the day the usage is metered on
    plans = {"monthly": {"jobs_per_day": 100, "jobs_per_month": 5}}
    client = create_app(Settings.load(**{**real_settings.model_dump(), "plans": plans})).test_client()
    a = sign_up(client, "acme")
    service.update_tenant("acme", service.TenantChanges(plan="monthly"))
    with tenant_session("acme") as session:
        add_usage(session.connection(), tenant_id="acme", kind="noop", day=date(2026, 4, 30), jobs=100)
        add_usage(session.connection(), tenant_id="acme", kind="noop", day=date(2026, 5, 2), jobs=3)
    assert enqueue(client, a).status_code == 202  # 3 + 1 of 5
    assert enqueue(client, a).status_code == 202  # 5 of 5
    refused = enqueue(client, a)
    assert refused.status_code == 429, refused.get_json()
    body = refused.get_json()
    assert (body["quota"], body["limit"], body["usage"]) == ("jobs_per_month", 5, 5)
    assert body["resets_at"] == "2026-06-01T00:00:00+00:00"
    assert int(refused.headers["Retry-After"]) == 11 * 86400 + 12 * 3600


def _race_to_enqueue(settings, tenant_id: str, requests: int) -> list[str]:
    """``requests`` enqueues of one tenant at the same moment, each in its own transaction."""
    import threading

    from app.quota.quotas import QuotaExceeded
    from app.scheduling.jobs import enqueue as enqueue_job
    from app.tenancy.scoping import tenant_session

    start, answers = threading.Barrier(requests), []

    def one() -> None:
        try:
            with tenant_session(tenant_id) as session:
                start.wait()
                enqueue_job(session, settings, kind="noop")
            answers.append("accepted")
        except QuotaExceeded:
            answers.append("refused")

    threads = [threading.Thread(target=one) for _ in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return sorted(answers)


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_enqueues_at_the_same_moment_never_take_a_tenant_over_its_jobs_quota(database, request, tmp_path):
    """Each enqueue reads the tenant's usage, then adds its job: without a lock between the two,
    twenty enqueues at once all read "0 of 5" and all commit (20 accepted on both databases)."""
    import sqlalchemy as sa

    import app.tasks  # noqa: F401  (the job kinds)
    from app import migrate
    from app.scheduling.models import Job
    from app.settings import Settings, use_settings
    from app.tenancy import service
    from app.tenancy.scoping import system_session

    plans = {"tiny": {"jobs_per_day": 5}}
    if database == "postgresql":
        real = request.getfixturevalue("real_settings")
        settings = Settings.load(**{**real.model_dump(), "plans": plans})
    else:
        settings = Settings.load(data_dir=tmp_path, database_url="", database_owner_url="", broker_url="",
                                 redis_url="", s3_bucket="", plans=plans)
        migrate.prepare(settings)
    use_settings(settings)
    try:
        service.create_tenant("acme", plan="tiny")
        assert _race_to_enqueue(settings, "acme", 20) == ["accepted"] * 5 + ["refused"] * 15
        with system_session() as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(Job)) == 5
    finally:
        use_settings(None)
