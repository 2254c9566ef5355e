"""The dashboard's reconciliation and campaign pages through Flask's test client: forms end to
end with a worker, the services' messages on bad input, CSRF, and another tenant's 404s."""
import re

import pytest

from tests.helpers import wait_for
from tests.test_reconcile_support import RRN, add, at, reconcile
from tests.test_web import browser, csrf_of, web_register

RUN_FORM = {"source": "UPI", "from": "2026-11-01", "to": "2026-11-07", "amount_tolerance": "0.00",
            "date_tolerance_hours": "48"}


def start_run(web, **changes):
    page = web.get("/ui/reconciliation")
    return web.post("/ui/reconciliation", data={"csrf_token": csrf_of(page), **RUN_FORM, **changes})


def new_campaign(web, **fields):
    page = web.get("/ui/campaigns/new")
    return web.post("/ui/campaigns/new", data={"csrf_token": csrf_of(page), "name": "Diwali offer", **fields})


def id_of(response) -> int:
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(response.headers["Location"].rsplit("/", 1)[1])


def text(response) -> str:
    return response.get_data(as_text=True)


# -- reconciliation -------------------------------------------------------------------------


def test_the_reconciliation_page_offers_the_sources_with_matching_rules(app):
    web = browser(app)
    web_register(web, "acme")
    page = text(web.get("/ui/reconciliation"))
    assert "<h1>Reconciliation</h1>" in page and "No runs yet" in page
    assert {"UPI", "NEFT"} <= set(re.findall(r"<option[^>]*>(\w+)</option>", page))
    assert 'href="/ui/reconciliation"' in page and 'href="/ui/campaigns"' in page  # in the nav


def test_start_a_run_with_a_worker_and_read_its_summary_breaks_and_csv(app, worker):
    # Given a ledger and a bank file that differ by one missing payment and one amount
    web = browser(app)
    web_register(web, "acme")
    add("acme", "internal", "MI1", "5.00", reference=RRN(1))
    add("acme", "external", "=HYPERLINK(\"http://x\")", "7.00", reference=RRN(2))
    add("acme", "internal", "AM1", "10.00", reference=RRN(3), when=at(4))
    add("acme", "external", "AM1", "11.00", reference=RRN(3), when=at(4))
    # When a run is started through the form
    run_id = id_of(start_run(web))
    assert text(web.get("/ui/reconciliation")).count(f">{run_id}</a>") == 1

    def finished():
        part = text(web.get(f"/ui/reconciliation/runs/{run_id}?part=live"))
        return part if "data-final" in part else None

    # Then its page follows it until it ends, with the summary and the breaks
    live = wait_for(finished)
    assert "state-succeeded" in live and "Matched amount" in live and "Unmatched amount, your ledger" in live
    page = text(web.get(f"/ui/reconciliation/runs/{run_id}"))
    assert "data-refresh" not in page and "ledger 10.00, bank 11.00" in page
    assert page.count("<td>amount mismatch</td>") == 1 and page.count("<td>missing external</td>") == 1
    only = text(web.get(f"/ui/reconciliation/runs/{run_id}?mismatch_type=amount_mismatch&status=new"))
    assert "<td>amount mismatch</td>" in only and "<td>missing external</td>" not in only
    assert "No breaks match" in text(web.get(f"/ui/reconciliation/runs/{run_id}?status=resolved"))
    bad = web.get(f"/ui/reconciliation/runs/{run_id}?mismatch_type=bogus")
    assert bad.status_code == 400 and "mismatch_type must be one of" in text(bad)
    with web.get(f"/ui/reconciliation/runs/{run_id}/breaks.csv?mismatch_type=") as download:
        assert download.mimetype == "text/csv"
        lines = text(download).splitlines()
    assert lines[0].startswith("id,run_id,source,mismatch_type,status") and len(lines) == 4
    assert "'=HYPERLINK" in "\n".join(lines)  # formula-escaped, as the API's export
    assert web.get(f"/ui/reconciliation/runs/{run_id}/breaks.csv?status=bogus").status_code == 400


