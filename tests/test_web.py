"""The web dashboard through Flask's test client: cookies, CSRF, pages, and tenant isolation.

``tests/test_web_browser.py`` drives the same pages in a real browser.
"""
import re
from datetime import timedelta

import pytest

from tests.helpers import PASSWORD, login, sign_up, wait_for
from tests.test_ingest_support import EXAMPLES, run_job

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(response) -> str:
    found = CSRF.search(response.get_data(as_text=True))
    assert found, "the page has no form with a CSRF value"
    return found.group(1)


def browser(app):
    """A test client that keeps cookies, like a browser (HTTPS: the cookies are Secure)."""
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    return client


def web_register(web, tenant_id: str, email: str | None = None):
    page = web.get("/ui/register")
    response = web.post("/ui/register", data={
        "csrf_token": csrf_of(page), "tenant_id": tenant_id, "email": email or f"admin@{tenant_id}.example",
        "password": PASSWORD,
    })
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


def web_login(web, tenant_id: str, email: str, password: str = PASSWORD):
    page = web.get("/ui/login")
    return web.post("/ui/login", data={"csrf_token": csrf_of(page), "tenant_id": tenant_id, "email": email,
                                       "password": password})


def web_ingest(web, source: str = "UPI", name: str = "upi_sample.csv"):
    """Upload an example file and start its ingest through the form; the response."""
    form = web.get("/ui/ingest")
    with (EXAMPLES / name).open("rb") as stream:
        return web.post("/ui/ingest", data={"csrf_token": csrf_of(form), "source": source, "ledger": "external",
                                            "file": (stream, name)}, content_type="multipart/form-data")


def job_of(response) -> int:
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(response.headers["Location"].rsplit("/", 1)[1])


def set_cookies(response) -> dict[str, str]:
    return {header.split("=", 1)[0]: header for header in response.headers.getlist("Set-Cookie")}


def test_registering_logs_in_with_httponly_samesite_secure_cookies_scoped_to_the_dashboard(app):
    web = browser(app)
    response = web_register(web, "acme")
    assert response.headers["Location"].endswith("/ui/jobs")
    cookies = set_cookies(response)
    for name in ("access_token_cookie", "refresh_token_cookie"):
        cookie = cookies[name]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie and "Path=/ui" in cookie
    page = web.get("/ui/jobs")
    assert page.status_code == 200 and "No jobs yet" in page.get_data(as_text=True)
    # the cookies are the dashboard's: the API still wants a bearer token
    assert web.get("/jobs").status_code == 401


def test_pages_need_a_login_and_send_back_to_the_page_afterwards(app):
    web = browser(app)
    response = web.get("/ui/transactions?status=SUCCESS")
    assert response.status_code == 302 and "/ui/login?next=" in response.headers["Location"]
    sign_up(app.test_client(), "acme")
    page = web.get(response.headers["Location"])
    logged_in = web.post("/ui/login", data={
        "csrf_token": csrf_of(page), "tenant_id": "acme", "email": "admin@acme.example", "password": PASSWORD,
        "next": "/ui/transactions?status=SUCCESS",
    })
    assert logged_in.headers["Location"].endswith("/ui/transactions?status=SUCCESS")


def test_login_never_redirects_to_another_site(app):
    web = browser(app)
    sign_up(app.test_client(), "acme")
    for target in ("https://evil.example/", "//evil.example/ui", "/jobs"):
        page = web.get("/ui/login")
        response = web.post("/ui/login", data={
            "csrf_token": csrf_of(page), "tenant_id": "acme", "email": "admin@acme.example", "password": PASSWORD,
            "next": target,
        })
        assert response.headers["Location"].endswith("/ui/jobs"), target


def test_a_wrong_password_is_refused_with_the_apis_message_and_counts_as_a_failure(app):
    web = browser(app)
    sign_up(app.test_client(), "acme")
    response = web_login(web, "acme", "admin@acme.example", "wrong-password")
    assert response.status_code == 401 and "tenant, email or password is wrong" in response.get_data(as_text=True)
    assert "access_token_cookie" not in set_cookies(response)
    for _ in range(5):
        response = web_login(web, "acme", "admin@acme.example", "wrong-password")
    assert response.status_code == 429  # the API's failed-login limit, shared


