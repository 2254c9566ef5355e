"""``fairq up --demo``: two demo tenants, an operator, and a day's work to watch.

Once the API answers, a thread of the same process seeds through the services the API
calls (nothing here re-implements them):

- tenants ``demo-busy`` and ``demo-small`` (weight 1 each) with an admin each, and an
  operator. Every run gives the three new random passwords, printed: the demo may be served
  on a network address (``--host 0.0.0.0``), where a fixed password from the README would be
  an open door. A second run on the same folder reuses the tenants and users and resets
  their passwords (it says so);
- ``demo-busy`` floods :data:`FLOOD_JOBS` ``noop`` jobs; then ``demo-small`` submits
  :data:`SMALL_JOBS`, ingests the example UPI and NEFT files (its own ledgers as
  ``internal``, the switch report and the bank statement as ``external``), reconciles each
  rail over the files' period and runs a three-recipient campaign on the ``log`` channel;
- it prints when ``demo-small``'s work is all done beside ``demo-busy``'s progress at that
  moment (the fair scheduler at work), and when the flood is done.

The demo runs on the embedded default only: :func:`refusal` says why not elsewhere.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import sqlalchemy as sa

from app.campaigns import service as campaigns
from app.errors import Conflict
from app.ingest import service as ingest
from app.reconcile import service as reconcile
from app.reconcile.models import ReconciliationRun
from app.scheduling.jobs import enqueue_many
from app.scheduling.models import FINAL_STATES, Job
from app.settings import Settings
from app.tenancy import service as tenancy
from app.tenancy.models import PLATFORM_TENANT
from app.tenancy.scoping import tenant_session

__all__ = ["BUSY", "SMALL", "FLOOD_JOBS", "SMALL_JOBS", "Account", "refusal", "start"]

logger = logging.getLogger(__name__)

#: The tenant that floods, and the one that only has a handful of jobs.
BUSY, SMALL = "demo-busy", "demo-small"
#: ``noop`` jobs each tenant submits, and how long each sleeps (ms).
FLOOD_JOBS, SMALL_JOBS, SLEEP_MS = 3000, 10, 5
#: The example files ``demo-small`` ingests: (file, source, ledger).
FILES = (
    ("upi_ledger.csv", "UPI", "internal"),
    ("upi_sample.csv", "UPI", "external"),
    ("neft_ledger.csv", "NEFT", "internal"),
    ("neft_statement.csv", "NEFT", "external"),
)
#: The period each rail's example files cover: (source, from, to).
PERIODS = (("UPI", date(2025, 8, 29), date(2025, 8, 29)), ("NEFT", date(2025, 8, 1), date(2025, 8, 31)))
#: Where the example files are (a source checkout, or an editable install of one).
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: Seconds between looks at the jobs table.
POLL = 0.2


@dataclass(frozen=True)
class Account:
    """A demo login, as printed."""

    label: str
    tenant_id: str
    email: str
    password: str


def refusal(settings: Settings) -> str | None:
    """Why ``--demo`` does not run with these settings (``None``: it does).

    On real servers it would add tenants, an operator with printed passwords and thousands of
    jobs to a shared database and broker: the demo is for the embedded default only.
    """
    real = [name for name, embedded in settings.embedded.items() if not embedded]
    if not real:
        return None
    return (f"--demo runs on the embedded default only (it creates demo tenants, an operator and "
            f"{FLOOD_JOBS:,} jobs); this configuration uses real servers for: {', '.join(real)}. "
            "Run it with no FAIRQ_DATABASE_URL, FAIRQ_BROKER_URL, FAIRQ_REDIS_URL or FAIRQ_S3_BUCKET "
            "(FAIRQ_DATA_DIR picks its folder).")


def start(settings: Settings, base_url: str, stopping: threading.Event,
          announce: Callable[[str], None]) -> threading.Thread:
    """Seed the demo in a daemon thread; returns it. Failures are announced, never raised."""

    def run() -> None:
        try:
            _Demo(settings, announce, stopping).run(base_url)
        except Exception as exc:  # the server keeps running; say what went wrong
            logger.exception("the demo's seeding failed")
            announce(f"demo: seeding failed: {exc}")

    thread = threading.Thread(target=run, name="fairq-demo", daemon=True)
    thread.start()
    return thread


class _Demo:
    """One seeding: the settings, where it speaks, and the event set when fairq stops."""

    def __init__(self, settings: Settings, announce: Callable[[str], None], stopping: threading.Event) -> None:
        self.settings = settings
        self.say = announce
        self.stopping = stopping

    def run(self, base_url: str) -> None:
        accounts = self.accounts()
        self.say("demo: log in with (new random passwords, printed only here):")
        for a in accounts:
            self.say(f"  {a.label:<13} tenant_id={a.tenant_id}  email={a.email}  password={a.password}")
        self.say(f"demo: dashboard {base_url}/ui/admin/fair-share  (log in as the operator: each tenant's "
                 "share of worker time, live)")
        started = time.monotonic()
        busy_after, small_after = _last_job_id(BUSY), _last_job_id(SMALL)
        with tenant_session(BUSY) as session:
            enqueue_many(session, self.settings, kind="noop", payloads=[{"sleep_ms": SLEEP_MS}] * FLOOD_JOBS)
        with tenant_session(SMALL) as session:
            enqueue_many(session, self.settings, kind="noop", payloads=[{"sleep_ms": SLEEP_MS}] * SMALL_JOBS)
        self.say(f"demo: {BUSY} flooded {FLOOD_JOBS:,} noop jobs of {SLEEP_MS} ms; then {SMALL} sent {SMALL_JOBS}")
        if self.wait(lambda: not _unfinished(SMALL, after_id=small_after)) is None:
            return
        done, total = _progress(BUSY, busy_after)
        self.say(f"demo: {SMALL}'s {SMALL_JOBS} jobs are done after {time.monotonic() - started:.1f} s, while "
                 f"{BUSY} has {done:,} of {total:,} done: the flood did not make the small tenant wait")
        small = self.small_work()
        if small is None or self.wait(lambda: not _unfinished(SMALL, after_id=small_after)
                                      and _campaign_ended(small.campaign_id)) is None:
            return
        self.say(f"demo: {SMALL}'s work is done after {time.monotonic() - started:.1f} s: {small.describe()}")
        if self.wait(lambda: _progress(BUSY, busy_after)[0] == FLOOD_JOBS) is not None:
            self.say(f"demo: {BUSY}'s {FLOOD_JOBS:,} jobs are done after {time.monotonic() - started:.1f} s; "
                     "fairq keeps running (Ctrl-C to stop)")

    def accounts(self) -> list[Account]:
        """Create the tenants and users, or reset the passwords of the ones an earlier run made."""
        made = []
        for tenant_id, name in ((BUSY, "Demo: the busy tenant"), (SMALL, "Demo: the small tenant")):
            try:
                tenancy.create_tenant(tenant_id, name=name)
            except Conflict:
                pass
            made.append(self.account(f"tenant {tenant_id.removeprefix('demo-')}", tenant_id,
                                     f"admin@{tenant_id}.example"))
        made.append(self.account("operator", PLATFORM_TENANT, "operator@demo.example"))
        return made

    def account(self, label: str, tenant_id: str, email: str) -> Account:
        password = secrets.token_urlsafe(12)
        try:
            if tenant_id == PLATFORM_TENANT:
                tenancy.create_operator(self.settings, email=email, password=password)
            else:
                tenancy.create_user(self.settings, tenant_id=tenant_id, email=email, password=password, role="admin")
        except Conflict:
            tenancy.set_password(self.settings, tenant_id=tenant_id, email=email, password=password)
            self.say(f"demo: {email} in {tenant_id} exists from an earlier run: its password is reset")
        return Account(label, tenant_id, email, password)

    def small_work(self) -> _SmallWork | None:
        """``demo-small``'s ingests, reconciliations and campaign (``None``: stopping)."""
        work = _SmallWork()
        if not EXAMPLES.is_dir():
            self.say(f"demo: no {EXAMPLES} (not a source checkout): no ingest or reconciliation")
        else:
            work.ingests = self.ingest_examples()
        with tenant_session(SMALL) as session:
            campaign = campaigns.create_campaign(session, self.settings, campaigns.NewCampaign(
                name="August statements", message="Hi {name}, your August statement is ready",
                recipients=[{"name": "Asha"}, {"name": "Ravi"}, {"name": "Meera"}],
            ))
            work.campaign_id = campaign.id
        self.say(f"demo: {SMALL} ingests the example UPI and NEFT files ({len(work.ingests)} jobs) and runs "
                 "a 3-recipient campaign")
        if work.ingests:
            if self.wait(lambda: not _unfinished(SMALL, job_ids=work.ingests)) is None:
                return None
            with tenant_session(SMALL) as session:
                for source, period_from, period_to in PERIODS:
                    _, run, _ = reconcile.enqueue_reconcile(session, self.settings, source=source,
                                                            period_from=period_from, period_to=period_to)
                    work.runs.append(run.id)
            self.say(f"demo: {SMALL}'s files are in; it reconciles UPI on 2025-08-29 and NEFT in August 2025 "
                     "(each run is estimated at 10 s of worker time: it waits for its fair turn)")
        return work

    def ingest_examples(self) -> list[int]:
        job_ids = []
        for filename, source, ledger in FILES:
            with (EXAMPLES / filename).open("rb") as stream:
                s3_path, _ = ingest.upload(self.settings, SMALL, stream, filename)
            with tenant_session(SMALL) as session:
                job, _ = ingest.enqueue_ingest(session, self.settings, s3_path=s3_path, source=source, ledger=ledger)
                job_ids.append(job.id)
        return job_ids

    def wait(self, done: Callable[[], bool]) -> bool | None:
        """Poll ``done`` until it holds (``True``) or fairq stops (``None``)."""
        while not self.stopping.is_set():
            if done():
                return True
            self.stopping.wait(POLL)
        return None


