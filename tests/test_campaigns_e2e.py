"""Campaigns end to end on the real servers (RabbitMQ, PostgreSQL, Redis, S3): fan-out,
channels, retries, dead letters and replay, SSRF refusals at delivery, cancellation,
scheduling, the outbox with the broker down, and a backlog that survives its workers."""
import io
import os
import signal
import socket
import subprocess
import threading
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa

from app.campaigns import schedule, webhooks
from app.campaigns.models import Campaign, CampaignJob
from app.db import utcnow
from app.scheduling import dlq
from app.scheduling.models import Job
from app.tenancy.scoping import system_session
from tests.conftest import ROOT, free_port, fresh_flush, run_fairq
from tests.helpers import job_row, sign_up, wait_for
from tests.test_scheduling_e2e import _dead_letter_count
from tests.webhook_support import Receiver, fake_dns


def create(client, who, **body):
    response = client.post("/campaigns", json={"name": "Tenant launch", **body}, headers=who.headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def shown(client, who, campaign_id):
    return client.get(f"/campaigns/{campaign_id}", headers=who.headers).get_json()


def finished(client, who, campaign_id, status="completed"):
    return wait_for(lambda: (c := shown(client, who, campaign_id))["status"] == status and c)


def log_rows(campaign_id):
    with system_session() as session:
        return list(session.scalars(
            sa.select(CampaignJob).where(CampaignJob.campaign_id == campaign_id).order_by(CampaignJob.id)))


def with_webhook(client, who, url):
    webhooks.set_allowed_hosts(who.tenant_id, ["127.0.0.1"])  # what an operator does for a loopback receiver
    response = client.put("/settings/webhook", json={"url": url}, headers=who.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["secret"]


@pytest.fixture
def small_chunks(fast_retries):  # noqa: F811
    from app.settings import Settings, use_settings

    settings = Settings.load(**{**fast_retries.model_dump(), "campaign_chunk_size": 7})
    use_settings(settings)
    return settings


def test_a_campaign_with_no_audience_logs_one_simulated_delivery(client, worker):  # noqa: F811
    a = sign_up(client, "tenant-123")
    campaign = create(client, a, description="Welcome campaign")
    done = finished(client, a, campaign["id"])
    assert done["counts"] == {"recipients": 1, "delivered": 1, "failed": 0, "retrying": 0}
    [entry] = done["log"]
    assert (entry["status"], entry["attempts"], entry["payload"]["message"]) == ("success", 1, "Tenant launch")
    assert entry["payload"]["simulated"] is True and entry["processed_at"]
    assert job_row(campaign["job_id"]).state == "succeeded"


def test_an_audience_fans_out_in_chunks_through_the_scheduler(client, worker, small_chunks, real_settings):  # noqa: F811
    from app.ingest.paths import tenant_prefix
    from app.storage import make_store

    a = sign_up(client, "acme")
    inline = create(client, a, message="Hi {name}", recipients=[{"name": f"n{i}"} for i in range(20)])
    csv_text = "name,city\n" + "".join(f"p{i},Pune\n" for i in range(30))
    make_store(real_settings).put(tenant_prefix("acme") + "people.csv", io.BytesIO(csv_text.encode()))
    from_file = create(client, a, message="{name} from {city}", audience_s3_path="people.csv")
    for campaign, count, example in ((inline, 20, "Hi n0"), (from_file, 30, "p29 from Pune")):
        done = finished(client, a, campaign["id"])
        assert done["counts"] == {"recipients": count, "delivered": count, "failed": 0, "retrying": 0}
        rows = log_rows(campaign["id"])
        assert sorted(r.recipient for r in rows) == list(range(count))  # each recipient once
        assert example in {r.payload["message"] for r in rows}
    with system_session() as session:
        deliveries = session.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.kind == "campaign.deliver"))
        metered = session.execute(sa.text("SELECT sum(messages) FROM usage_daily WHERE kind = 'campaign.deliver'"))
        assert deliveries == 50 and metered.scalar() == 50