def test_forms_without_their_csrf_value_are_refused(app):
    web = browser(app)
    sign_up(app.test_client(), "acme")
    assert web.post("/ui/login", data={"tenant_id": "acme", "email": "admin@acme.example",
                                        "password": PASSWORD}).status_code == 400
    web_login(web, "acme", "admin@acme.example")
    refused = web.post("/ui/logout")
    assert refused.status_code == 400 and "expired" in refused.get_data(as_text=True)
    assert web.get("/ui/jobs").status_code == 200  # still logged in
    forged = web.post("/ui/logout", data={"csrf_token": "forged"})
    assert forged.status_code == 400


def test_logging_out_revokes_the_token(app):
    web = browser(app)
    web_register(web, "acme")
    page = web.get("/ui/jobs")
    stolen = web.get_cookie("access_token_cookie", path="/ui").value
    response = web.post("/ui/logout", data={"csrf_token": csrf_of(page)})
    assert response.status_code == 302 and response.headers["Location"].endswith("/ui/login")
    thief = browser(app)
    thief.set_cookie("access_token_cookie", stolen, path="/ui")
    assert thief.get("/ui/jobs").status_code == 302  # revoked: back to the login page


def test_an_expired_access_cookie_is_renewed_from_the_refresh_cookie(app):
    from flask_jwt_extended import create_access_token

    web = browser(app)
    web_register(web, "acme")
    with app.app_context():
        claims = {"tenant": "acme", "role": "admin"}
        expired = create_access_token("1", additional_claims=claims, expires_delta=timedelta(seconds=-60))
    web.set_cookie("access_token_cookie", expired, path="/ui")
    response = web.get("/ui/jobs")
    assert response.status_code == 200
    assert "access_token_cookie" in set_cookies(response)


def test_upload_ingest_follow_the_job_and_find_a_transaction(app, worker):
    web = browser(app)
    web_register(web, "acme")
    assert "UPI" in web.get("/ui/ingest").get_data(as_text=True)
    job_id = job_of(web_ingest(web))
    assert 'data-refresh="/ui/jobs/' in web.get(f"/ui/jobs/{job_id}").get_data(as_text=True)  # live until done
    def finished():
        page = web.get(f"/ui/jobs/{job_id}?part=detail").get_data(as_text=True)
        return page if "data-final" in page else None

    detail = wait_for(finished)
    assert "state-succeeded" in detail and "rows loaded" in detail
    assert "data-refresh" not in web.get(f"/ui/jobs/{job_id}").get_data(as_text=True)
    rows = web.get("/ui/jobs/rows").get_data(as_text=True)
    assert f">{job_id}</a>" in rows and "succeeded" in rows
    found = web.get("/ui/transactions?txn_id=HDF6513270E269E0D37F2A74DE452E6B438").get_data(as_text=True)
    assert "HDF6513270E269E0D37F2A74DE452E6B438" in found and "1205.00" in found
    assert "No transactions match" in web.get("/ui/transactions?status=PENDING&min_amount=999999").get_data(
        as_text=True)
    bad = web.get("/ui/transactions?since=yesterday")
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.get_data(as_text=True)


def test_a_bad_upload_is_explained_and_nothing_is_queued(app):
    web = browser(app)
    web_register(web, "acme")
    response = web_ingest(web, source="SWIFT")
    assert response.status_code == 400 and "unknown source" in response.get_data(as_text=True)
    assert "No jobs yet" in web.get("/ui/jobs").get_data(as_text=True)


def test_another_tenant_sees_none_of_it(app):
    acme, globex = browser(app), browser(app)
    web_register(acme, "acme")
    web_register(globex, "globex")
    job_id = job_of(web_ingest(acme))
    run_job(job_id)
    for url in (f"/ui/jobs/{job_id}", f"/ui/jobs/{job_id}?part=detail", f"/ui/jobs/{job_id}/errors.csv"):
        assert globex.get(url).status_code == 404, url
    cancel_form = globex.get("/ui/jobs")
    assert globex.post(f"/ui/jobs/{job_id}/cancel", data={"csrf_token": csrf_of(cancel_form)}).status_code == 404
    assert f">{job_id}</a>" not in globex.get("/ui/jobs/rows").get_data(as_text=True)
    assert "HDF6513270E269E0D37F2A74DE452E6B438" not in globex.get("/ui/transactions").get_data(as_text=True)


