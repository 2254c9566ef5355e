"""The gate's and the dispatcher's hot statements: PostgreSQL runs prepared ones on connections of
their own (``app.scheduling.hotpath``), the embedded default the portable ones; both give the same
result. And the dispatcher companion: it leads while it is up, a worker's thread when it is gone."""
import os
import signal
import subprocess
import threading
from datetime import timedelta

import psycopg2
import pytest
import sqlalchemy as sa

import app.tasks  # noqa: F401  (the job kinds)

from app.db import Database, utcnow
from app.quota.models import UsageDaily
from app.scheduling.hotpath import Dedicated
from app.scheduling.jobs import enqueue_many
from app.scheduling.leader import LOCK_KEY
from app.scheduling.models import Job
from app.scheduling.store import Outcome, Store
from app.settings import Settings
from app.tenancy.models import Tenant
from app.tenancy.scoping import system_session, tenant_session
from tests.conftest import ROOT
from tests.helpers import sign_up, wait_for


@pytest.fixture(params=["postgresql", "sqlite"])
def side(request, tmp_path):
    """(settings, database) on PostgreSQL (the test database) or on the embedded default."""
    if request.param == "postgresql":
        yield request.getfixturevalue("settings"), request.getfixturevalue("db")
        return
    from app import migrate
    from app.settings import use_settings

    settings = Settings.load(data_dir=tmp_path, database_url="", database_owner_url="", broker_url="",
                             redis_url="", s3_bucket="")
    use_settings(settings)
    db = Database(settings.sqlalchemy_url)
    migrate.upgrade(db)
    yield settings, db
    use_settings(None)
    db.dispose()


def _jobs(settings, db, tenant_id, n):
    with tenant_session(tenant_id, db=db) as session:
        enqueue_many(session, settings, kind="noop", payloads=[{}] * n, cost=0.01)
    with system_session(db=db) as session:
        return list(session.scalars(sa.select(Job.id).where(Job.tenant_id == tenant_id).order_by(Job.id)))


def _rows(db, ids):
    with system_session(db=db) as session:
        jobs = {job.id: job for job in session.scalars(sa.select(Job).where(Job.id.in_(ids)))}
        usage = sorted(
            (u.tenant_id, u.kind, u.jobs, u.run_seconds, u.rows, u.messages, u.failures)
            for u in session.scalars(sa.select(UsageDaily))
        )
    return [
        (j.state, j.attempts, j.run_seconds, j.last_error, j.result, j.not_before is not None,
         j.dispatched_at is not None, j.started_at is not None, j.finished_at is not None)
        for j in (jobs[i] for i in ids)
    ], usage


def test_start_finish_and_mark_give_the_same_result_on_both_databases(side):
    settings, db = side
    store = Store(db)
    with system_session(db=db) as session:
        session.add_all([Tenant(id="acme", name="acme"), Tenant(id="beta", name="beta")])
    a1, a2, a3, a4 = _jobs(settings, db, "acme", 4)
    (b1,) = _jobs(settings, db, "beta", 1)
    with system_session(db=db) as session:
        session.get(Job, a4).cancel_requested = True
        session.get(Tenant, "beta").paused = True

    store.mark_dispatched([a1, a2])
    started = store.start_many([(a1, False), (a2, False), (a3, False), (a4, False), (b1, False)])
    assert [s and s.job_id for s in started] == [a1, a2, a3, None, None]  # cancelled; paused
    assert [s.attempt for s in started[:3]] == [1, 1, 1]
    assert store.start_many([(a1, False)]) == [None]  # running: only a redelivery starts it again
    (again,) = store.start_many([(a1, True)])  # its worker died
    assert again.attempt == 2
    store.mark_dispatched([a1])  # a late mark leaves a running job running

    store.finish_many([
        Outcome(again, "succeeded", 0.5, result={"n": 1}),
        Outcome(started[1], "failed", 0.25, error="boom", not_before=utcnow() + timedelta(hours=1)),
        Outcome(started[2], "dead", 0.125, error="gone"),
    ])
    store.finish_many([Outcome(again, "failed", 9.0, error="late")])  # not running any more: ignored
    store.mark_dispatched([a2])  # its retry is not due yet: stays failed

    jobs, usage = _rows(db, [a1, a2, a3, a4, b1])
    assert jobs == [
        ("succeeded", 2, 0.5, None, {"n": 1}, False, True, True, True),
        ("failed", 1, 0.25, "boom", None, True, True, True, False),  # to retry: not finished
        ("dead", 1, 0.125, "gone", None, False, False, True, True),
        ("queued", 0, 0.0, None, None, False, False, False, False),
        ("queued", 0, 0.0, None, None, False, False, False, False),
    ]
    # jobs are counted at enqueue; a late outcome still meters its run seconds: the worker spent them
    assert usage == [("acme", "noop", 4, 0.5 + 0.25 + 0.125 + 9.0, 0, 0, 3), ("beta", "noop", 1, 0.0, 0, 0, 0)]