def test_a_failing_webhook_is_retried_then_delivered_signed(client, worker):  # noqa: F811
    a = sign_up(client, "acme")
    with Receiver(fail_first=2) as receiver:
        receiver.secret = with_webhook(client, a, receiver.url)
        campaign = create(client, a, channel="webhook", message="Hi {name}", recipients=[{"name": "Asha"}])
        done = finished(client, a, campaign["id"])
    assert [c["valid"] for c in receiver.calls] == [True, True, True]  # the receiver verified every signature
    assert {c["delivery"] for c in receiver.calls} == {f"{campaign['id']}:1:0"}
    assert receiver.calls[-1]["body"]["message"] == "Hi Asha"
    assert [(r.status, r.attempts) for r in log_rows(campaign["id"])] == [("retry", 1), ("retry", 2), ("success", 3)]
    assert done["counts"] == {"recipients": 1, "delivered": 1, "failed": 0, "retrying": 0}
    assert "503" in log_rows(campaign["id"])[0].last_error


def test_a_webhook_out_of_retries_is_dead_listed_and_replayed(client, worker):  # noqa: F811
    from app.tasks import broker

    a = sign_up(client, "acme")
    with Receiver(fail_first=1000) as receiver:
        receiver.secret = with_webhook(client, a, receiver.url)
        campaign = create(client, a, channel="webhook", recipients=[{"name": "Asha"}])
        done = finished(client, a, campaign["id"])
        assert done["counts"] == {"recipients": 1, "delivered": 0, "failed": 1, "retrying": 0}
        assert [r.status for r in log_rows(campaign["id"])] == ["retry"] * 4 + ["failed"]
        assert len(receiver.calls) == 5  # 1 attempt + 4 retries
        [dead] = dlq.list_dead(dlq.DeadFilter(kind="campaign"))
        assert dead["kind"] == "campaign.deliver" and "503" in dead["last_error"]
        listed = run_fairq("dlq", "list", "--kind", "campaign")
        assert listed.returncode == 0 and str(dead["id"]) in listed.stdout and "campaign.deliver" in listed.stdout
        assert wait_for(lambda: _dead_letter_count(broker) >= 1)

        receiver.fail_first = 0  # the receiver is back
        assert dlq.replay(dlq.DeadFilter(kind="campaign", tenant_id="acme"), broker=broker) == [dead["id"]]
        wait_for(lambda: shown(client, a, campaign["id"])["counts"]["delivered"] == 1)
    again = shown(client, a, campaign["id"])
    assert again["counts"] == {"recipients": 1, "delivered": 1, "failed": 0, "retrying": 0}
    assert [r.status for r in log_rows(campaign["id"])][-1] == "success"
    assert _dead_letter_count(broker) == 0


def test_a_4xx_is_not_retried(client, worker):  # noqa: F811
    a = sign_up(client, "acme")
    with Receiver(fail_first=1000, fail_status=410) as receiver:
        receiver.secret = with_webhook(client, a, receiver.url)
        campaign = create(client, a, channel="webhook")
        finished(client, a, campaign["id"])
    assert len(receiver.calls) == 1
    assert [(r.status, r.attempts) for r in log_rows(campaign["id"])] == [("failed", 1)]


@pytest.mark.parametrize("case", ["allowance withdrawn", "dns rebinding"])
def test_a_private_destination_is_refused_at_delivery(client, worker, monkeypatch, case):  # noqa: F811
    """The check is made again at each connection: nothing reaches a host that is not (or no longer) allowed."""
    a = sign_up(client, "acme")
    with Receiver() as receiver:
        if case == "allowance withdrawn":
            receiver.secret = with_webhook(client, a, receiver.url)
            webhooks.set_allowed_hosts("acme", [])
        else:  # the name resolved to a public address when it was set, to loopback when it is used
            fake_dns(monkeypatch, {"hooks.example.com": "93.184.215.14"})
            port = urlsplit(receiver.url).port
            receiver.secret = client.put("/settings/webhook", json={"url": f"http://hooks.example.com:{port}/hook"},
                                         headers=a.headers).get_json()["secret"]
            fake_dns(monkeypatch, {"hooks.example.com": "127.0.0.1"})
        campaign = create(client, a, channel="webhook")
        finished(client, a, campaign["id"])
    assert receiver.calls == []
    [row] = log_rows(campaign["id"])
    assert row.status == "failed" and row.attempts == 1 and "not a public address" in row.last_error