def test_cancelling_a_queued_job_from_its_page(app):
    web = browser(app)
    web_register(web, "acme")
    response = web_ingest(web)
    page = web.get(response.headers["Location"])
    cancelled = web.post(response.headers["Location"] + "/cancel", data={"csrf_token": csrf_of(page)})
    assert cancelled.status_code == 302
    assert "cancelled" in web.get(response.headers["Location"]).get_data(as_text=True)


@pytest.fixture
def operator(app):
    from app.tenancy import service

    service.create_operator(app.config["FAIRQ_SETTINGS"], email="ops@fairq.example", password=PASSWORD)
    web = browser(app)
    response = web_login(web, "_platform", "ops@fairq.example")
    assert response.status_code == 302 and response.headers["Location"].endswith("/ui/admin/fair-share")
    return web


def test_operator_pages_are_for_operators_only(app):
    web = browser(app)
    web_register(web, "acme")
    for url in ("/ui/admin/tenants", "/ui/admin/dlq", "/ui/admin/fair-share", "/ui/admin/fair-share?part=live"):
        assert web.get(url).status_code == 403, url


def test_an_operator_edits_a_tenants_weight_plan_and_pause(app, operator):
    sign_up(app.test_client(), "acme")
    page = operator.get("/ui/admin/tenants")
    assert "acme" in page.get_data(as_text=True)
    response = operator.post("/ui/admin/tenants/acme", data={"csrf_token": csrf_of(page), "weight": "4",
                                                            "plan": "default", "paused": "on"})
    assert response.status_code == 302
    from app.tenancy.service import get_tenant

    tenant = get_tenant("acme")
    assert (tenant.weight, tenant.paused) == (4, True)
    bad = operator.post("/ui/admin/tenants/acme", data={"csrf_token": csrf_of(page), "weight": "heavy"})
    assert bad.status_code == 400 and "whole number" in bad.get_data(as_text=True)
    assert operator.post("/ui/admin/tenants/nobody", data={"csrf_token": csrf_of(page), "weight": "2"}).status_code == 404
    # operators see no tenant's jobs pages
    assert operator.get("/ui/jobs").status_code == 403


def test_the_fair_share_page_shows_each_tenants_share_against_its_entitlement(app, operator):
    from datetime import timedelta

    from app.db import utcnow
    from app.scheduling.models import Job
    from app.tenancy.scoping import system_session
    from app.tenancy.service import TenantChanges, update_tenant

    api = app.test_client()
    tenants = {name: sign_up(api, name) for name in ("acme", "globex", "idle")}
    update_tenant("acme", TenantChanges(weight=3))
    for name, count in (("acme", 3), ("globex", 2)):
        for _ in range(count):
            assert api.post("/jobs", json={"kind": "noop"}, headers=tenants[name].headers).status_code == 202
    # acme ran 3 s of work in the window and globex 1 s; one job of each is still waiting
    now = utcnow()
    with system_session() as session:
        for job in session.query(Job).order_by(Job.id):
            if job.id in (1, 2, 4):
                job.state, job.run_seconds = "succeeded", {1: 2.0, 2: 1.0, 4: 1.0}[job.id]
                job.enqueued_at, job.started_at, job.finished_at = now - timedelta(seconds=5), now - timedelta(seconds=4), now
    live = operator.get("/ui/admin/fair-share?part=live").get_data(as_text=True)
    rows = {m.group(1): m.group(2) for m in re.finditer(r'<th scope="row">(\w+)</th>(.*?)</tr>', live, re.S)}
    assert set(rows) == {"acme", "globex"}  # idle has done nothing
    cells = {t: re.findall(r'<td class="num">([^<]*)</td>', row) for t, row in rows.items()}
    # weight, queued, in flight, share, entitled, wait p99, deferred
    assert cells["acme"] == ["3", "1", "0", "75.0%", "75.0%", "1.00 s", "0"]
    assert cells["globex"] == ["1", "1", "0", "25.0%", "25.0%", "1.00 s", "0"]
    assert "<svg" in live and "acme: 75.0% of worker time, entitled to 75.0%" in live
    page = operator.get("/ui/admin/fair-share").get_data(as_text=True)
    assert 'data-refresh="/ui/admin/fair-share?part=live"' in page


