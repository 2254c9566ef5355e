"""The gate's and the dispatcher's hot statements: PostgreSQL runs prepared ones on connections of
their own (``app.scheduling.hotpath``), the embedded default the portable ones; both give the same
result. And the dispatcher companion: it leads while it is up, a worker's thread when it is gone."""
import os
import signal
import subprocess
import threading
import time
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
from app.scheduling.store import Outcome, Started, Store
from app.settings import Settings
from app.tenancy import service
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
    # a3 asked for twice in one batch (two copies of its message): only the first copy runs
    started = store.start_many([(a1, False), (a2, False), (a3, False), (a3, False), (a4, False), (b1, False)])
    assert [s and s.job_id for s in started] == [a1, a2, a3, None, None, None]  # twice; cancelled; paused
    del started[3]
    assert [s.attempt for s in started[:3]] == [1, 1, 1]
    # a claim given back (its message went back to the broker unprocessed) uses no attempt
    assert store.unclaim_many([started[2]]) == 1
    assert store.unclaim_many([started[2]]) == 0  # not running any more
    (reclaimed,) = store.start_many([(a3, False)])
    assert reclaimed.attempt == 1
    stale = Started(**{**reclaimed.__dict__, "claimed_at": reclaimed.claimed_at - timedelta(seconds=1)})
    assert store.unclaim_many([stale]) == 0  # claimed since by someone else: left alone
    started[2] = reclaimed
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
        ("dead", 1, 0.125, "gone", None, False, True, True, True),  # its start filled dispatched_at in
        ("queued", 0, 0.0, None, None, False, False, False, False),
        ("queued", 0, 0.0, None, None, False, False, False, False),
    ]
    # jobs are counted at enqueue; a late outcome still meters its run seconds: the worker spent them
    assert usage == [("acme", "noop", 4, 0.5 + 0.25 + 0.125 + 9.0, 0, 0, 3), ("beta", "noop", 1, 0.0, 0, 0, 0)]


def test_outcomes_with_awkward_text_are_written_as_given_on_both_databases(side):
    """PostgreSQL gets the outcome statement's arrays as literals built in Python (``hotpath.texts``
    and the rest): errors and results with quotes, backslashes, braces, commas, new lines, the
    word NULL or non-ASCII text come back exactly, and rows and messages are metered."""
    settings, db = side
    store = Store(db)
    with system_session(db=db) as session:
        session.add(Tenant(id="acme", name="acme"))
    ids = _jobs(settings, db, "acme", 5)
    started = store.start_many([(job_id, False) for job_id in ids])
    awkward = ['say "hi"', "back\\slash \\\"", "NULL", "", "{a,b}, 'c'\nnext line \u00fcn\u00efcode \u20b9"]
    store.finish_many([
        Outcome(started[0], "dead", 0.1, error=awkward[0]),
        Outcome(started[1], "failed", 0.2, error=awkward[1], not_before=utcnow() + timedelta(hours=1)),
        Outcome(started[2], "succeeded", 0.3, result={"rows_loaded": 7, "note": awkward[4], "NULL": None}),
        Outcome(started[3], "succeeded", 0.4, result={"messages": 3, "quote": awkward[0], "slash": awkward[1]}),
        Outcome(started[4], "dead", 1e-05, error=awkward[2] + awkward[3] + awkward[4]),
    ])
    jobs, usage = _rows(db, ids)
    assert [(state, error, result) for state, _, _, error, result, *_ in jobs] == [
        ("dead", awkward[0], None),
        ("failed", awkward[1], None),
        ("succeeded", None, {"rows_loaded": 7, "note": awkward[4], "NULL": None}),
        ("succeeded", None, {"messages": 3, "quote": awkward[0], "slash": awkward[1]}),
        ("dead", "NULL" + awkward[4], None),
    ]
    assert [run for _, _, run, *_ in jobs] == [0.1, 0.2, 0.3, 0.4, 1e-05]
    assert usage == [("acme", "noop", 5, 0.1 + 0.2 + 0.3 + 0.4 + 1e-05, 7, 3, 3)]