def test_cancel_stops_deliveries_not_yet_sent(client, worker):  # noqa: F811
    a = sign_up(client, "acme")
    with Receiver(delay=0.2) as receiver:
        receiver.secret = with_webhook(client, a, receiver.url)
        campaign = create(client, a, channel="webhook", recipients=[{"n": i} for i in range(60)])
        wait_for(lambda: len(receiver.calls) >= 3)
        response = client.post(f"/campaigns/{campaign['id']}/cancel", headers=a.headers)
        assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
        sent_at_cancel = len(receiver.calls)

        def settled():
            with system_session() as session:
                return not session.scalar(sa.select(sa.func.count()).select_from(Job).where(
                    Job.kind == "campaign.deliver", Job.state.in_(("dispatched", "running"))))
        wait_for(settled)
        # only messages already on their way when it was cancelled (one per worker thread) went out
        assert len(receiver.calls) <= sent_at_cancel + 4 < 60
    with system_session() as session:
        states = dict(session.execute(sa.select(Job.state, sa.func.count()).where(
            Job.kind == "campaign.deliver").group_by(Job.state)).all())
    assert states.get("cancelled", 0) >= 60 - sent_at_cancel - 4
    assert shown(client, a, campaign["id"])["status"] == "cancelled"


def test_send_at_starts_a_campaign_later(client, worker):  # noqa: F811
    a = sign_up(client, "acme")
    send_at = utcnow() + timedelta(seconds=2)
    campaign = create(client, a, send_at=send_at.isoformat())
    assert campaign["status"] == "scheduled"
    done = finished(client, a, campaign["id"])
    assert [r.processed_at >= send_at for r in log_rows(campaign["id"])] == [True]
    assert done["run"] == 1


def test_a_recurring_campaign_runs_once_per_tick(client, worker):  # noqa: F811
    a = sign_up(client, "acme")
    campaign = create(client, a, schedule="*/5 * * * *")
    first = job_row(campaign["job_id"])
    assert first.not_before > utcnow()
    # the first occurrence comes (instead of waiting up to five minutes, bring it forward)
    with system_session() as session:
        session.execute(sa.update(Job).where(Job.id == first.id).values(not_before=utcnow()))
    wait_for(lambda: (c := shown(client, a, campaign["id"]))["run"] == 1 and c["status"] == "scheduled")
    # the next tick: delivered twice (two schedulers, a redelivery) it still starts one run
    with system_session() as session:
        next_run_at = session.get(Campaign, campaign["id"]).next_run_at
    tick = next_run_at + timedelta(seconds=1)
    assert schedule.enqueue_due_runs(tick) == 1
    assert schedule.enqueue_due_runs(tick) == 0
    wait_for(lambda: (c := shown(client, a, campaign["id"]))["run"] == 2 and c["status"] == "scheduled")
    assert [(r.run, r.status) for r in log_rows(campaign["id"])] == [(1, "success"), (2, "success")]
    with system_session() as session:
        assert session.get(Campaign, campaign["id"]).next_run_at > next_run_at
        runs = session.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.kind == "campaign.run"))
    assert runs == 2
    # cancelled, it recurs no more
    assert client.post(f"/campaigns/{campaign['id']}/cancel", headers=a.headers).status_code == 200
    assert schedule.enqueue_due_runs(tick + timedelta(days=1)) == 0


# -- the outbox and the backlog, with worker processes -----------------------------------------


