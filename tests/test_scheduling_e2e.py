"""The scheduler end to end on the real servers: RabbitMQ, PostgreSQL, Redis."""
import os
import signal
import subprocess
import time

import pytest
import sqlalchemy as sa
from dramatiq.middleware import SkipMessage

from app.metrics.instruments import instruments
from app.scheduling.kinds import JobContext, job_kind
from app.scheduling.models import Job
from app.tenancy import service
from app.tenancy.scoping import system_session
from tests.conftest import ROOT, fresh_flush
from tests.helpers import job_row, sign_up, wait_for

#: The test's own switch for the flaky kind: while True, every attempt fails.
BROKEN = {"on": True}


@job_kind("test.flaky", max_retries=2, time_limit=30, cost_estimate=0.01)
def flaky(job: JobContext) -> dict:
    if BROKEN["on"]:
        raise RuntimeError("downstream is down")
    return {"ok": True}


def busy_for(seconds: float) -> None:
    """Run ``seconds`` unless a time limit stops it (no checkpoint: only the limit can)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)


@job_kind("test.stuck", max_retries=0, time_limit=1, cost_estimate=0.01)
def stuck(job: JobContext) -> dict:
    """Runs 30 s unless its time limit stops it."""
    busy_for(30)
    return {"ok": True}


@job_kind("test.overrun", max_retries=1, time_limit=1, cost_estimate=0.01)
def overrun(job: JobContext) -> dict:
    """Runs 30 s (past its limit) in its first ``overrun_attempts`` attempts, then succeeds at once."""
    if job.attempt <= job.payload["overrun_attempts"]:
        busy_for(30)
    return {"ok": True}


def states(ids):
    with system_session() as session:
        return dict(session.execute(sa.select(Job.id, Job.state).where(Job.id.in_(ids))).all())


def enqueue(client, who, payload=None, **extra):
    response = client.post("/jobs", json={"kind": "noop", "payload": payload or {}, **extra}, headers=who.headers)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job_id"]


def test_jobs_of_two_tenants_run_through_rabbitmq(client, worker):
    a, b = sign_up(client, "acme"), sign_up(client, "globex")
    ids = [enqueue(client, a, {"sleep_ms": 2}) for _ in range(10)] + [enqueue(client, b) for _ in range(5)]
    wait_for(lambda: set(states(ids).values()) == {"succeeded"})
    job = job_row(ids[0])
    assert job.attempts == 1 and job.dispatched_at is not None and job.started_at >= job.enqueued_at
    assert job.run_seconds > 0


def recorded_outcomes(monkeypatch) -> list:
    """The outcomes the gate writes from now on, as they are written (a list that grows)."""
    from app.scheduling.store import Store

    outcomes = []
    finish_many = Store.finish_many

    def recording(self, batch, **kwargs):
        outcomes.extend(batch)
        return finish_many(self, batch, **kwargs)

    monkeypatch.setattr(Store, "finish_many", recording)
    return outcomes


def test_a_failing_job_retries_with_backoff_then_succeeds(client, worker, fast_retries, caplog, monkeypatch):
    """Each failed attempt asks for a retry at least the low end of its backoff later (0.5 x base
    x 2^(n-1): 0.1 s, then 0.2 s here), and the next attempt does not start before that. (Timing
    the gaps alone proves nothing: with no backoff at all the dispatcher's due check still takes
    a few hundred milliseconds to send the retry.)"""
    import logging

    from app.settings import Settings, use_settings

    use_settings(Settings.load(**{**fast_retries.model_dump(), "retry_backoff_seconds": 0.2,
                                  "retry_backoff_max_seconds": 10.0}))  # the gate reads it per outcome
    caplog.set_level(logging.INFO, logger="app.scheduling.gate")
    outcomes = recorded_outcomes(monkeypatch)
    a = sign_up(client, "acme")
    job_id = enqueue(client, a, {"fail_attempts": 2})
    wait_for(lambda: states([job_id])[job_id] == "succeeded")
    assert job_row(job_id).attempts == 3

    mine = [o for o in outcomes if o.started.job_id == job_id]
    assert [o.state for o in mine] == ["failed", "failed", "succeeded"]
    asked = [(o.not_before - o.began_at).total_seconds() for o in mine[:2]]  # the delay, plus the short run
    assert asked[0] >= 0.1 and asked[1] >= 0.2, asked  # the backoff's minimum, doubled for the second retry
    starts = [r.created for r in caplog.records if r.getMessage().startswith(f"job {job_id} running (attempt ")]
    assert len(starts) == 3
    for failed, next_start in zip(mine[:2], starts[1:]):
        assert next_start >= failed.not_before.timestamp()  # the retry waited for its time


def test_a_job_out_of_retries_dies_lands_in_the_dlq_and_replays(client, worker):
    from app.scheduling import dlq
    from app.tasks import broker

    from app.scheduling.jobs import enqueue as enqueue_job
    from app.settings import get_settings
    from app.tenancy.scoping import tenant_session

    BROKEN["on"] = True
    service.create_tenant("acme")
    with tenant_session("acme") as session:  # a kind that is not open to the API: enqueued by the service
        job, _ = enqueue_job(session, get_settings(), kind="test.flaky")
    job_id = job.id
    wait_for(lambda: states([job_id])[job_id] == "dead")
    dead = job_row(job_id)
    assert dead.attempts == 3 and "downstream is down" in dead.last_error
    assert [j["id"] for j in dlq.list_dead(dlq.DeadFilter(tenant_id="acme"))] == [job_id]
    # the message sits in RabbitMQ's dead-letter queue
    assert wait_for(lambda: _dead_letter_count(broker) >= 1)

    BROKEN["on"] = False  # the downstream came back
    assert dlq.replay(dlq.DeadFilter(job_ids=(job_id,)), broker=broker) == [job_id]
    wait_for(lambda: states([job_id])[job_id] == "succeeded")
    assert job_row(job_id).attempts == 1
    assert _dead_letter_count(broker) == 0  # replay took its message out of the DLQ


def test_a_dead_job_replays_from_its_row_after_its_dead_letter_is_gone(client, worker):
    """Dramatiq drops dead letters after 7 days; the ``dead`` row alone must be enough to replay."""
    import pika

    from app.scheduling import dlq
    from app.scheduling.jobs import enqueue as enqueue_job
    from app.scheduling.publisher import connection_parameters
    from app.settings import get_settings
    from app.tasks import broker
    from app.tenancy.scoping import tenant_session

    BROKEN["on"] = True
    service.create_tenant("acme")
    with tenant_session("acme") as session:
        job, _ = enqueue_job(session, get_settings(), kind="test.flaky", payload={"order": 42})
    job_id = job.id
    wait_for(lambda: states([job_id])[job_id] == "dead")
    wait_for(lambda: _dead_letter_count(broker) == 1)
    connection = pika.BlockingConnection(connection_parameters(broker))
    try:  # a week later: RabbitMQ has expired the message
        connection.channel().queue_purge("fairq.jobs.XQ")
    finally:
        connection.close()
    assert _dead_letter_count(broker) == 0

    BROKEN["on"] = False
    assert dlq.replay(dlq.DeadFilter(tenant_id="acme", kind="test.flaky"), broker=broker) == [job_id]
    wait_for(lambda: states([job_id])[job_id] == "succeeded")
    replayed = job_row(job_id)
    assert (replayed.attempts, replayed.payload, replayed.result) == (1, {"order": 42}, {"ok": True})


def _dead_letter_count(broker) -> int:
    import pika

    from app.scheduling.publisher import connection_parameters

    connection = pika.BlockingConnection(connection_parameters(broker))
    try:
        return connection.channel().queue_declare("fairq.jobs.XQ", passive=True).method.message_count
    finally:
        connection.close()


def test_a_paused_tenants_jobs_wait_and_resume_without_using_retries(client, worker):
    a = sign_up(client, "acme")
    service.update_tenant("acme", service.TenantChanges(paused=True))
    time.sleep(2.5)  # the dispatcher re-reads tenants every 2 s
    job_id = enqueue(client, a)
    time.sleep(1.5)
    job = job_row(job_id)
    assert job.state == "queued" and job.attempts == 0
    service.update_tenant("acme", service.TenantChanges(paused=False))
    wait_for(lambda: states([job_id])[job_id] == "succeeded")
    assert job_row(job_id).attempts == 1


def enforce_time_limits() -> None:
    """Start Dramatiq's time limit watcher: `dramatiq` and `fairq up` start it at process boot;
    the worker fixture does not."""
    from dramatiq.middleware import TimeLimit

    from app.tasks import broker

    limits = next(m for m in broker.middleware if isinstance(m, TimeLimit))
    if not limits.manager.is_alive():
        limits.manager.start()


def enqueue_service(tenant_id: str, kind: str, payload=None) -> int:
    """A job of a kind not open to the API, enqueued by the service; returns its id."""
    from app.scheduling.jobs import enqueue as enqueue_job
    from app.settings import get_settings
    from app.tenancy.scoping import tenant_session

    with tenant_session(tenant_id) as session:
        job, _ = enqueue_job(session, get_settings(), kind=kind, payload=payload)
        return job.id


def test_a_time_limit_stops_a_job_that_runs_past_it(client, worker):
    """Dramatiq's TimeLimit raises in the worker thread: the job ends at its limit, not at its end,
    and its thread is free again (the limit is what keeps a message's ack within RabbitMQ's timeout).
    With no retry left the job is dead, and its error says which limit it hit."""
    enforce_time_limits()
    service.create_tenant("acme")
    job_id = enqueue_service("acme", "test.stuck")
    wait_for(lambda: states([job_id])[job_id] == "dead", timeout=20)
    dead = job_row(job_id)
    assert dead.last_error == "ran past its time limit of 1 s and was stopped (TimeLimitExceeded)"
    assert dead.run_seconds < 5
    a = sign_up(client, "globex")
    after = enqueue(client, a)  # the worker goes on
    wait_for(lambda: states([after])[after] == "succeeded", timeout=20)


def test_a_job_stopped_at_its_time_limit_retries_with_backoff_and_dies_only_out_of_retries(client, worker,
                                                                                           monkeypatch):
    """A time-out is a failure like any other: with a retry left the attempt is ``failed``, with a
    backoff, and runs again (no dead letter); the last one is ``dead``. (Dramatiq's TimeLimitExceeded
    is a BaseException, which a plain ``except Exception`` misses.)"""
    from app.tasks import broker

    enforce_time_limits()
    outcomes = recorded_outcomes(monkeypatch)
    service.create_tenant("acme")
    # Given a job that overruns its first attempt only, and one that overruns both of its attempts
    recovers = enqueue_service("acme", "test.overrun", {"overrun_attempts": 1})
    dies = enqueue_service("acme", "test.overrun", {"overrun_attempts": 2})
    wait_for(lambda: states([recovers, dies]) == {recovers: "succeeded", dies: "dead"}, timeout=30)
    # Then each first attempt failed with its time limit and a backoff, and ran again
    timed_out = "ran past its time limit of 1 s and was stopped (TimeLimitExceeded)"
    for job_id, last in ((recovers, "succeeded"), (dies, "dead")):
        mine = [o for o in outcomes if o.started.job_id == job_id]
        assert [o.state for o in mine] == ["failed", last]
        assert mine[0].error == timed_out and mine[0].not_before is not None
        assert mine[0].not_before > mine[0].began_at and mine[0].run_seconds < 5
        assert [o.started.attempt for o in mine] == [1, 2]
    assert (job_row(recovers).attempts, job_row(recovers).last_error) == (2, None)
    assert (job_row(dies).attempts, job_row(dies).last_error) == (2, timed_out)
    # and only the job out of retries left a dead letter
    assert wait_for(lambda: _dead_letter_count(broker) >= 1)
    assert _dead_letter_count(broker) == 1


def test_a_tenant_paused_after_its_job_was_dispatched_is_deferred_at_the_worker_and_runs_on_resume(client, worker):
    """The dispatcher sent acme's job while acme was active; acme is paused before a worker takes
    the message. The gate turns it away: back to ``queued`` for later, no attempt used, counted as
    a deferral; after resume it runs once."""
    a, busy = sign_up(client, "acme"), sign_up(client, "globex")
    # Given the worker's threads (4) and its prefetch buffer (8 messages) full of globex's work
    filler = [enqueue(client, busy, {"sleep_ms": 2000}) for _ in range(8)]
    wait_for(lambda: list(states(filler).values()).count("running") == 8, timeout=30)
    deferred = instruments().deferrals.labels("acme", "paused")
    before = deferred._value.get()
    # When acme's job is dispatched (it waits in RabbitMQ) and acme is paused then
    job_id = enqueue(client, a)
    wait_for(lambda: states([job_id])[job_id] == "dispatched", timeout=10, interval=0.01)
    service.update_tenant("acme", service.TenantChanges(paused=True))
    # Then the worker turns it away as it reaches it
    wait_for(lambda: deferred._value.get() - before >= 1, timeout=30)
    job = job_row(job_id)
    assert (job.state, job.attempts, job.started_at) == ("queued", 0, None), (job.state, job.attempts)
    assert job.progress_message == "deferred: tenant paused"
    time.sleep(2.5)  # and it stays waiting while acme is paused (the dispatcher re-reads tenants every 2 s)
    assert (job_row(job_id).state, job_row(job_id).attempts) == ("queued", 0)
    service.update_tenant("acme", service.TenantChanges(paused=False))
    wait_for(lambda: states([job_id])[job_id] == "succeeded", timeout=30)
    assert job_row(job_id).attempts == 1  # one attempt: the deferral used no retry
    assert job_row(job_id).progress_message is None  # the deferral is not the finished job's news


def test_cancelling_a_running_job_stops_it_at_a_checkpoint(client, worker):
    a = sign_up(client, "acme")
    job_id = enqueue(client, a, {"sleep_ms": 20_000})
    wait_for(lambda: states([job_id])[job_id] == "running")
    assert client.post(f"/jobs/{job_id}/cancel", headers=a.headers).status_code == 200
    wait_for(lambda: states([job_id])[job_id] == "cancelled", timeout=5)
    assert job_row(job_id).run_seconds < 5


# -- the gate, message by message ------------------------------------------------------------


def test_the_gate_defers_a_paused_tenants_job_without_running_it(fast_retries, db):
    """A message that reaches a worker while its tenant is paused does not run and uses no attempt."""
    from app.scheduling.gate import Gate
    from app.scheduling.kinds import kinds
    from app.tenancy.scoping import tenant_session

    service.create_tenant("acme")
    with tenant_session("acme") as session:
        session.add(Job(tenant_id="acme", kind="noop", state="dispatched", payload={}))
    with system_session() as session:
        job_id = session.scalar(sa.select(Job.id))
    service.update_tenant("acme", service.TenantChanges(paused=True))
    message = kinds()["noop"].actor.message(job_id)
    deferred = instruments().deferrals.labels("acme", "paused")
    before = deferred._value.get()
    with pytest.raises(SkipMessage):
        Gate().before_process_message(None, message)
    job = job_row(job_id)
    assert (job.state, job.attempts) == ("queued", 0) and job.not_before is not None
    assert deferred._value.get() - before == 1  # counted as a deferral by the pause


def test_the_gate_skips_when_the_database_is_down(fast_retries, db, monkeypatch):
    """Only SkipMessage stops a job: a gate that cannot reach the database must raise it, not crash."""
    from app.db import Database
    from app.scheduling.gate import Gate
    from app.scheduling.kinds import kinds
    from app.scheduling.store import Store
    from tests.conftest import free_port

    broken = Store(Database(f"postgresql+psycopg2://nobody@127.0.0.1:{free_port()}/none"))
    monkeypatch.setattr(Gate, "store", property(lambda self: broken))
    with pytest.raises(SkipMessage):
        Gate().before_process_message(None, kinds()["noop"].actor.message(1))


def test_a_worker_killed_mid_job_loses_nothing(client, fast_retries, db):
    """SIGKILL a worker process while its job runs: the job runs again elsewhere and completes once."""
    from app.tasks import broker

    fresh_flush(broker)
    a = sign_up(client, "acme")
    job_id = enqueue(client, a, {"sleep_ms": 3000})

    def start_worker():
        return subprocess.Popen(
            ["dramatiq", "app.tasks", "--processes", "1", "--threads", "2"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )

    first = start_worker()
    try:
        wait_for(lambda: states([job_id])[job_id] == "running", timeout=60)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        assert states([job_id])[job_id] == "running"  # the record still says running: the worker died
        second = start_worker()
        try:
            wait_for(lambda: states([job_id])[job_id] == "succeeded", timeout=60)
        finally:
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    job = job_row(job_id)
    assert job.attempts == 2 and job.finished_at is not None


def test_a_dedicated_plan_runs_only_on_its_own_workers(client, worker):
    """A tenant on a dedicated plan: its jobs go to fairq.t.<tenant>, which general workers leave alone."""
    a = sign_up(client, "acme")
    service.update_tenant("acme", service.TenantChanges(plan="dedicated"))
    job_id = enqueue(client, a)
    assert job_row(job_id).queue == "fairq.t.acme"
    time.sleep(2)
    assert states([job_id])[job_id] in ("queued", "dispatched")  # the general worker did not take it
    own = subprocess.Popen(
        ["dramatiq", "app.tasks", "-Q", "fairq.t.acme", "--processes", "1", "--threads", "1"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_for(lambda: states([job_id])[job_id] == "succeeded", timeout=60)
    finally:
        os.killpg(own.pid, signal.SIGTERM)
        own.wait(30)