def test_breaks_come_in_keyset_pages(app, monkeypatch):
    from app.web import reconcile as pages
    from app.web import views

    web = browser(app)
    web_register(web, "acme")
    for n in range(3):
        add("acme", "internal", f"MI{n}", "5.00", reference=RRN(n))
    run_id, _summary = reconcile("acme")
    monkeypatch.setattr(views, "PAGE", 2)
    monkeypatch.setattr(pages, "PAGE", 2)
    first = text(web.get(f"/ui/reconciliation/runs/{run_id}"))
    older = re.search(r'href="([^"]+after=\d+[^"]*)">Older breaks', first)
    assert older and first.count("<td>missing external</td>") == 2
    second = text(web.get(older.group(1).replace("&amp;", "&")))
    assert second.count("<td>missing external</td>") == 1 and "Older breaks" not in second


@pytest.mark.parametrize(("changes", "message"), [
    ({"from": "2026-11-08"}, "is after to"),
    ({"source": "SWIFT"}, "unknown source"),
    ({"amount_tolerance": "0.005"}, "at most two decimals"),
    ({"amount_tolerance": "lots"}, "at most two decimals"),
    ({"date_tolerance_hours": "-1"}, "date_tolerance_hours must be 0 or more"),
    ({"from": "1 Nov"}, "YYYY-MM-DD"),
])
def test_a_bad_run_is_explained_with_the_form_kept_and_nothing_queued(app, changes, message):
    web = browser(app)
    web_register(web, "acme")
    response = start_run(web, **changes)
    assert response.status_code == 400 and message in text(response)
    kept = next(iter(changes.values()))
    assert f'value="{kept}"' in text(response) or f"<option selected>{kept}</option>" in text(response) or (
        "SWIFT" in text(response))  # an unknown source is not among the options, and is named in the message
    assert "No runs yet" in text(response) and "No jobs yet" in text(web.get("/ui/jobs"))


# -- campaigns ------------------------------------------------------------------------------


def test_create_a_campaign_through_the_form_and_watch_it_complete(app, worker):
    web = browser(app)
    web_register(web, "acme")
    form = text(web.get("/ui/campaigns/new"))
    assert re.search(r"<option selected>log</option>", form) and "webhook" in form
    campaign_id = id_of(new_campaign(web, message="Hi {name} from {city}",
                                     recipients="name,city\nAsha,Pune\nRavi,Chennai\n"))
    assert 'data-refresh="/ui/campaigns/' in text(web.get(f"/ui/campaigns/{campaign_id}"))

    def finished():
        part = text(web.get(f"/ui/campaigns/{campaign_id}?part=live"))
        return part if "data-final" in part else None

    live = wait_for(finished)
    assert "state-completed" in live
    assert '<td class="num" id="count-recipients">2</td>' in live
    assert '<td class="num" id="count-delivered">2</td>' in live
    assert "Hi Asha from Pune" in live and "Hi Ravi from Chennai" in live
    assert "Cancel this campaign" not in live
    listed = text(web.get("/ui/campaigns"))
    assert f">{campaign_id}</a>" in listed and "Diwali offer" in listed and "completed" in listed
    # JSON recipients work too
    json_id = id_of(new_campaign(web, name="JSON", message="Hi {name}", recipients='[{"name": "Meera"}]'))
    assert "Hi Meera" in wait_for(lambda: "data-final" in (p := text(web.get(f"/ui/campaigns/{json_id}?part=live")))
                                  and p)


def test_campaigns_come_in_keyset_pages(app, monkeypatch):
    from app.web import campaigns as pages
    from app.web import views

    web = browser(app)
    web_register(web, "acme")
    ids = [id_of(new_campaign(web, name=f"c{n}")) for n in range(3)]
    monkeypatch.setattr(views, "PAGE", 2)
    monkeypatch.setattr(pages, "PAGE", 2)
    first = text(web.get("/ui/campaigns"))
    older = re.search(r'href="([^"]+)">Older campaigns', first)
    assert older and f">{ids[2]}</a>" in first and f">{ids[0]}</a>" not in first
    second = text(web.get(older.group(1)))
    assert f">{ids[0]}</a>" in second and f">{ids[1]}</a>" not in second


