"""The reconciliation API: enqueue checks, runs, breaks (filters, pages, CSV), tenants; end to end with a worker."""
import pytest

from tests.helpers import assert_cross_tenant_404, job_row, sign_up, wait_for
from tests.test_ingest_support import EXAMPLES, enqueued, uploaded
from tests.test_reconcile_support import RRN, add, at, reconcile

BODY = {"source": "UPI", "from": "2026-11-01", "to": "2026-11-07", "amount_tolerance": "0.00",
        "date_tolerance_hours": 48}


def post(client, who, headers=None, **changes):
    return client.post("/enqueue/reconcile", json={**BODY, **changes}, headers={**who.headers, **(headers or {})})


def csv_text(client, who, query: str = "") -> str:
    with client.get(f"/reconciliations?format=csv&{query}", headers=who.headers) as response:
        assert response.mimetype == "text/csv"
        return response.get_data(as_text=True)


def test_enqueue_answers_202_with_the_job_and_a_queued_run(client):
    a = sign_up(client, "acme")
    response = post(client, a, priority="high", tenant_id="acme")
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert response.headers["Location"].endswith(f"/jobs/{body['job_id']}")
    job = client.get(f"/jobs/{body['job_id']}", headers=a.headers).get_json()
    assert (job["kind"], job["state"], job["priority"]) == ("reconcile", "queued", "high")
    run = client.get(f"/reconciliation-runs/{body['run_id']}", headers=a.headers).get_json()
    assert (run["source"], run["from"], run["to"], run["amount_tolerance"], run["date_tolerance_hours"],
            run["state"]) == ("UPI", "2026-11-01", "2026-11-07", "0.00", 48, "queued")


def test_the_same_idempotency_key_gives_the_same_job_and_run(client):
    a = sign_up(client, "acme")
    first = post(client, a, headers={"Idempotency-Key": "nov-w1"})
    again = post(client, a, headers={"Idempotency-Key": "nov-w1"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.get_json() == {**again.get_json(), "state": "queued"}


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"from": "2026-11-08"}, "/problems/invalid-period"),
        ({"from": "2025-01-01", "to": "2026-11-07"}, "/problems/invalid-period"),
        ({"source": "SWIFT"}, "/problems/unknown-source"),
        ({"amount_tolerance": "-0.01"}, "/problems/validation-error"),
        ({"amount_tolerance": "0.005"}, "/problems/validation-error"),
        ({"date_tolerance_hours": -1}, "/problems/validation-error"),
        ({"from": "1 Nov"}, "/problems/validation-error"),
        ({"source": None}, "/problems/validation-error"),
    ],
)
def test_bad_bodies_are_400_problems_and_queue_nothing(client, changes, problem):
    a = sign_up(client, "acme")
    response = post(client, a, **changes)
    assert response.status_code == 400, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == problem
    assert client.get("/jobs", headers=a.headers).get_json()["items"] == []


def test_an_unknown_source_lists_those_that_can_be_reconciled(client):
    a = sign_up(client, "acme")
    body = post(client, a, source="SWIFT").get_json()
    assert {"UPI", "NEFT", "IMPS", "RTGS"} <= set(body["sources"])


def test_another_tenant_id_in_the_body_is_403(client):
    a = sign_up(client, "acme")
    sign_up(client, "globex")
    response = post(client, a, tenant_id="globex")
    assert response.status_code == 403 and response.get_json()["type"].endswith("tenant-mismatch")


def test_breaks_filtered_paged_and_exported_for_one_tenant_only(client):
    a = sign_up(client, "acme")
    b = sign_up(client, "globex")
    add("acme", "internal", "MI1", "5.00", reference=RRN(1))
    add("acme", "external", "=HYPERLINK(\"http://x\")", "7.00", reference=RRN(2))
    add("acme", "internal", "AM1", "10.00", reference=RRN(3), when=at(4))
    add("acme", "external", "AM1", "11.00", reference=RRN(3), when=at(4))
    first, _ = reconcile("acme")
    add("acme", "external", "MI1", "5.00", reference=RRN(1))
    second, _ = reconcile("acme")
    get = lambda q, who=a: client.get(f"/reconciliations?{q}", headers=who.headers).get_json()  # noqa: E731
    assert [x["mismatch_type"] for x in get("limit=10")["items"]] == ["missing_internal", "missing_external",
                                                                     "amount_mismatch"]
    assert [x["internal_txn_id"] for x in get("status=resolved")["items"]] == ["MI1"]
    assert len(get(f"run_id={second}")["items"]) == 3 and get(f"run_id={first}")["items"] == []
    amount = get("mismatch_type=amount_mismatch")["items"][0]
    assert (amount["internal_amount"], amount["external_amount"], amount["status"], amount["rule"]) == (
        "10.00", "11.00", "persisting", "RRN")
    assert "ledger 10.00, bank 11.00" in amount["notes"]
    page1 = get("limit=2")
    page2 = get(f"limit=2&after={page1['next']}")
    assert len(page1["items"] + page2["items"]) == 3 and page2["next"] is None
    assert client.get("/reconciliations?mismatch_type=bogus", headers=a.headers).status_code == 400
    text = csv_text(client, a)
    assert text.splitlines()[0].startswith("id,run_id,source,mismatch_type,status")
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text and text.count("\n") == 4
    # tenant B sees none of it
    assert get("limit=10", b)["items"] == [] and csv_text(client, b).count("\n") == 1
    assert_cross_tenant_404(client, "GET", f"/reconciliation-runs/{second}", other=b)
    assert client.get(f"/reconciliation-runs/{second}", headers=a.headers).get_json()["state"] == "succeeded"


def test_ingest_both_ledgers_then_reconcile_them_with_a_worker(client, worker):
    # Given the example switch report and the tenant's own ledger of 29 August 2025
    a = sign_up(client, "acme")
    for name, ledger in (("upi_sample.csv", "external"), ("upi_ledger.csv", "internal")):
        job_id = enqueued(client, a, uploaded(client, a, (EXAMPLES / name).read_bytes(), name), ledger=ledger)
        wait_for(lambda: job_row(job_id).state == "succeeded")
    # When the day is reconciled through the API
    body = post(client, a, **{"from": "2025-08-29", "to": "2025-08-29"}).get_json()
    wait_for(lambda: job_row(body["job_id"]).state == "succeeded")
    # Then the run's summary and breaks explain every difference
    run = client.get(f"/reconciliation-runs/{body['run_id']}", headers=a.headers).get_json()
    assert run["state"] == "succeeded"
    summary = run["summary"]
    assert {k: v for k, v in summary["breaks"].items() if v} == {
        "missing_internal": 1, "missing_external": 1, "amount_mismatch": 1, "status_mismatch": 1}
    assert summary["matched"]["count"] == 17
    assert summary["unmatched_amount"] == {"internal": "2750.00", "external": "999.99"}
    job = client.get(f"/jobs/{body['job_id']}", headers=a.headers).get_json()
    assert job["result"]["run_id"] == body["run_id"] and job["progress"]["done"] == job["progress"]["total"]
    items = client.get(f"/reconciliations?run_id={body['run_id']}", headers=a.headers).get_json()["items"]
    status = next(x for x in items if x["mismatch_type"] == "status_mismatch")
    assert status["notes"].startswith("Statuses differ: ledger SUCCESS, bank PENDING.")