class Proxy:
    """A TCP proxy to RabbitMQ: while it is stopped, the broker is down for whoever connects through it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.sockets: list[socket.socket] = []

    def start(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        for sock in self.sockets:
            sock.close()

    def _accept(self, listener) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source, sink) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def start_worker(broker_url: str | None = None):
    env = dict(os.environ)
    if broker_url:
        env["FAIRQ_BROKER_URL"] = broker_url
    return subprocess.Popen(["dramatiq", "app.tasks", "--processes", "1", "--threads", "4"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(process, sig=signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        process.wait(60)


def test_a_campaign_created_while_the_broker_is_down_runs_once_it_is_back(real_settings, db):
    from app import create_app
    from app.settings import Settings
    from app.tasks import broker

    fresh_flush(broker)
    real = urlsplit(real_settings.broker_url)
    proxy = Proxy((real.hostname, real.port or 5672))
    through_proxy = urlunsplit(real._replace(netloc=f"{real.username}:{real.password}@127.0.0.1:{proxy.port}"))
    app = create_app(Settings.load(**{**real_settings.model_dump(), "broker_url": through_proxy}))
    client = app.test_client()
    assert [c["backend"] for c in client.get("/readyz").get_json()["checks"] if not c["ok"]] == ["broker"]
    a = sign_up(client, "acme")
    campaign = create(client, a, recipients=[{"n": i} for i in range(10)])  # the broker is down: 201 all the same
    assert shown(client, a, campaign["id"])["status"] == "pending"

    proxy.start()  # the broker is back
    worker_process = start_worker(through_proxy)
    try:
        done = finished(client, a, campaign["id"])
    finally:
        stop(worker_process)
        proxy.stop()
    assert done["counts"] == {"recipients": 10, "delivered": 10, "failed": 0, "retrying": 0}


def test_a_backlog_survives_its_workers(client, real_settings, db):
    """Stop the workers, create campaigns, start the workers (and kill one mid-way): every
    backlogged campaign runs, nothing is lost, nothing runs twice to completion."""
    from app.tasks import broker

    fresh_flush(broker)
    a, b = sign_up(client, "acme"), sign_up(client, "globex")
    campaigns = [create(client, who, message="Hi {n}", recipients=[{"n": i} for i in range(40)])
                 for who in (a, b) for _ in range(4)]
    first = start_worker()
    try:
        wait_for(lambda: len(log_rows(campaigns[0]["id"])) + len(log_rows(campaigns[4]["id"])) >= 5)
        stop(first, signal.SIGKILL)
        second = start_worker()
        try:
            for campaign in campaigns:
                who = a if campaign["tenant_id"] == "acme" else b
                finished(client, who, campaign["id"])
        finally:
            stop(second)
    finally:
        stop(first, signal.SIGKILL)
    for campaign in campaigns:
        rows = log_rows(campaign["id"])
        assert sorted(r.recipient for r in rows if r.status == "success") == list(range(40))
        assert shown(client, a if campaign["tenant_id"] == "acme" else b, campaign["id"])["counts"]["delivered"] == 40


@pytest.fixture
def slow_plan(fast_retries):  # noqa: F811
    """A plan that lets a tenant deliver 10 campaign messages a second (burst 1)."""
    from app.settings import Settings, use_settings

    settings = Settings.load(**{**fast_retries.model_dump(),
                                "plans": {"slow": {"kinds": {"campaign.deliver": {"rate": 10, "burst": 1}}}}})
    use_settings(settings)
    return settings


def test_the_plan_rate_limits_deliveries(client, slow_plan, worker):  # noqa: F811
    import time

    from app.tenancy import service as tenancy

    a = sign_up(client, "acme")
    tenancy.update_tenant("acme", tenancy.TenantChanges(plan="slow"))
    time.sleep(2.5)  # the dispatcher re-reads plans every 2 s
    campaign = create(client, a, recipients=[{"n": i} for i in range(11)])
    finished(client, a, campaign["id"])
    times = sorted(r.processed_at for r in log_rows(campaign["id"]))
    # 11 deliveries at 10 a second: the last one at least a second after the first (less a little slack)
    assert (times[-1] - times[0]).total_seconds() >= 0.8


def test_a_tick_over_the_quota_skips_its_occurrence(client, real_settings):
    from app.settings import Settings, use_settings
    from app.tenancy import service as tenancy

    a = sign_up(client, "acme")
    campaign = create(client, a, schedule="0 * * * *")
    use_settings(Settings.load(**{**real_settings.model_dump(), "plans": {"none": {"jobs_per_day": 0}}}))
    tenancy.update_tenant("acme", tenancy.TenantChanges(plan="none"))
    with system_session() as session:
        due = session.get(Campaign, campaign["id"]).next_run_at
    assert schedule.enqueue_due_runs(due + timedelta(seconds=1)) == 0
    with system_session() as session:
        skipped = session.get(Campaign, campaign["id"])
        runs = session.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.kind == "campaign.run"))
    assert "skipped" in skipped.last_error and "jobs_per_day" in skipped.last_error
    assert skipped.next_run_at > due and runs == 1  # the next occurrence will come; only the creation's run