def test_array_literals_read_back_as_the_values_they_were_built_from(db):
    from app.scheduling import hotpath

    strings = ['say "hi"', "back\\slash\\", "NULL", "", None, "{a,b}, 'c'\n\u20b9"]
    now = utcnow()
    on = Dedicated(db, name="test")
    try:
        for name, kind, literal, values in [
            ("t_ints", "bigint[]", hotpath.ints, [1, -2, 2**62]),
            ("t_floats", "float8[]", hotpath.floats, [0.1, 1e-05, 2.0000000000000004, 3, 1e300]),
            ("t_texts", "text[]", hotpath.texts, strings),
            ("t_times", "timestamptz[]", hotpath.times, [now, None, now.replace(microsecond=0)]),
            ("t_empty", "text[]", hotpath.texts, []),
        ]:
            ((back,),) = on.run(hotpath.Prepared(name, (kind,), "SELECT $1"), (literal(values),))
            assert back == values, name
    finally:
        on.close()


def test_only_failed_and_dead_attempts_are_metered_as_failures_on_both_databases(side):
    """A cancelled attempt is no failure: of four attempts that end cancelled, succeeded, failed
    and dead, usage counts two failures (and every attempt's run seconds)."""
    settings, db = side
    store = Store(db)
    with system_session(db=db) as session:
        session.add(Tenant(id="acme", name="acme"))
    ids = _jobs(settings, db, "acme", 4)
    started = store.start_many([(job_id, False) for job_id in ids])
    store.finish_many([
        Outcome(started[0], "cancelled", 0.5, error="cancelled while running"),
        Outcome(started[1], "succeeded", 0.25),
        Outcome(started[2], "failed", 0.125, error="boom", not_before=utcnow() + timedelta(hours=1)),
        Outcome(started[3], "dead", 0.0625, error="gone"),
    ])
    jobs, usage = _rows(db, ids)
    assert [job[0] for job in jobs] == ["cancelled", "succeeded", "failed", "dead"]
    assert usage == [("acme", "noop", 4, 0.5 + 0.25 + 0.125 + 0.0625, 0, 0, 2)]


def test_a_deferral_message_is_cleared_when_the_job_starts_and_a_jobs_own_progress_stays(side):
    settings, db = side
    store = Store(db)
    with system_session(db=db) as session:
        session.add(Tenant(id="acme", name="acme"))
    deferred, reporting = _jobs(settings, db, "acme", 2)
    # Given a job the gate deferred (its tenant was paused) and a running job that reported progress
    assert store.defer(deferred, seconds=0, reason="tenant paused") == "acme"
    store.start_many([(reporting, False)])
    store.progress(reporting, 5, 10, "halfway")

    def message(job_id):
        with system_session(db=db) as session:
            return session.get(Job, job_id).progress_message

    assert message(deferred) == "deferred: tenant paused"
    # When the deferred job starts, and the other starts again (its worker died)
    (started,) = store.start_many([(deferred, False)])
    (again,) = store.start_many([(reporting, True)])
    # Then the deferral is forgotten, the job's own progress is not
    assert message(deferred) is None and message(reporting) == "halfway"
    store.finish_many([Outcome(started, "succeeded", 0.5), Outcome(again, "succeeded", 0.5)])
    assert message(deferred) is None and message(reporting) == "halfway"


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


