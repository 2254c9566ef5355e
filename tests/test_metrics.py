"""Prometheus metrics on the real servers: per tenant, capped, from events and from the database."""
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import exported_names
from app.metrics.labels import OTHER, TenantLabels
from app.scheduling.models import Job
from app.tenancy import service
from app.tenancy.scoping import system_session
from tests.helpers import bearer, sign_up, wait_for
from tests.test_scheduling_e2e import enqueue, states


def scrape(client, headers=None) -> dict:
    """Every sample of ``/metrics``: {(name, frozenset of labels): value}."""
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before, after, name, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_jobs_run_through_a_worker_are_counted_per_tenant_and_kind(client, worker):
    a, b = sign_up(client, "acme"), sign_up(client, "globex")
    before = scrape(client)
    ids = [enqueue(client, a, {"sleep_ms": 30}) for _ in range(3)] + [enqueue(client, b, {"fail_attempts": 1})]
    wait_for(lambda: set(states(ids).values()) == {"succeeded"})
    after = wait_for(lambda: (s := scrape(client)) and value(s, "fairq_tenant_worker_share", tenant="acme") and s)

    assert delta(before, after, "fairq_jobs_enqueued_total", tenant="acme", kind="noop") == 3
    assert delta(before, after, "fairq_jobs_enqueued_total", tenant="globex", kind="noop") == 1
    assert delta(before, after, "fairq_job_outcomes_total", tenant="acme", kind="noop", outcome="succeeded") == 3
    assert delta(before, after, "fairq_job_outcomes_total", tenant="globex", kind="noop", outcome="failed") == 1
    assert delta(before, after, "fairq_job_outcomes_total", tenant="globex", kind="noop", outcome="succeeded") == 1
    # a job's wait is measured once, at its first start; each attempt's run time is measured
    assert delta(before, after, "fairq_job_wait_seconds_count", tenant="acme", kind="noop") == 3
    assert delta(before, after, "fairq_job_wait_seconds_count", tenant="globex", kind="noop") == 1
    assert delta(before, after, "fairq_job_run_seconds_count", tenant="globex", kind="noop") == 2
    assert delta(before, after, "fairq_job_run_seconds_sum", tenant="acme", kind="noop") >= 0.09
    # the leader's share of worker time beside the entitlement (equal weights: half each)
    share = value(after, "fairq_tenant_worker_share", tenant="acme")
    assert 0.5 < share <= 1.0
    assert value(after, "fairq_tenant_entitlement", tenant="acme") == pytest.approx(0.5)


def test_waiting_in_flight_and_dead_jobs_and_quotas_come_from_the_database(client):
    a = sign_up(client, "acme")
    service.update_tenant("acme", service.TenantChanges(plan="free"))
    ids = [enqueue(client, a) for _ in range(3)]
    with system_session() as session:
        session.execute(sa.update(Job).where(Job.id == ids[0]).values(state="dead"))
        session.execute(sa.update(Job).where(Job.id == ids[1]).values(state="running"))
    samples = scrape(client)
    assert value(samples, "fairq_jobs_queued", tenant="acme", kind="noop") == 1
    assert value(samples, "fairq_jobs_in_flight", tenant="acme", kind="noop") == 1
    assert value(samples, "fairq_jobs_dead", tenant="acme", kind="noop") == 1
    assert value(samples, "fairq_quota_used", tenant="acme", quota="jobs_per_day") == 3
    assert value(samples, "fairq_quota_limit", tenant="acme", quota="jobs_per_day") == 10_000


def test_tenants_beyond_the_label_cap_are_summed_as_other(client, monkeypatch):
    import app.metrics.instruments as module

    monkeypatch.setattr(module.labels, "value", TenantLabels(2))
    logins = [sign_up(client, tenant) for tenant in ("t1", "t2", "t3", "t4")]
    before = scrape(client)
    for n, login in enumerate(logins, start=1):
        for _ in range(n):
            enqueue(client, login)
    samples = scrape(client)
    queued = {dict(labels)["tenant"]: v for (name, labels), v in samples.items() if name == "fairq_jobs_queued"}
    assert queued == {"t1": 1, "t2": 2, OTHER: 7}
    enqueued = {tenant: delta(before, samples, "fairq_jobs_enqueued_total", tenant=tenant, kind="noop")
                for tenant in ("t1", "t2", "t3", "t4", OTHER)}
    assert enqueued == {"t1": 1, "t2": 2, "t3": 0, "t4": 0, OTHER: 7}


def test_the_metrics_token_guards_the_endpoint(real_settings):
    from app import create_app
    from app.settings import Settings

    token = "m3trics-t0ken-for-prometheus"
    client = create_app(Settings.load(**{**real_settings.model_dump(), "metrics_token": token})).test_client()
    tenant = sign_up(client, "acme")
    for headers in ({}, tenant.headers, bearer("wrong")):  # a tenant's own token is no metrics token
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401 and response.mimetype == "application/problem+json"
        assert response.get_json()["type"] == "/problems/metrics-token-required"
    assert "fairq_jobs_queued" in {name for name, _ in scrape(client, bearer(token))} | exported_names()
    assert client.get("/metrics", headers=bearer(token)).status_code == 200


def test_a_job_over_its_concurrency_cap_counts_as_a_deferral(real_settings):
    from dramatiq.middleware import SkipMessage

    import app.tasks  # noqa: F401  (the job kinds)
    from app.metrics.instruments import instruments
    from app.scheduling.gate import Gate
    from app.scheduling.kinds import kinds
    from app.settings import Settings, use_settings
    from app.tenancy.scoping import tenant_session

    use_settings(Settings.load(**{**real_settings.model_dump(), "plans": {"single": {"concurrency": 1}}}))
    service.create_tenant("acme", plan="single")
    with tenant_session("acme") as session:
        session.add_all([Job(tenant_id="acme", kind="noop", state=state, payload={})
                         for state in ("running", "dispatched")])
    with system_session() as session:
        job_id = session.scalar(sa.select(Job.id).where(Job.state == "dispatched"))
    deferred = instruments().deferrals.labels("acme", "concurrency")
    before = deferred._value.get()
    with pytest.raises(SkipMessage):
        Gate().before_process_message(None, kinds()["noop"].actor.message(job_id))
    assert deferred._value.get() - before == 1
    with system_session() as session:
        job = session.get(Job, job_id)
        # back in the queue for later, its attempt given back: a deferral uses no retry
        assert (job.state, job.attempts) == ("queued", 0) and job.not_before is not None
        assert job.progress_message == "deferred: concurrency cap"