@pytest.mark.parametrize(("fields", "message"), [
    ({"channel": "carrier-pigeon"}, "unknown channel &#39;carrier-pigeon&#39;; installed channels: log, webhook"),
    ({"message": "Hi {first_name}", "recipients": "name\nAsha"},
     "the message uses {first_name}, which recipients[0] lacks"),
    ({"message": "Hi {name}"}, "which a campaign with no audience lacks"),
    ({"recipients": "[{\"name\": "}, "recipients: not valid JSON"),
    ({"recipients": "[1, 2]"}, "recipients[0] must be an object"),
    ({"recipients": "name,city"}, "the first line names the fields"),
    ({"channel": "webhook"}, "the webhook channel needs your webhook URL first"),
    ({"send_at": "tomorrow"}, "send_at is a date and time"),
    ({"name": " "}, "give the campaign a name"),
])
def test_a_bad_campaign_shows_the_services_message_with_the_form_kept(app, fields, message):
    web = browser(app)
    web_register(web, "acme")
    response = new_campaign(web, description="kept text", **fields)
    assert response.status_code == 400 and message in text(response), text(response)
    assert 'value="kept text"' in text(response)
    assert "No campaigns yet" in text(web.get("/ui/campaigns"))


def test_cancel_a_scheduled_campaign_then_cancel_again_is_refused(app):
    web = browser(app)
    web_register(web, "acme")
    campaign_id = id_of(new_campaign(web, send_at="2099-01-01T09:00"))
    page = web.get(f"/ui/campaigns/{campaign_id}")
    assert "scheduled" in text(page) and "2099-01-01 09:00 UTC" in text(page) and "Cancel this campaign" in text(page)
    assert web.post(f"/ui/campaigns/{campaign_id}/cancel").status_code == 400  # no CSRF value
    cancelled = web.post(f"/ui/campaigns/{campaign_id}/cancel", data={"csrf_token": csrf_of(page)})
    assert cancelled.status_code == 302
    shown = text(web.get(f"/ui/campaigns/{campaign_id}"))
    assert "state-cancelled" in shown and "Cancel this campaign" not in shown and "data-refresh" not in shown
    again = web.post(f"/ui/campaigns/{campaign_id}/cancel", data={"csrf_token": csrf_of(page)})
    assert again.status_code == 409 and f"campaign {campaign_id} already cancelled" in text(again)


def test_forms_need_their_csrf_value(app):
    web = browser(app)
    web_register(web, "acme")
    assert web.post("/ui/reconciliation", data=RUN_FORM).status_code == 400
    assert web.post("/ui/campaigns/new", data={"name": "x"}).status_code == 400
    assert web.post("/ui/campaigns/new", data={"name": "x", "csrf_token": "forged"}).status_code == 400
    assert "No runs yet" in text(web.get("/ui/reconciliation"))
    assert "No campaigns yet" in text(web.get("/ui/campaigns"))


def test_another_tenant_gets_404_on_every_page_and_post(app):
    acme, globex = browser(app), browser(app)
    web_register(acme, "acme")
    web_register(globex, "globex")
    run_id = id_of(start_run(acme))
    campaign_id = id_of(new_campaign(acme, send_at="2099-01-01T09:00"))
    for url in (f"/ui/reconciliation/runs/{run_id}", f"/ui/reconciliation/runs/{run_id}?part=live",
                f"/ui/reconciliation/runs/{run_id}/breaks.csv", f"/ui/campaigns/{campaign_id}",
                f"/ui/campaigns/{campaign_id}?part=live"):
        assert globex.get(url).status_code == 404, url
    form = globex.get("/ui/campaigns")
    assert globex.post(f"/ui/campaigns/{campaign_id}/cancel", data={"csrf_token": csrf_of(form)}).status_code == 404
    assert f">{run_id}</a>" not in text(globex.get("/ui/reconciliation"))
    assert f">{campaign_id}</a>" not in text(globex.get("/ui/campaigns"))
    assert "scheduled" in text(acme.get(f"/ui/campaigns/{campaign_id}"))  # still acme's, not cancelled


def test_operators_do_not_get_the_tenant_pages(app):
    from app.tenancy import service

    from tests.helpers import PASSWORD
    from tests.test_web import web_login

    service.create_operator(app.config["FAIRQ_SETTINGS"], email="ops@fairq.example", password=PASSWORD)
    web = browser(app)
    web_login(web, "_platform", "ops@fairq.example")
    for url in ("/ui/reconciliation", "/ui/campaigns", "/ui/campaigns/new"):
        assert web.get(url).status_code == 403, url


def test_the_new_pages_work_on_the_embedded_default(sqlite_app):
    web = browser(sqlite_app)
    web_register(web, "acme")
    run_id = id_of(start_run(web))
    assert "queued" in text(web.get(f"/ui/reconciliation/runs/{run_id}"))
    campaign_id = id_of(new_campaign(web, recipients="name\nAsha"))
    assert "Diwali offer" in text(web.get(f"/ui/campaigns/{campaign_id}"))
