"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

`fairq up` runs on the embedded default in a subprocess (API, workers and scheduler in one
process); the browser registers a tenant, uploads the example UPI file, starts its ingest,
watches the job succeed, finds a transaction, reconciles the day, creates a small campaign and
watches it complete, and an operator sees both tenants. A screenshot of every page goes to
``test-artifacts/browser/``.
"""
import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, clean_env
from tests.helpers import PASSWORD

#: Debian's chromium (FAIRQ_TEST_CHROMIUM: another Chromium-based browser, e.g. on a CI runner).
CHROMIUM = Path(os.environ.get("FAIRQ_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "test-artifacts" / "browser"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no browser at {CHROMIUM} (.ci/run installs Debian's chromium)")


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def post_json(url: str, body: dict, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


def test_register_ingest_reconcile_run_a_campaign_and_see_two_tenants_as_an_operator(fairq_up, browser):
    base, _process, folder = fairq_up
    page = browser.new_page(viewport={"width": 1280, "height": 900})

    page.goto(base + "/ui/register")
    shot(page, "01-register")
    page.get_by_label("Tenant id").fill("acme")
    page.get_by_label("Email").fill("admin@acme.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create the tenant").click()
    page.wait_for_url("**/ui/jobs")
    assert page.get_by_role("heading", name="Jobs").is_visible()
    shot(page, "02-jobs-empty")

    # log out and back in, as a returning user does
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/ui/login")
    page.get_by_label("Tenant").fill("acme")
    page.get_by_label("Email").fill("admin@acme.example")
    page.get_by_label("Password").fill(PASSWORD)
    shot(page, "03-login")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/ui/jobs")

    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Ingest a file").click()
    page.get_by_label("File (CSV)").set_input_files(str(ROOT / "examples" / "upi_sample.csv"))
    page.get_by_label("Source").select_option("UPI")
    shot(page, "04-ingest")
    page.get_by_role("button", name="Upload and ingest").click()
    page.wait_for_url("**/ui/jobs/*")
    # the page follows the job by itself until it ends
    page.locator("#job-state", has_text="succeeded").wait_for(timeout=60_000)
    assert page.get_by_text("rows loaded").is_visible()
    shot(page, "05-job-succeeded")

    nav.get_by_role("link", name="Transactions").click()
    page.get_by_label("Transaction id").fill("HDF6513270E269E0D37F2A74DE452E6B438")
    page.get_by_role("button", name="Search").click()
    row = page.get_by_role("row", name="HDF6513270E269E0D37F2A74DE452E6B438")
    assert "1205.00" in row.inner_text()
    shot(page, "06-transactions")

    # reconcile the day of the file: with no ledger yet, every payment of the bank is a break
    nav.get_by_role("link", name="Reconciliation").click()
    page.get_by_label("Source").select_option("UPI")
    page.get_by_label("From", exact=True).fill("2025-08-29")
    page.get_by_label("To (included)", exact=True).fill("2025-08-29")
    shot(page, "07-reconciliation")
    page.get_by_role("button", name="Start the run").click()
    page.wait_for_url("**/ui/reconciliation/runs/*")
    page.locator("#run-state", has_text="succeeded").wait_for(timeout=30_000)
    assert page.get_by_role("link", name="Download these breaks (CSV)").is_visible()
    assert page.get_by_role("cell", name="missing internal").first.is_visible()
    shot(page, "08-reconciliation-run")

    # a small campaign through the form, followed live until it completes
    nav.get_by_role("link", name="Campaigns").click()
    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Name", exact=True).fill("Welcome")
    page.get_by_label("Message", exact=True).fill("Hi {name}")
    page.get_by_label("Recipients (optional)").fill("name,city\nAsha,Pune\nRavi,Chennai")
    shot(page, "09-campaign-new")
    page.get_by_role("button", name="Create the campaign").click()
    page.wait_for_url("**/ui/campaigns/*")
    page.locator("#campaign-status", has_text="completed").wait_for(timeout=30_000)
    assert page.locator("#count-delivered").inner_text() == "2"
    assert page.get_by_role("cell", name="Hi Asha").is_visible()
    shot(page, "10-campaign-completed")
    nav.get_by_role("link", name="Campaigns").click()
    assert page.get_by_role("cell", name="Welcome").is_visible()
    shot(page, "11-campaigns")

    # a second tenant (through the API) and an operator (through the CLI)
    assert post_json(base + "/register", {"tenant_id": "globex", "email": "admin@globex.example",
                                          "password": PASSWORD})[0] == 201
    created = subprocess.run(["fairq", "operators", "create", "--email", "ops@fairq.example", "--password-stdin"],
                             input=PASSWORD + "\n", capture_output=True, text=True, cwd=folder, env=clean_env(),
                             timeout=60)
    assert created.returncode == 0, created.stderr

    operator = browser.new_page(viewport={"width": 390, "height": 844})  # a phone, this time
    operator.goto(base + "/ui/login")
    operator.get_by_label("Tenant").fill("_platform")
    operator.get_by_label("Email").fill("ops@fairq.example")
    operator.get_by_label("Password").fill(PASSWORD)
    operator.get_by_role("button", name="Log in").click()
    operator.wait_for_url("**/ui/admin/fair-share")
    # acme ran its ingest; globex queues a job now, and the page shows it by itself
    globex = json.loads(post_json(base + "/login", {"tenant_id": "globex", "email": "admin@globex.example",
                                                     "password": PASSWORD})[1])["access_token"]
    post_json(base + "/jobs", {"kind": "noop", "payload": {"sleep_ms": 50}}, token=globex)
    for tenant in ("acme", "globex"):
        operator.get_by_role("rowheader", name=tenant).wait_for(timeout=15_000)
    assert operator.locator("svg.chart").is_visible()
    shot(operator, "12-operator-fair-share")
    operator.get_by_role("navigation", name="Main").get_by_role("link", name="Tenants").click()
    for tenant in ("acme", "globex"):
        assert operator.get_by_role("rowheader", name=tenant).is_visible()
    shot(operator, "13-operator-tenants")
    operator.get_by_role("navigation", name="Main").get_by_role("link", name="Dead letters").click()
    assert operator.get_by_text("The dead-letter queue is empty.").is_visible()
    shot(operator, "14-operator-dead-letters")


def test_a_live_page_keeps_the_keyboard_focus_and_cancels_a_running_job(fairq_up, browser):
    base, _process, _folder = fairq_up
    assert post_json(base + "/register", {"tenant_id": "acme", "email": "admin@acme.example",
                                          "password": PASSWORD})[0] == 201
    token = json.loads(post_json(base + "/login", {"tenant_id": "acme", "email": "admin@acme.example",
                                                    "password": PASSWORD})[1])["access_token"]
    job_id = json.loads(post_json(base + "/jobs", {"kind": "noop", "payload": {"sleep_ms": 30_000}},
                                  token=token)[1])["job_id"]
    page = browser.new_page()
    page.goto(base + "/ui/login")
    page.get_by_label("Tenant").fill("acme")
    page.get_by_label("Email").fill("admin@acme.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/ui/jobs")
    page.goto(f"{base}/ui/jobs/{job_id}")
    page.locator("#job-state", has_text="running").wait_for(timeout=15_000)
    page.focus("#cancel-job")
    # two refreshes of the live part later, the same control still has the focus
    page.wait_for_timeout(4_500)
    assert page.evaluate("document.activeElement.id") == "cancel-job"
    page.keyboard.press("Enter")
    page.locator("#job-state", has_text="cancelled").wait_for(timeout=15_000)
    shot(page, "15-job-cancelled")
