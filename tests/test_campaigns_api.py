"""The campaigns API on the real database: create (with its event, atomically), list, show,
log, cancel, validation, webhook settings and the operators' allow-list; every endpoint
against another tenant's token."""
import pytest
import sqlalchemy as sa

from app.campaigns.models import Campaign
from app.scheduling.models import Job
from app.tenancy import service as tenancy
from app.tenancy.scoping import system_session
from tests.helpers import assert_cross_tenant_404, invite, job_row, login, sign_up
from tests.webhook_support import fake_dns


def create(client, who, **body):
    return client.post("/campaigns", json={"name": "Tenant launch", **body}, headers=who.headers)


def campaign_rows():
    with system_session() as session:
        return list(session.scalars(sa.select(Campaign)))


def test_the_seed_curl_flow(client):
    a = sign_up(client, "tenant-123")
    response = create(client, a, description="Welcome campaign")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert {"id", "tenant_id", "name", "description", "status", "created_at", "job_id"} <= set(body)
    assert (body["tenant_id"], body["name"], body["description"], body["status"]) == (
        "tenant-123", "Tenant launch", "Welcome campaign", "pending")
    assert response.headers["Location"] == f"/campaigns/{body['id']}"
    job = job_row(body["job_id"])  # the campaign.created event, committed with the campaign
    assert (job.kind, job.state, job.payload["campaign_id"]) == ("campaign.run", "queued", body["id"])
    listed = client.get("/campaigns", headers=a.headers).get_json()
    assert [c["id"] for c in listed["items"]] == [body["id"]] and listed["next"] is None
    shown = client.get(f"/campaigns/{body['id']}", headers=a.headers).get_json()
    assert shown["counts"] == {"recipients": 0, "delivered": 0, "failed": 0, "retrying": 0}
    assert shown["log"] == [] and shown["channel"] == "log"


def test_list_pages_newest_first_and_filters_by_status(client):
    a = sign_up(client, "acme")
    ids = [create(client, a, name=f"c{i}").get_json()["id"] for i in range(5)]
    first = client.get("/campaigns?limit=2", headers=a.headers).get_json()
    assert [c["id"] for c in first["items"]] == [ids[4], ids[3]]
    rest = client.get(f"/campaigns?limit=10&after={first['next']}", headers=a.headers).get_json()
    assert [c["id"] for c in rest["items"]] == [ids[2], ids[1], ids[0]] and rest["next"] is None
    client.post(f"/campaigns/{ids[0]}/cancel", headers=a.headers)
    cancelled = client.get("/campaigns?status=cancelled", headers=a.headers).get_json()["items"]
    assert [c["id"] for c in cancelled] == [ids[0]]
    assert client.get("/campaigns?status=bogus", headers=a.headers).status_code == 400


@pytest.mark.parametrize("body, slug, field", [
    ({"channel": "carrier-pigeon"}, "unknown-channel", "channel"),
    ({"message": "Hi {first_name}", "recipients": [{"name": "Asha"}]}, "unknown-template-field", "message"),
    ({"message": "Hi {name}"}, "unknown-template-field", "message"),
    ({"message": "Hi {name.__class__}", "recipients": [{"name": "Asha"}]}, "invalid-template", "message"),
    ({"message": "Hi {name", "recipients": [{"name": "Asha"}]}, "invalid-template", "message"),
    ({"recipients": []}, "validation-error", "recipients"),
    ({"recipients": [{"name": {"nested": 1}}]}, "validation-error", "recipients[0]"),
    ({"recipients": [{"a": 1}], "audience_s3_path": "x.csv"}, "validation-error", "audience_s3_path"),
    ({"audience_s3_path": "../other.csv"}, "invalid-path", "s3_path"),
    ({"audience_s3_path": "missing.csv"}, "audience-not-found", "audience_s3_path"),
    ({"schedule": "every tuesday"}, "invalid-schedule", "schedule"),
    ({"schedule": "0 9 * * 1", "send_at": "2030-01-01T00:00:00Z"}, "validation-error", "send_at"),
    ({"send_at": "tomorrow"}, "validation-error", "send_at"),
    ({"channel": "webhook"}, "webhook-not-configured", "channel"),
    ({"name": ""}, "validation-error", "name"),
])
def test_bad_campaigns_are_400_with_a_stable_type_and_nothing_is_written(client, body, slug, field):
    a = sign_up(client, "acme")
    response = create(client, a, **body)
    assert response.status_code == 400, response.get_json()
    problem = response.get_json()
    assert response.mimetype == "application/problem+json"
    assert problem["type"] == f"/problems/{slug}"
    assert field in {e["field"] for e in problem["errors"]}
    assert campaign_rows() == []