class _SmallWork:
    """What ``demo-small`` submitted, to describe once it is done."""

    def __init__(self) -> None:
        self.ingests: list[int] = []
        self.runs: list[int] = []
        self.campaign_id: int | None = None

    def describe(self) -> str:
        with tenant_session(SMALL) as session:
            results = session.scalars(sa.select(Job.result).where(Job.id.in_(self.ingests))).all()
            rows = sum((r or {}).get("rows_read", 0) for r in results)
            runs = session.scalars(sa.select(ReconciliationRun).where(ReconciliationRun.id.in_(self.runs))).all()
            breaks = sum((run.summary or {}).get("total_breaks", 0) for run in runs)
            campaign = campaigns.get_campaign(session, self.campaign_id)
            delivered = campaigns.counts(session, campaign).delivered
        return (f"{len(self.ingests)} ingests ({rows} rows), {len(runs)} reconciliations "
                f"({breaks} breaks), campaign {campaign.status} ({delivered} delivered)")


def _last_job_id(tenant_id: str) -> int:
    with tenant_session(tenant_id) as session:
        return session.scalar(sa.select(sa.func.max(Job.id))) or 0


def _unfinished(tenant_id: str, *, after_id: int = 0, job_ids: list[int] | None = None) -> int:
    """How many of the tenant's jobs with ids above ``after_id`` (or of ``job_ids``) have not finished."""
    query = (sa.select(sa.func.count()).select_from(Job)
             .where(Job.state.not_in(FINAL_STATES), Job.id > after_id))
    if job_ids is not None:
        query = query.where(Job.id.in_(job_ids))
    with tenant_session(tenant_id) as session:
        return session.scalar(query)


def _campaign_ended(campaign_id: int | None) -> bool:
    with tenant_session(SMALL) as session:
        return campaigns.get_campaign(session, campaign_id).status in campaigns.ENDED


def _progress(tenant_id: str, after_id: int) -> tuple[int, int]:
    """(finished, all) of the tenant's jobs with ids above ``after_id``."""
    with tenant_session(tenant_id) as session:
        finished, total = session.execute(
            sa.select(sa.func.count().filter(Job.state.in_(FINAL_STATES)), sa.func.count())
            .where(Job.id > after_id)
        ).one()
    return finished, total