def test_an_operator_replays_a_dead_job(app, operator):
    from app.scheduling.models import Job
    from app.tenancy.scoping import system_session

    web = browser(app)
    web_register(web, "acme")
    job_id = job_of(web_ingest(web))
    with system_session() as session:
        session.get(Job, job_id).state = "dead"
    page = operator.get("/ui/admin/dlq")
    assert f"<td>{job_id}</td>" in page.get_data(as_text=True)
    nothing = operator.post("/ui/admin/dlq/replay", data={"csrf_token": csrf_of(page)})
    assert nothing.status_code == 400  # no selection: never "everything" by accident
    replayed = operator.post("/ui/admin/dlq/replay", data={"csrf_token": csrf_of(page), "job_id": str(job_id)})
    assert replayed.status_code == 200 and "1 job(s) replayed" in replayed.get_data(as_text=True)
    with system_session() as session:
        assert session.get(Job, job_id).state == "queued"


def test_the_dashboard_works_on_the_embedded_default(sqlite_app):
    web = browser(sqlite_app)
    web_register(web, "acme")
    assert web.get("/ui/jobs").status_code == 200
    with web.get("/ui/static/fairq.css") as response:
        assert response.status_code == 200 and response.mimetype == "text/css"


def test_usage_against_quotas_for_a_tenant_and_across_tenants_for_operators(app, operator):
    from app.settings import Settings, use_settings
    from app.tenancy.service import TenantChanges, update_tenant

    plans = {"small": {"jobs_per_day": 10, "rows_per_month": 1000}}
    settings = Settings.load(**{**app.config["FAIRQ_SETTINGS"].model_dump(), "plans": plans})
    use_settings(settings)
    app.config["FAIRQ_SETTINGS"] = settings
    web = browser(app)
    web_register(web, "acme")
    update_tenant("acme", TenantChanges(plan="small"))
    api = app.test_client()
    globex, acme = sign_up(api, "globex"), login(api, "acme", "admin@acme.example")
    for _ in range(3):
        assert api.post("/jobs", json={"kind": "noop"}, headers=acme.headers).status_code == 202
    assert api.post("/jobs", json={"kind": "noop"}, headers=globex.headers).status_code == 202
    page = web.get("/ui/usage").get_data(as_text=True)
    assert "jobs per day" in page and "3 / 10" in page and "rows per month" in page and "0 / 1000" in page
    assert "<svg" in page
    csv_export = web.get("/ui/usage?format=csv&granularity=month")
    assert csv_export.mimetype == "text/csv" and "globex" not in csv_export.get_data(as_text=True)
    assert ",acme,noop,3," in csv_export.get_data(as_text=True)
    assert web.get("/ui/usage?from=2026-02-01&to=2026-01-01").status_code == 400
    assert web.get("/ui/admin/usage").status_code == 403
    everyone = operator.get("/ui/admin/usage").get_data(as_text=True)
    assert "<td>acme</td>" in everyone and "<td>globex</td>" in everyone


def test_the_dashboards_replay_and_purge_take_the_dead_letters_out_of_the_broker(app, operator):
    """As ``/admin/dlq`` and ``fairq dlq`` do: a replayed or purged job's dead letter must not stay
    in RabbitMQ to be seen (and replayed) a second time."""
    from app.scheduling.kinds import JOBS_QUEUE
    from app.tasks import broker
    from app.tenancy import service
    from tests.test_scheduling_dlq import dead, fresh_dead_letter_queues, letters, put_letters

    fresh_dead_letter_queues(broker, JOBS_QUEUE)
    service.create_tenant("acme")
    replayed, purged, kept = dead("acme"), dead("acme"), dead("acme")
    put_letters(broker, JOBS_QUEUE, [replayed, purged, kept])
    try:
        page = operator.get("/ui/admin/dlq")
        for action, job_id in (("replay", replayed), ("purge", purged)):
            done = operator.post(f"/ui/admin/dlq/{action}", data={"csrf_token": csrf_of(page), "job_id": str(job_id)})
            assert done.status_code == 200, done.get_data(as_text=True)
        assert letters(broker, JOBS_QUEUE) == [kept]
    finally:
        fresh_dead_letter_queues(broker, JOBS_QUEUE)