def test_an_audience_in_another_tenants_folder_is_403(client):
    a = sign_up(client, "acme")
    response = create(client, a, audience_s3_path="tenants/globex/list.csv")
    assert response.status_code == 403 and response.get_json()["type"] == "/problems/forbidden-path"


def test_a_csv_audience_is_checked_against_the_template(client, real_settings):
    import io

    from app.ingest.paths import tenant_prefix
    from app.storage import make_store

    a = sign_up(client, "acme")
    make_store(real_settings).put(tenant_prefix("acme") + "people.csv", io.BytesIO(b"name,email\nAsha,a@x.in\n"))
    ok = create(client, a, audience_s3_path="people.csv", message="Hello {name} <{email}>")
    assert ok.status_code == 201, ok.get_json()
    assert ok.get_json()["audience"] == {"s3_path": "people.csv"}
    bad = create(client, a, audience_s3_path="people.csv", message="Hello {phone}")
    assert bad.status_code == 400 and bad.get_json()["fields"] == ["phone"]


def test_the_campaign_and_its_event_commit_together_or_not_at_all(client, real_settings):
    """Over the jobs quota, the event cannot be written: the campaign is not written either."""
    from app.settings import Settings, use_settings

    a = sign_up(client, "acme")
    settings = Settings.load(**{**real_settings.model_dump(), "plans": {"tiny": {"jobs_per_day": 0}}})
    use_settings(settings)
    client.application.config["FAIRQ_SETTINGS"] = settings
    tenancy.update_tenant("acme", tenancy.TenantChanges(plan="tiny"))
    response = create(client, a)
    assert response.status_code == 429 and response.get_json()["quota"] == "jobs_per_day"
    assert campaign_rows() == []
    with system_session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Job)) == 0


def test_the_same_idempotency_key_returns_the_same_campaign(client):
    a, b = sign_up(client, "acme"), sign_up(client, "globex")
    key = {"Idempotency-Key": "launch-1"}
    first = client.post("/campaigns", json={"name": "Launch"}, headers={**a.headers, **key})
    again = client.post("/campaigns", json={"name": "Launch"}, headers={**a.headers, **key})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert len(campaign_rows()) == 1
    # another tenant's identical key is its own
    other = client.post("/campaigns", json={"name": "Launch"}, headers={**b.headers, **key})
    assert other.status_code == 201
    assert other.get_json()["tenant_id"] == "globex" and other.get_json()["id"] != first.get_json()["id"]
    assert other.get_json()["job_id"] != first.get_json()["job_id"]
    # a key used for another kind of job is refused, and writes nothing
    client.post("/jobs", json={"kind": "noop"}, headers={**a.headers, "Idempotency-Key": "noop-1"})
    reused = client.post("/campaigns", json={"name": "Launch"}, headers={**a.headers, "Idempotency-Key": "noop-1"})
    assert reused.status_code == 400 and "another kind of job" in reused.get_json()["detail"]
    assert len(campaign_rows()) == 2


def test_a_repeat_that_missed_the_first_key_still_keeps_one_campaign(client, monkeypatch):
    """As if two requests with one key ran at once: the second did not see the first's job when it
    looked, so its own job hits the key's unique index; it answers with the first campaign."""
    from app.scheduling import jobs

    a = sign_up(client, "acme")
    key = {"Idempotency-Key": "launch-1"}
    first = client.post("/campaigns", json={"name": "Launch"}, headers={**a.headers, **key})
    monkeypatch.setattr(jobs, "job_for_key", lambda session, idempotency_key: None)
    again = client.post("/campaigns", json={"name": "Launch"}, headers={**a.headers, **key})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["id"] == first.get_json()["id"]
    assert [c.id for c in campaign_rows()] == [first.get_json()["id"]]


def test_an_inline_audience_over_the_messages_quota_is_429(client):
    a = sign_up(client, "acme")
    tenancy.update_tenant("acme", tenancy.TenantChanges(plan="free"))  # 1,000 messages a day
    response = create(client, a, recipients=[{"n": i} for i in range(1001)])
    assert response.status_code == 429 and response.get_json()["quota"] == "messages_per_day"
    assert response.get_json()["type"] == "/problems/quota-exceeded"
    assert "quota messages_per_day of plan 'free' exceeded" in response.get_json()["detail"]
    assert campaign_rows() == []