def _start_worker(*, threads: int) -> subprocess.Popen:
    """``dramatiq app.tasks`` with one process, in a session of its own."""
    return subprocess.Popen(["dramatiq", "app.tasks", "--processes", "1", "--threads", str(threads)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _stop_worker(worker: subprocess.Popen, timeout: float = 60) -> None:
    """SIGTERM the command (it passes it on to its group; a second one would kill) and check it
    stopped cleanly (SIGKILL for the group if it did not stop in time)."""
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    assert worker.returncode == 0


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
    worker = _start_worker(threads=2)
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
        _stop_worker(worker)
    assert _leader(fast_retries) is None  # nothing left holding the lock


def test_jobs_in_flight_when_the_leader_dies_each_run_once(client, fast_retries, db):
    """SIGKILL the leading companion while two tenants' backlogs flow through the window: a worker's
    thread takes over within seconds, and every job, those it had in flight included, runs to
    completion once (one attempt each: a job run twice would have been claimed twice)."""
    def states():
        with system_session() as session:
            return dict(session.execute(sa.select(Job.state, sa.func.count()).group_by(Job.state)).all())

    for tenant_id in ("acme", "globex"):
        service.create_tenant(tenant_id)
    worker = _start_worker(threads=4)
    try:
        wait_for(lambda: (_leader(fast_retries) or "").startswith("fairq-dispatcher-companion:"), timeout=60)
        companion = int(_leader(fast_retries).rsplit(":", 1)[1])
        for tenant_id in ("acme", "globex"):
            with tenant_session(tenant_id) as session:
                enqueue_many(session, fast_retries, kind="noop", payloads=[{"sleep_ms": 20}] * 200)
        wait_for(lambda: states().get("succeeded", 0) >= 40, timeout=60)
        os.kill(companion, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: (_leader(fast_retries) or "").startswith("fairq-dispatcher:"), timeout=15)
        assert time.monotonic() - killed < 5
        wait_for(lambda: states().get("succeeded", 0) == 400, timeout=120)
    finally:
        _stop_worker(worker)
    with system_session() as session:
        attempts = dict(session.execute(sa.select(Job.attempts, sa.func.count()).group_by(Job.attempts)).all())
    assert attempts == {1: 400}


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
    worker = _start_worker(threads=4)
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


def _job(job_id):
    with system_session() as session:
        job = session.get(Job, job_id)
        session.expunge(job)
        return job


def test_a_message_is_claimed_as_it_arrives_and_given_back_if_it_never_ran(fast_retries, db, client):
    """One worker thread, Dramatiq's prefetch of two: the second job is claimed (``running``) while it
    waits for the thread; its start is recorded as the moment it really began; a stopping worker
    gives such a claim back (``dispatched``, no attempt used) and the next worker runs the job."""
    from tests.test_scheduling_e2e import enqueue, states

    a = sign_up(client, "acme")
    worker = _start_worker(threads=1)
    try:
        long, short = enqueue(client, a, {"sleep_ms": 2000}), enqueue(client, a)
        wait_for(lambda: states([long, short]) == {long: "running", short: "running"}, timeout=60)
        wait_for(lambda: states([short])[short] == "succeeded", timeout=30)
        first, second = _job(long), _job(short)
        # claimed about when the long job began, but recorded as starting once the thread was free
        assert second.started_at - first.started_at > timedelta(seconds=1.5)
        assert second.attempts == 1

        long, waiting = enqueue(client, a, {"sleep_ms": 3000}), enqueue(client, a)
        wait_for(lambda: states([long, waiting]) == {long: "running", waiting: "running"}, timeout=30)
    finally:
        _stop_worker(worker)
    assert states([long, waiting]) == {long: "succeeded", waiting: "dispatched"}
    given_back = _job(waiting)
    assert given_back.attempts == 0 and given_back.started_at is None

    worker = _start_worker(threads=1)
    try:
        wait_for(lambda: states([waiting])[waiting] == "succeeded", timeout=60)
    finally:
        _stop_worker(worker)
    assert _job(waiting).attempts == 1


def _acme_jobs(side, n):
    """Tenant acme with ``n`` queued jobs: the store, and the jobs' ids."""
    settings, db = side
    with system_session(db=db) as session:
        session.add(Tenant(id="acme", name="acme"))
    return Store(db), _jobs(settings, db, "acme", n)


def _age(db, ages):
    """Put jobs in a state, dispatched (and, running, claimed) so many seconds ago: {id: (state, age)}."""
    now = utcnow()
    with system_session(db=db) as session:
        for job_id, (state, age) in ages.items():
            job = session.get(Job, job_id)
            job.state = state
            job.dispatched_at = now - timedelta(seconds=age)
            job.started_at = job.dispatched_at if state == "running" else None


def test_jobs_past_their_lease_are_queued_again(side):
    """Dispatched past the lease, or running past its own time limit, the longest one (a claimed
    message may wait that long in a worker's buffer) and the lease, on a broker with no ack timeout
    (the in-process one): presumed lost, queued again."""
    _, db = side
    store, ids = _acme_jobs(side, 5)
    _age(db, {  # (state, seconds since dispatched / claimed)
        ids[0]: ("dispatched", 299), ids[1]: ("dispatched", 301),
        ids[2]: ("running", 10 + 60 + 299), ids[3]: ("running", 10 + 60 + 301), ids[4]: ("queued", 10_000),
    })
    lost = store.lost(lease_seconds=300, time_limits={"noop": 10.0, "other": 60.0}, ack_timeout=None)
    assert sorted(lost) == [ids[1], ids[3]]
    jobs, _ = _rows(db, ids)
    assert [j[0] for j in jobs] == ["dispatched", "queued", "running", "queued", "queued"]


def test_a_running_job_is_not_lost_while_rabbitmq_may_still_hold_its_message(side):
    """On RabbitMQ a job is claimed as its message reaches a worker process, and the message may
    wait in that process's buffer for several rounds of the longest time limit (up to 90 % of the
    broker's ack timeout, which the worker's boot check enforces) before it runs. Until the ack
    timeout has passed, the job is not lost: put back then, it would run twice."""
    _, db = side
    store, ids = _acme_jobs(side, 4)
    # Given running jobs claimed this long ago (own limit 10 s, longest 60 s, lease 300 s, ack 1800 s)
    _age(db, {
        ids[0]: ("running", 10 + 60 + 301),  # past the bound of a broker without an ack timeout ...
        ids[1]: ("running", 1800 * 0.9 + 301),  # ... and past the worker's budget of the ack timeout
        ids[2]: ("running", 1800 + 299),  # within the ack timeout and the lease
        ids[3]: ("running", 1800 + 301),  # past both: RabbitMQ has taken the message back long ago
    })
    # When the lease check runs
    lost = store.lost(lease_seconds=300, time_limits={"noop": 10.0, "other": 60.0}, ack_timeout=1800)
    # Then only the job past the ack timeout and the lease is queued again
    assert lost == [ids[3]]
    jobs, _ = _rows(db, ids)
    assert [j[0] for j in jobs] == ["running", "running", "running", "queued"]
    # and a kind's own limit and the longest one, if together longer, still count in full
    _age(db, {ids[2]: ("running", 1800 + 400)})
    assert store.lost(lease_seconds=300, time_limits={"noop": 1000.0, "other": 1000.0}, ack_timeout=1800) == []
    assert store.lost(lease_seconds=300, time_limits={"noop": 10.0, "other": 60.0}, ack_timeout=1800) == [ids[2]]


def test_lingering_items_gather_into_one_write_and_drain_does_not_wait_for_the_linger():
    from app.scheduling.batcher import GroupCommit

    batches = []

    def flush(items):
        batches.append(list(items))
        return [None] * len(items)

    commits = GroupCommit(flush, name="test-linger", linger=0.3)
    first = commits.request(1)
    time.sleep(0.1)
    second = commits.request(2)
    first.wait(5), second.wait(5)
    assert batches == [[1, 2]]  # one write for both

    slow = GroupCommit(flush, name="test-linger-drain", linger=30.0)
    slow.post(3)
    began = time.monotonic()
    assert slow.drain(5)
    assert time.monotonic() - began < 5 and batches[-1] == [3]


def test_a_late_mark_leaves_a_job_claimed_since_its_publish_alone(side):
    """The marks gather for a while: by then the job may have been claimed, failed and come due for
    its retry. Marking it ``dispatched`` would strand it (no message carries the retry) until its lease."""
    settings, db = side
    store = Store(db)
    with system_session(db=db) as session:
        session.add(Tenant(id="acme", name="acme"))
    (job_id,) = _jobs(settings, db, "acme", 1)
    published = utcnow()
    (started,) = store.start_many([(job_id, False)])
    store.finish_many([Outcome(started, "failed", 0.01, error="boom", not_before=utcnow())])
    store.mark_dispatched([job_id], published_at=[published])
    assert _rows(db, [job_id])[0][0][0] == "failed"  # still waiting for its retry's dispatch
    store.mark_dispatched([job_id], published_at=[utcnow()])  # the retry's own publish
    assert _rows(db, [job_id])[0][0][0] == "dispatched"


def test_the_states_the_hot_statements_name_are_every_state_of_the_check_constraint():
    """``hotpath.state_in`` writes "in these states" as "in none of the others": a state added to
    the check constraint and not to ``STATES`` would pass its tests."""
    import re

    from app.scheduling.models import STATES

    (check,) = [c for c in Job.__table__.constraints if isinstance(c, sa.CheckConstraint)]
    assert set(re.findall(r"'(\w+)'", str(check.sqltext))) == set(STATES) and len(STATES) == 7


@pytest.mark.parametrize("table", ["large", "small"])
def test_the_hot_statements_find_their_jobs_by_id_whatever_the_statistics_say(settings, db, table):
    """With the statistics taken when no job was running or waiting (most jobs finished), a test
    of the state that matches a partial index's predicate made PostgreSQL walk that index —
    every entry left by the jobs that ever were in the state — instead of finding the batch's
    jobs by id. And a dedicated connection plans each statement once (``hotpath.SESSION``): a
    plan made while the statistics said the table was small scanned it whole, and would have
    gone on doing so as it grew. Each statement's generic plan, in a dedicated connection's
    session, must reach ``jobs`` only through index conditions on the batch's ids."""
    from app.db import get_owner_db
    from app.scheduling import hotpath

    with system_session(db=db) as session:
        session.add(Tenant(id="acme", name="acme"))
    _jobs(settings, db, "acme", 1)
    owner = get_owner_db(settings).engine
    if table == "large":
        with owner.begin() as connection:  # a table too large to scan whole, every job finished
            connection.execute(sa.text(
                "INSERT INTO jobs (tenant_id, kind, state, priority, payload, attempts, max_retries, enqueued_at, "
                "run_seconds, cancel_requested) SELECT tenant_id, kind, 'succeeded', priority, payload, 1, "
                "max_retries, enqueued_at, 0.01, false FROM jobs, generate_series(1, 20000)"))
            connection.execute(sa.text("UPDATE jobs SET state = 'succeeded'"))
    with owner.connect() as connection:  # "small": one job, as just after a benchmark's reset
        connection.execute(sa.text("ANALYZE jobs"))
    connection = db.system_engine.raw_connection()
    connection.detach()  # closed for good below: its prepared statements must not go back to the pool
    try:
        with connection.cursor() as cursor:
            for setting in hotpath.SESSION:
                cursor.execute(setting)
            for statement in (hotpath.START, hotpath.FINISH, hotpath.MARK_DISPATCHED):
                cursor.execute(statement.prepare)
                nulls = ", ".join(f"NULL::{t}" for t in statement.types)
                cursor.execute(f"EXPLAIN EXECUTE {statement.name} ({nulls})")
                lines = [row[0] for row in cursor.fetchall()]
                assert _jobs_found_by_id(lines), "\n".join(lines)
    finally:
        connection.rollback()
        connection.close()


def _jobs_found_by_id(plan: list[str]) -> bool:
    """Whether every scan of ``jobs`` in an EXPLAIN's lines goes through an index by the ids."""
    import re

    scans = 0
    for number, line in enumerate(plan):
        if re.search(r"Seq Scan on jobs\b", line):
            return False
        if re.search(r"Index (Only )?Scan (using|on) (pk_jobs|ix_jobs_\w+|uq_jobs_\w+)", line):
            scans += 1
            condition = plan[number + 1] if number + 1 < len(plan) else ""
            if "Index Cond" not in condition or "id = ANY" not in condition:
                return False
    return scans > 0