def test_a_dedicated_connection_comes_back_after_it_was_cut(settings, db):
    """PostgreSQL ends the connection (a restart, a failover, an operator): the call in flight
    fails and the next one opens a new connection."""
    from app.db import get_owner_db

    store = Store(db)
    with system_session(db=db) as session:
        session.add(Tenant(id="acme", name="acme"))
    ids = _jobs(settings, db, "acme", 2)
    on = Dedicated(db, name="test")
    try:
        store.mark_dispatched(ids[:1], on=on)
        pid = on._connection.get_backend_pid()
        with get_owner_db(settings).engine.begin() as connection:
            connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(psycopg2.OperationalError):
            store.mark_dispatched(ids[1:], on=on)
        store.mark_dispatched(ids[1:], on=on)
        assert on._connection.get_backend_pid() != pid
        with on._connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone() == ("off",)
        assert [state for state, *_ in _rows(db, ids)[0]] == ["dispatched", "dispatched"]
        errors = []
        other = threading.Thread(target=lambda: _capture(errors, lambda: store.mark_dispatched(ids, on=on)))
        other.start()
        other.join()
        assert isinstance(errors[0], AssertionError)  # one thread's connection, never shared
    finally:
        on.close()


def _capture(errors, action):
    try:
        action()
    except BaseException as exc:  # the test reads it
        errors.append(exc)


def _leader(settings):
    """The application name of the connection holding the dispatcher's lock, if any."""
    from app.db import get_owner_db

    with get_owner_db(settings).engine.connect() as connection:
        return connection.execute(sa.text(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.mode = 'ExclusiveLock' AND l.granted "
            "AND l.classid = CAST(CAST(:high AS bigint) AS oid) AND l.objid = CAST(CAST(:low AS bigint) AS oid)"
        ), {"high": LOCK_KEY >> 32, "low": LOCK_KEY & 0xFFFFFFFF}).scalar()


def test_the_companion_leads_and_a_worker_thread_takes_over_when_it_dies(client, fast_retries, db):
    from tests.test_scheduling_e2e import enqueue, states

    a = sign_up(client, "acme")
    worker = subprocess.Popen(
        ["dramatiq", "app.tasks", "--processes", "1", "--threads", "2"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_for(lambda: (_leader(fast_retries) or "").startswith("fairq-dispatcher-companion:"), timeout=60)
        companion = int(_leader(fast_retries).rsplit(":", 1)[1])
        first = enqueue(client, a)
        wait_for(lambda: states([first])[first] == "succeeded", timeout=30)

        os.kill(companion, signal.SIGKILL)  # Dramatiq does not restart a fork: a thread must lead
        wait_for(lambda: (_leader(fast_retries) or "").startswith("fairq-dispatcher:"), timeout=15)
        second = enqueue(client, a)
        wait_for(lambda: states([second])[second] == "succeeded", timeout=30)
    finally:
        worker.send_signal(signal.SIGTERM)  # the command passes it on (to its group, a second one kills)
        try:
            worker.wait(30)
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
    assert worker.returncode == 0
    assert _leader(fast_retries) is None  # nothing left holding the lock


def test_posted_items_wait_for_room_and_drain_waits_for_their_write():
    """The gate posts outcomes without waiting; a slow database holds posters back at
    ``max_pending``, and a stopping worker drains what is queued."""
    from app.scheduling.batcher import GroupCommit

    written, gate = [], threading.Event()

    def flush(items):
        gate.wait(10)  # the database is slow until the test opens the gate
        written.extend(items)
        return [None] * len(items)

    commits = GroupCommit(flush, name="test-flush", max_batch=2, max_pending=3)
    commits.post(0)  # taken by the flusher at once, which then waits
    wait_for(lambda: commits._flushing, timeout=5)
    for item in (1, 2, 3):
        commits.post(item)
    poster = threading.Thread(target=commits.post, args=(4,))
    poster.start()
    poster.join(0.3)
    assert poster.is_alive()  # three are waiting: the fourth poster waits for room
    assert not commits.drain(0.1)
    gate.set()
    poster.join(5)
    assert commits.drain(5)
    assert written == [0, 1, 2, 3, 4]


def test_a_stopping_worker_writes_the_outcomes_it_queued(fast_retries, db, client):
    """SIGTERM while outcomes wait for a slow database: each is written before the process exits."""
    from app.db import get_owner_db
    from tests.test_scheduling_e2e import enqueue, states

    a = sign_up(client, "acme")
    ids = [enqueue(client, a, {"sleep_ms": 20}) for _ in range(200)]  # about a second of work
    worker = subprocess.Popen(
        ["dramatiq", "app.tasks", "--processes", "1", "--threads", "4"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_for(lambda: "succeeded" in states(ids).values(), timeout=60)
        with get_owner_db(fast_retries).engine.connect() as blocker:
            # the outcomes' usage upsert waits for this row lock: outcomes queue up in the worker
            blocker.execute(sa.text("SELECT 1 FROM usage_daily FOR UPDATE"))
            wait_for(lambda: list(states(ids).values()).count("running") >= 3, timeout=30)
            worker.send_signal(signal.SIGTERM)
            with pytest.raises(subprocess.TimeoutExpired):
                worker.wait(10)  # it waits for its outcomes to be written (it stops in ~2 s otherwise)
            blocker.rollback()
        worker.wait(60)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    assert "running" not in states(ids).values()  # every job that ran has its outcome recorded