def test_send_at_and_schedule_wait_for_their_time(client):
    a = sign_up(client, "acme")
    later = create(client, a, send_at="2030-01-01T09:00:00+05:30").get_json()
    assert later["status"] == "scheduled" and later["send_at"].startswith("2030-01-01T03:30:00")
    assert job_row(later["job_id"]).not_before.isoformat().startswith("2030-01-01T03:30:00")
    recurring = create(client, a, schedule="0 9 * * 1").get_json()
    assert recurring["status"] == "scheduled" and recurring["schedule"] == "0 9 * * 1"
    first = job_row(recurring["job_id"]).not_before
    assert first.weekday() == 0 and (first.hour, first.minute) == (9, 0)
    assert recurring["next_run_at"] > first.isoformat()


def test_cancel_cancels_the_queued_run_and_cannot_happen_twice(client):
    a = sign_up(client, "acme")
    body = create(client, a).get_json()
    response = client.post(f"/campaigns/{body['id']}/cancel", headers=a.headers)
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    assert job_row(body["job_id"]).state == "cancelled"
    again = client.post(f"/campaigns/{body['id']}/cancel", headers=a.headers)
    assert again.status_code == 409 and again.get_json()["type"] == "/problems/campaign-finished"


def test_members_may_create_campaigns(client):
    a = sign_up(client, "acme")
    member = invite(client, a, "m@acme.example")
    assert create(client, member).status_code == 201


def test_tenant_id_in_the_body_must_be_the_tokens(client):
    a = sign_up(client, "acme")
    response = create(client, a, tenant_id="globex")
    assert response.status_code == 403 and response.get_json()["type"] == "/problems/tenant-mismatch"


def test_every_campaign_endpoint_is_404_for_another_tenant(client):
    a, b = sign_up(client, "acme"), sign_up(client, "globex")
    body = create(client, a).get_json()
    for method, url in [("GET", f"/campaigns/{body['id']}"), ("GET", f"/campaigns/{body['id']}/log"),
                        ("POST", f"/campaigns/{body['id']}/cancel")]:
        assert_cross_tenant_404(client, method, url, other=b)
    assert client.get("/campaigns", headers=b.headers).get_json()["items"] == []
    assert client.get(f"/campaigns/{body['id']}", headers=a.headers).get_json()["status"] == "pending"


def test_campaign_endpoints_need_a_token(client):
    assert client.get("/campaigns").status_code == 401
    assert client.post("/campaigns", json={"name": "x"}).status_code == 401


# -- the webhook settings --------------------------------------------------------------------


def test_the_secret_is_shown_once_then_only_its_last_characters(client, monkeypatch):
    fake_dns(monkeypatch, {"hooks.example.com": "93.184.215.14"})
    a = sign_up(client, "acme")
    assert client.get("/settings/webhook", headers=a.headers).get_json()["configured"] is False
    made = client.put("/settings/webhook", json={"url": "https://hooks.example.com/fairq"}, headers=a.headers)
    assert made.status_code == 200, made.get_json()
    secret = made.get_json()["secret"]
    assert len(secret) >= 32 and made.get_json()["secret_hint"] == "…" + secret[-4:]
    shown = client.get("/settings/webhook", headers=a.headers).get_json()
    assert "secret" not in shown and secret not in str(shown) and shown["url"] == "https://hooks.example.com/fairq"
    changed = client.put("/settings/webhook", json={"url": "https://hooks.example.com/v2"}, headers=a.headers)
    assert "secret" not in changed.get_json()  # the URL changed, the secret did not
    rotated = client.post("/settings/webhook/secret", headers=a.headers).get_json()
    assert rotated["secret"] != secret
    # another tenant sees only its own (nothing)
    b = sign_up(client, "globex")
    assert client.get("/settings/webhook", headers=b.headers).get_json() == {
        "url": None, "secret_hint": None, "allowed_hosts": [], "configured": False}
    assert client.post("/settings/webhook/secret", headers=b.headers).status_code == 400
    fake_dns(monkeypatch, {"hooks.example.com": "93.184.215.14", "globex.example.com": "93.184.215.15"})
    own = client.put("/settings/webhook", json={"url": "https://globex.example.com/in"}, headers=b.headers).get_json()
    assert own["secret"] != rotated["secret"]
    assert client.get("/settings/webhook", headers=a.headers).get_json()["url"] == "https://hooks.example.com/v2"


def test_only_admins_set_the_webhook(client, monkeypatch):
    fake_dns(monkeypatch, {"hooks.example.com": "93.184.215.14"})
    a = sign_up(client, "acme")
    member = invite(client, a, "m@acme.example")
    response = client.put("/settings/webhook", json={"url": "https://hooks.example.com/"}, headers=member.headers)
    assert response.status_code == 403


@pytest.mark.parametrize("url, slug", [
    ("ftp://hooks.example.com/x", "invalid-webhook-url"),
    ("https://user:pw@hooks.example.com/x", "invalid-webhook-url"),
    ("http://127.0.0.1:8080/hook", "webhook-destination-refused"),
    ("http://169.254.169.254/latest/meta-data/", "webhook-destination-refused"),
    ("http://10.1.2.3/hook", "webhook-destination-refused"),
    ("http://[::1]/hook", "webhook-destination-refused"),
    ("http://localhost:9000/hook", "webhook-destination-refused"),
    ("http://rebind.example.com/hook", "webhook-destination-refused"),
    ("http://no-such-host.invalid/hook", "webhook-destination-refused"),
])
def test_webhook_urls_into_private_networks_are_refused(client, monkeypatch, url, slug):
    fake_dns(monkeypatch, {"rebind.example.com": "127.0.0.1"})  # a public name that resolves to loopback
    a = sign_up(client, "acme")
    response = client.put("/settings/webhook", json={"url": url}, headers=a.headers)
    assert response.status_code == 400 and response.get_json()["type"] == f"/problems/{slug}"
    assert client.get("/settings/webhook", headers=a.headers).get_json()["url"] is None


def test_an_operator_allows_a_loopback_receiver(client):
    from app.tenancy.service import create_operator
    from app.settings import get_settings

    a = sign_up(client, "acme")
    create_operator(get_settings(), email="ops@example.com", password="operator-pass-1")
    ops = login(client, "_platform", "ops@example.com", "operator-pass-1")
    url = "/admin/tenants/acme/webhook-hosts"
    assert client.put(url, json={"allowed_hosts": ["127.0.0.1"]}, headers=a.headers).status_code == 403
    bad = client.put(url, json={"allowed_hosts": ["not a host!"]}, headers=ops.headers)
    assert bad.status_code == 400 and bad.get_json()["type"] == "/problems/invalid-allowed-host"
    assert client.put("/admin/tenants/nope/webhook-hosts", json={"allowed_hosts": []},
                      headers=ops.headers).status_code == 404
    done = client.put(url, json={"allowed_hosts": ["127.0.0.1", "10.0.0.0/8"]}, headers=ops.headers)
    assert done.get_json()["allowed_hosts"] == ["127.0.0.1", "10.0.0.0/8"]
    assert client.put("/settings/webhook", json={"url": "http://127.0.0.1:9/hook"}, headers=a.headers).status_code == 200
    assert client.put("/settings/webhook", json={"url": "http://10.9.9.9/hook"}, headers=a.headers).status_code == 200
    # still refused: link-local, and loopback addresses other than the one allowed
    for refused in ("http://169.254.169.254/", "http://[::1]:9/hook", "http://127.0.0.2:9/hook"):
        response = client.put("/settings/webhook", json={"url": refused}, headers=a.headers)
        assert response.status_code == 400, refused
    assert client.get(url, headers=ops.headers).get_json()["allowed_hosts"] == ["127.0.0.1", "10.0.0.0/8"]


def test_fairq_campaigns_allow_host_cli(db):
    from tests.conftest import run_fairq

    tenancy.create_tenant("acme")
    allowed = run_fairq("campaigns", "allow-host", "acme", "127.0.0.1", "receiver.internal")
    assert allowed.returncode == 0, allowed.stderr
    assert "127.0.0.1, receiver.internal" in allowed.stdout
    removed = run_fairq("campaigns", "disallow-host", "acme", "receiver.internal")
    assert removed.returncode == 0 and "receiver.internal" not in removed.stdout
    assert "127.0.0.1" in run_fairq("campaigns", "hosts", "acme").stdout
    assert run_fairq("campaigns", "allow-host", "nope", "127.0.0.1").returncode == 2
    assert run_fairq("campaigns", "allow-host", "acme", "bad host!").returncode == 2
