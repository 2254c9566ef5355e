"""The dispatcher on the embedded path, step by step: a fake publisher, SQLite, a fake clock."""
import pytest
import sqlalchemy as sa

import app.tasks  # noqa: F401  (the job kinds)

from app.db import Database
from app.quota.memory_buckets import MemoryBuckets
from app.scheduling.dispatcher import Dispatcher
from app.scheduling.jobs import enqueue_many
from app.scheduling.kinds import kinds
from app.scheduling.leader import LocalLeadership
from app.scheduling.publisher import make_publisher
from app.scheduling.store import Store
from app.settings import Settings
from app.tenancy.models import Tenant
from app.tenancy.scoping import system_session, tenant_session


class FakePublisher:
    def __init__(self):
        self.sent = []
        self.queues = {}

    def publish(self, messages):
        self.sent.extend(m.args[0] for m in messages)
        self.queues.update((m.args[0], m.queue_name) for m in messages)

    def close(self):
        pass


class NoNews(LocalLeadership):
    def wait_for_news(self, timeout):
        return set()


@pytest.fixture
def embedded(tmp_path):
    from app import migrate
    from app.settings import use_settings

    settings = Settings.load(data_dir=tmp_path, database_url="", database_owner_url="", broker_url="",
                             redis_url="", s3_bucket="", dispatch_window=6,
                             plans={"slow": {"rate": 1, "burst": 2}})
    use_settings(settings)
    db = Database(settings.sqlalchemy_url)
    migrate.upgrade(db)
    yield settings, db
    use_settings(None)


def make(settings, db, tenants):
    with system_session(db=db) as session:
        for tenant_id, weight, plan in tenants:
            session.add(Tenant(id=tenant_id, name=tenant_id, weight=weight, plan=plan))
    publisher = FakePublisher()
    leadership = NoNews()
    dispatcher = Dispatcher(None, settings, store=Store(db), publisher=publisher,
                            buckets=MemoryBuckets(), leadership=leadership)
    return dispatcher, publisher


def add_jobs(settings, db, tenant_id, n, priority="normal"):
    with tenant_session(tenant_id, db=db) as session:
        enqueue_many(session, settings, kind="noop", payloads=[{}] * n, priority=priority, cost=0.01)


def tenant_of(db, ids):
    from app.scheduling.models import Job

    with system_session(db=db) as session:
        return [session.get(Job, i).tenant_id for i in ids]


def test_weights_decide_the_dispatch_order(embedded):
    settings, db = embedded
    dispatcher, publisher = make(settings, db, [("a", 1, "default"), ("b", 2, "default")])
    add_jobs(settings, db, "a", 30)
    add_jobs(settings, db, "b", 30)
    dispatcher.become_leader()
    assert dispatcher.step() == 6  # the window
    assert tenant_of(db, publisher.sent).count("b") == 4
    # nothing more while the window is full
    assert dispatcher.step() == 0
    # the six end (10 ms each, as estimated): the next six keep the 1 : 2 ratio
    for job_id in list(dispatcher.in_flight):
        dispatcher._ended(job_id, 0.01)
    assert dispatcher.step() == 6
    assert tenant_of(db, publisher.sent).count("b") == 8


def test_a_job_with_no_cost_of_its_own_is_charged_its_kinds_estimate_which_follows_measured_run_times(embedded):
    """At dispatch a job is charged its kind's estimate; when it ends, its tenant's charge is corrected
    to the measured time and the kind's estimate moves towards it (a job that never ran measures
    nothing), so the next jobs of the kind are charged closer to what they cost."""
    from app.scheduling.dispatcher import EWMA

    settings, db = embedded
    dispatcher, publisher = make(settings, db, [("a", 1, "default")])
    with tenant_session("a", db=db) as session:
        enqueue_many(session, settings, kind="noop", payloads=[{}] * 20)  # no cost given
    declared = kinds()["noop"].cost_estimate
    dispatcher.become_leader()
    # Given six jobs dispatched, each charged the kind's declared estimate
    assert dispatcher.step() == 6
    assert [f.estimate for f in dispatcher.in_flight.values()] == [declared] * 6
    assert dispatcher.queue.snapshot()["a"]["vtime"] == pytest.approx(6 * declared)
    # When one ends after a second, and one ends without having run
    ran, never_ran, *others = list(dispatcher.in_flight)
    dispatcher._ended(ran, 1.0)
    dispatcher._ended(never_ran, 0.0)
    # Then the tenant is charged what they took, and the estimate moved once, towards the second
    assert dispatcher.queue.snapshot()["a"]["vtime"] == pytest.approx(4 * declared + 1.0)
    learned = (1 - EWMA) * declared + EWMA * 1.0
    assert dispatcher.estimates["noop"] == pytest.approx(learned)
    # and the jobs read from the database from now on are charged the new estimate
    for job_id in others:
        dispatcher._ended(job_id, 1.0)
    learned = dispatcher.estimates["noop"]
    dispatcher.queue = dispatcher._fair_queue()  # an empty buffer: the next candidates are read now
    dispatcher._refresh_tenants(force=True)
    dispatcher.queue.notify("a")
    assert dispatcher.step() == 6
    assert [f.estimate for f in dispatcher.in_flight.values()] == [pytest.approx(learned)] * 6


def test_a_newcomer_is_served_in_the_next_round_whatever_the_backlog(embedded):
    settings, db = embedded
    dispatcher, publisher = make(settings, db, [("big", 1, "default"), ("small", 1, "default")])
    add_jobs(settings, db, "big", 500)
    dispatcher.become_leader()
    dispatcher.step()
    add_jobs(settings, db, "small", 2)
    dispatcher.queue.notify("small")
    for job_id in list(dispatcher.in_flight):
        dispatcher._ended(job_id, 0.01)
    dispatcher.step()
    assert tenant_of(db, publisher.sent[6:]).count("small") == 2


def test_paused_tenants_wait_and_rate_limits_hold(embedded):
    from app.tenancy import service

    settings, db = embedded
    dispatcher, publisher = make(settings, db, [("paused", 1, "default"), ("slow", 1, "slow"), ("free", 1, "default")])
    for tenant_id in ("paused", "slow", "free"):
        add_jobs(settings, db, tenant_id, 10)
    service.update_tenant("paused", service.TenantChanges(paused=True))
    dispatcher.become_leader()
    dispatcher.step()
    sent = tenant_of(db, publisher.sent)
    assert "paused" not in sent
    assert sent.count("slow") == 2  # its burst; then its bucket is empty
    assert sent.count("free") == 4  # work-conserving: the free tenant takes the rest


def test_jobs_a_rate_limit_holds_back_count_as_deferrals(embedded):
    from app.metrics.instruments import instruments

    settings, db = embedded
    dispatcher, publisher = make(settings, db, [("slow", 1, "slow")])
    add_jobs(settings, db, "slow", 5)
    deferred = instruments().deferrals.labels("slow", "rate")
    before = deferred._value.get()
    dispatcher.become_leader()
    dispatcher.step()
    assert len(publisher.sent) == 2  # its burst
    assert deferred._value.get() - before == 3


def test_with_redis_down_limited_jobs_wait_unlimited_ones_run_and_none_is_lost(embedded):
    """The token buckets live in Redis: while it is unreachable the dispatcher fails safe. A
    rate-limited tenant's jobs stay queued (none sent unchecked, none lost), an unlimited tenant's
    go out, and once Redis answers again the limited ones go out at their rate, each once."""
    import subprocess
    import time

    import redis

    from app.quota import make_buckets
    from app.scheduling.models import Job
    from tests.conftest import free_port
    from tests.helpers import wait_for

    settings, db = embedded
    port = free_port()  # nothing listens there yet: Redis is down
    buckets = make_buckets(Settings.load(redis_url=f"redis://127.0.0.1:{port}/0"), timeout=0.2)
    with system_session(db=db) as session:
        session.add_all([Tenant(id="slow", name="slow", plan="slow"), Tenant(id="free", name="free")])
    publisher = FakePublisher()
    dispatcher = Dispatcher(None, settings, store=Store(db), publisher=publisher, buckets=buckets,
                            leadership=NoNews())
    add_jobs(settings, db, "slow", 3)
    add_jobs(settings, db, "free", 3)
    dispatcher.become_leader()

    assert dispatcher.step() == 3 and tenant_of(db, publisher.sent) == ["free"] * 3
    time.sleep(1.2)  # past the second a tenant refused tokens waits: asked again, still down
    assert dispatcher.step() == 0 and len(publisher.sent) == 3
    with system_session(db=db) as session:
        assert list(session.scalars(sa.select(Job.state).where(Job.tenant_id == "slow"))) == ["queued"] * 3

    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _answers(redis.Redis(port=port, socket_timeout=0.2)), timeout=10)
        sent_slow = []

        def all_sent() -> bool:
            dispatcher.step()
            sent_slow.append(tenant_of(db, publisher.sent).count("slow"))
            return sent_slow[-1] == 3

        wait_for(all_sent, timeout=10, interval=0.05)
    finally:
        server.terminate()
        server.wait(10)
    assert 2 in sent_slow  # its burst of two first, the third a second later: the limit still holds
    assert sorted(publisher.sent) == sorted(set(publisher.sent)) and len(publisher.sent) == 6  # each once
    dispatcher.stop()


def _answers(client) -> bool:
    try:
        return client.ping()
    except Exception:
        return False


def test_the_window_holds_jobs_waiting_in_the_broker_not_running_ones(embedded):
    """Jobs a worker claimed leave the window (they are no longer in the broker) but stay in flight
    (their tenants' caps and charges): claims heard as news, or found by the sweep if news was lost."""
    settings, db = embedded
    dispatcher, publisher = make(settings, db, [("a", 1, "default")])
    dispatcher.leadership = LocalLeadership()  # the in-process bus: the claims' news arrives
    add_jobs(settings, db, "a", 20)
    dispatcher.become_leader()
    assert dispatcher.step() == 6
    assert dispatcher.step() == 0  # six waiting in the broker: the window is full
    store = Store(db)
    claimed = store.start_many([(job_id, False) for job_id in publisher.sent[:3]])
    assert all(claimed)
    assert dispatcher.step() == 3  # three taken by a worker: room for three more
    assert len(dispatcher.in_flight) == 9 and len(dispatcher.unclaimed) == 6
    assert dispatcher.step() == 0

    dispatcher.leadership = NoNews()  # a claim whose news is lost: the sweep finds it
    store.start_many([(job_id, False) for job_id in publisher.sent[3:5]])
    assert dispatcher.step() == 0
    for flight in dispatcher.in_flight.values():
        flight.since -= 60
    dispatcher._sweep()
    assert len(dispatcher.unclaimed) == 4
    assert dispatcher.step() == 2


class SlowPublisher(FakePublisher):
    """A pipelined publisher whose commits wait for the test (and can fail)."""

    pipelined = True

    def __init__(self):
        super().__init__()
        import threading

        self.calls = []
        self.gate = threading.Event()
        self.fail = False

    def publish(self, messages):
        self.gate.wait(10)
        self.calls.append(len(messages))
        if self.fail:
            raise ConnectionError("the broker went away")
        super().publish(messages)


def test_batches_chosen_during_a_slow_commit_go_out_together_and_a_failed_one_is_taken_back(embedded):
    from app.scheduling.models import Job
    from tests.helpers import wait_for

    settings, db = embedded
    with system_session(db=db) as session:
        session.add(Tenant(id="a", name="a"))
    publisher = SlowPublisher()
    dispatcher = Dispatcher(None, settings, store=Store(db), publisher=publisher, buckets=MemoryBuckets(),
                            leadership=LocalLeadership())
    add_jobs(settings, db, "a", 20)
    dispatcher.become_leader()
    assert dispatcher.step() == 6  # handed to the publishing thread, which waits: this one goes on
    assert publisher.sent == [] and len(dispatcher.unclaimed) == 6
    store = Store(db)
    first_six = [job_id for job_id in dispatcher.in_flight]
    store.start_many([(job_id, False) for job_id in first_six[:4]])  # a worker claimed four (say)
    assert dispatcher.step() == 4  # room for four more, chosen while the first commit still waits
    publisher.gate.set()
    wait_for(lambda: len(publisher.sent) == 10, timeout=10)
    assert publisher.calls in ([6, 4], [10])  # the second batch in the next commit (or with the first)
    wait_for(lambda: (dispatcher._settle(), not dispatcher._sending)[1], timeout=10)
    dispatcher._marker.drain(5)
    with system_session(db=db) as session:
        states = dict(session.execute(sa.select(Job.id, Job.state).where(Job.id.in_(publisher.sent))).all())
    assert sorted(states.values()).count("dispatched") == 6 and sorted(states.values()).count("running") == 4

    publisher.fail = True
    store.start_many([(job_id, False) for job_id in publisher.sent[4:10]])  # room for six
    assert dispatcher.step() == 6
    failed = set(dispatcher.in_flight) - set(publisher.sent)
    wait_for(lambda: dispatcher._sending and dispatcher._sending[0][0].done.is_set(), timeout=10)
    dispatcher._settle()
    assert not failed & set(dispatcher.in_flight) and not failed & dispatcher.unclaimed  # taken back
    publisher.fail = False
    assert dispatcher.step() == 6  # and chosen again
    wait_for(lambda: failed <= set(publisher.sent), timeout=10)
    dispatcher.stop()


def test_a_dispatcher_handing_over_leaves_its_published_jobs_marked_so_the_next_does_not_publish_them_again(embedded):
    """The worker's dispatcher thread hands over to the companion at every start: jobs it published
    must not look waiting to the companion (their marks gather for a moment before they are written)."""
    settings, db = embedded
    first, sent_first = make(settings, db, [("a", 1, "default")])
    add_jobs(settings, db, "a", 20)
    assert first.leadership.try_acquire()
    first.become_leader()
    assert first.step() == 6
    first.hand_over()
    assert not first.leadership.held

    second = Dispatcher(None, settings, store=Store(db), publisher=FakePublisher(), buckets=MemoryBuckets(),
                        leadership=LocalLeadership())  # hears claims through the in-process bus
    assert second.leadership.try_acquire()
    second.become_leader()
    assert second.unclaimed == set(sent_first.sent)  # it knows they wait in the broker
    assert second.step() == 0  # the window is full of them: nothing is published twice
    Store(db).start_many([(job_id, False) for job_id in sent_first.sent[:3]])  # workers claim three
    assert second.step() == 3 and not set(second.publisher.sent) & set(sent_first.sent)
    second.stop()
    first.stop()


def test_jobs_chosen_before_a_rate_limit_refusal_are_not_chosen_again_in_the_same_round(embedded, monkeypatch):
    """A round asks the fair queue again for the slots a rate-limited tenant could not use; the jobs
    chosen by the first ask are not published yet, so they still look queued in the database. A
    refill in the second ask must not pick them up again (seen in the benchmark's scenario 4: a few
    jobs published twice every time a tenant's buffer of 64 ran out in a round the limit cut short)."""
    from app.scheduling.fairness import FairQueue

    settings, db = embedded
    dispatcher, publisher = make(settings, db, [("slow", 1, "slow"), ("free", 1, "default")])
    # buffers of three jobs: ``free``'s runs dry with the first ask's third pick, so the second refills
    monkeypatch.setattr(dispatcher, "_fair_queue", lambda: FairQueue(refill=dispatcher._refill, refill_size=3))
    add_jobs(settings, db, "slow", 10)
    add_jobs(settings, db, "free", 10)
    dispatcher.become_leader()
    assert dispatcher.step() == 6
    assert len(set(publisher.sent)) == len(publisher.sent) == 6, publisher.sent
    assert tenant_of(db, publisher.sent).count("slow") == 2  # its burst; the rest went to free


def test_a_dispatcher_leading_again_does_not_publish_jobs_it_buffered_before_and_that_ran_meanwhile(embedded):
    """Leadership can come back to a dispatcher (a worker's thread, once the companion is gone): the
    jobs it had buffered then may have run under the other leader since."""
    from app.scheduling.models import Job

    settings, db = embedded
    dispatcher, publisher = make(settings, db, [("a", 1, "default")])
    add_jobs(settings, db, "a", 10)
    assert dispatcher.leadership.try_acquire()
    dispatcher.become_leader()
    assert dispatcher.step() == 6  # and the other four wait in its buffer
    dispatcher.hand_over()
    with system_session(db=db) as session:  # meanwhile another leader ran all ten
        session.execute(sa.update(Job).values(state="succeeded"))
    assert dispatcher.leadership.try_acquire()
    dispatcher.become_leader()
    assert dispatcher.step() == 0 and len(publisher.sent) == 6
    dispatcher.stop()


# -- the in-process broker (the embedded default) ------------------------------------------------


def stub_broker(fail_at: int | None = None):
    """A StubBroker that knows the job kinds' actors (as ``fairq up``'s does); with ``fail_at``,
    its ``fail_at``-th enqueue (1-based) fails, as a broken broker would."""
    from dramatiq.brokers.stub import StubBroker

    from app.scheduling.kinds import kinds

    class Stub(StubBroker):
        calls = 0

        def enqueue(self, message, *, delay=None):
            self.calls += 1
            if self.calls == fail_at:
                raise ConnectionError("the broker went away")
            return super().enqueue(message, delay=delay)

    broker = Stub()
    for kind in kinds().values():
        broker.declare_actor(kind.actor)
    return broker


def queued_messages(broker) -> dict[str, list[int]]:
    """The job ids of the messages in each of the broker's queues."""
    import dramatiq

    return {name: [dramatiq.Message.decode(data).args[0] for data in list(queue.queue)]
            for name, queue in broker.queues.items() if queue.qsize()}


def in_process_dispatcher(settings, db, broker):
    return Dispatcher(broker, settings, store=Store(db), publisher=make_publisher(broker),
                      buckets=MemoryBuckets(), leadership=NoNews())


def test_a_dedicated_tenants_jobs_run_on_the_shared_queue_of_the_in_process_broker(embedded, caplog):
    """The embedded default has one worker, consuming the shared queue: a tenant on a plan with a
    dedicated queue (which needs RabbitMQ and workers started with ``-Q``) has its jobs run there,
    and the others' jobs are not held up or published twice (the StubBroker refused the dedicated
    queue part-way through a batch, the batch was taken back and published again)."""
    settings, db = embedded
    with system_session(db=db) as session:
        session.add_all([Tenant(id="free", name="free"), Tenant(id="own", name="own", plan="dedicated")])
    add_jobs(settings, db, "free", 3)
    add_jobs(settings, db, "own", 3)
    broker = stub_broker()
    dispatcher = in_process_dispatcher(settings, db, broker)
    dispatcher.become_leader()
    with caplog.at_level("WARNING", logger="app.scheduling.publisher"):
        assert dispatcher.step() == 6
        assert dispatcher.step() == 0
    sent = queued_messages(broker)
    assert list(sent) == ["fairq.jobs"] and sorted(sent["fairq.jobs"]) == list(range(1, 7))
    notes = [r for r in caplog.records if "fairq.t.own" in r.getMessage()]
    assert len(notes) == 1 and "RabbitMQ" in notes[0].getMessage()
    dispatcher.stop()


def test_a_partly_failed_publish_on_the_in_process_broker_sends_no_job_twice(embedded):
    """The in-process broker takes messages one at a time: when one fails, those before it are in the
    broker and must count as dispatched; only the rest are taken back and published again."""
    from app.scheduling.models import Job
    from tests.helpers import wait_for

    settings, db = embedded
    with system_session(db=db) as session:
        session.add(Tenant(id="a", name="a"))
    add_jobs(settings, db, "a", 6)
    broker = stub_broker(fail_at=3)
    dispatcher = in_process_dispatcher(settings, db, broker)
    dispatcher.become_leader()
    assert dispatcher.step() == 6  # chosen; the third message failed
    assert sorted(dispatcher.unclaimed) == [1, 2]  # the two sent wait in the broker; the rest went back
    assert dispatcher.step() == 4  # published again: the rest only
    assert sorted(queued_messages(broker)["fairq.jobs"]) == list(range(1, 7))
    dispatcher._marker.drain(5)
    with system_session(db=db) as session:
        wait_for(lambda: set(session.scalars(sa.select(Job.state))) == {"dispatched"}, timeout=5)
    dispatcher.stop()


def test_the_first_leader_of_a_process_on_the_in_process_broker_puts_back_what_earlier_processes_left(embedded, tmp_path):
    """The in-process broker's messages die with their process; the jobs' rows stay ``dispatched``
    (and ``running`` after a SIGKILL). The next process to lead on that database puts them back at
    once — not after their lease — and a running one keeps the attempt it used, as a dead worker's
    does. Only once every earlier process is gone (they hold a lock file until they exit), and
    never on RabbitMQ, whose messages outlive the process."""
    import subprocess
    import sys

    from app.scheduling.leader import LocalLeadership
    from app.scheduling.models import Job

    settings, db = embedded
    with system_session(db=db) as session:
        session.add(Tenant(id="a", name="a"))
    add_jobs(settings, db, "a", 10)
    store = Store(db)
    # Given an earlier process that published six jobs and had started two when it died
    store.mark_dispatched([1, 2, 3, 4, 5, 6])
    assert all(store.start_many([(1, False), (2, False)]))

    def rows():
        with system_session(db=db) as session:
            return {job.id: (job.state, job.attempts) for job in session.scalars(sa.select(Job))}

    # a durable broker (RabbitMQ) still holds their messages: nothing is put back
    durable = Dispatcher(None, settings, store=store, publisher=FakePublisher(), buckets=MemoryBuckets(),
                         leadership=LocalLeadership(lock_path=str(tmp_path / "durable.lock")))
    assert durable.leadership.try_acquire() and durable.leadership.predecessors_gone
    before = rows()
    durable.become_leader()
    assert rows() == before and durable.unclaimed == {3, 4, 5, 6}
    durable.stop()

    lock = tmp_path / "fairq.db-dispatcher.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", str(lock)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        broker = stub_broker()
        dispatcher = in_process_dispatcher(settings, db, broker)
        dispatcher.leadership = LocalLeadership(lock_path=str(lock))
        # while the earlier process lives, this one does not lead (its jobs may still run there)
        assert not dispatcher.leadership.try_acquire()
        assert rows()[1] == ("running", 1)
    finally:
        holder.stdin.close()
        holder.wait(10)
        holder.stdout.close()
    # When it is gone, the first leader here puts its jobs back in the queue
    assert dispatcher.leadership.try_acquire() and dispatcher.leadership.predecessors_gone
    dispatcher.become_leader()
    assert {state for state, _ in rows().values()} == {"queued"}
    assert [rows()[i][1] for i in (1, 2, 3)] == [1, 1, 0]  # the started ones used their attempt
    # Then they are dispatched at once
    assert dispatcher.step() == 6
    assert sorted(queued_messages(broker)["fairq.jobs"]) == [1, 2, 3, 4, 5, 6]
    dispatcher.stop()
    # a later leadership in the same process puts back nothing: the jobs in flight are its own
    assert dispatcher.leadership.try_acquire() and not dispatcher.leadership.predecessors_gone
    dispatcher.leadership.release()


def test_the_lease_check_counts_the_ack_timeout_only_of_a_broker_that_has_one(embedded, monkeypatch):
    """RabbitMQ may hold a claimed job's message until its consumer ack timeout, so the lease check
    is told that timeout; the in-process broker has none (its worker claims a job as it runs it)."""
    settings, db = embedded
    asked = []
    monkeypatch.setattr(Store, "lost", lambda self, **kwargs: asked.append(kwargs) or [])
    durable, _ = make(settings, db, [])
    in_process = in_process_dispatcher(settings, db, stub_broker())
    for dispatcher in (durable, in_process):
        dispatcher._housekeeping()
        dispatcher.stop()
    assert [a["ack_timeout"] for a in asked] == [settings.broker_ack_timeout_seconds, None]
    assert asked[0]["time_limits"]["noop"] == kinds()["noop"].time_limit
    assert asked[0]["lease_seconds"] == settings.job_lease_seconds


def test_no_dispatcher_companion_without_rabbitmq(tmp_path):
    """A companion publishes into its own process's broker: with the in-process one, no worker would
    ever see its jobs, so the worker processes' threads dispatch instead."""
    from app.scheduling.companion import companion_wanted

    postgres = {"data_dir": tmp_path, "database_url": "postgresql://fairq@127.0.0.1/fairq", "dispatcher": "companion"}
    assert companion_wanted(Settings.load(**postgres, broker_url="amqp://guest@127.0.0.1:5672/"))
    assert not companion_wanted(Settings.load(**postgres, broker_url=""))
    assert not companion_wanted(Settings.load(**{**postgres, "database_url": ""}, broker_url="amqp://127.0.0.1/"))


def test_a_process_first_leading_on_postgresql_with_the_in_process_broker_puts_back_only_dispatched_jobs(embedded):
    """PostgreSQL cannot say whether the processes that led before are gone (a lock goes with its
    connection, which can close while its process lives on). A process's first leader puts back at
    once the jobs left ``dispatched`` (should their process live, the gate runs one copy), not those
    left ``running`` (they may be running still: they wait for their lease); a later one, nothing."""
    settings, db = embedded
    with system_session(db=db) as session:
        session.add(Tenant(id="a", name="a"))
    add_jobs(settings, db, "a", 4)
    store = Store(db)
    # Given an earlier leader's process that published three jobs and started one of them
    store.mark_dispatched([1, 2, 3])
    assert all(store.start_many([(1, False)]))

    class FirstOnPostgres(NoNews):
        first_in_process = True

    def lead(publisher, leadership):
        dispatcher = Dispatcher(None, settings, store=store, publisher=publisher, buckets=MemoryBuckets(),
                                leadership=leadership)
        assert dispatcher.leadership.try_acquire()
        dispatcher.become_leader()
        dispatcher.stop()
        return states(db)

    # on RabbitMQ the messages are still there: nothing goes back
    assert lead(FakePublisher(), FirstOnPostgres()) == {1: "running", 2: "dispatched", 3: "dispatched", 4: "queued"}
    # When this process first leads on the in-process broker, the dispatched ones go back
    in_process = make_publisher(stub_broker())
    assert lead(in_process, FirstOnPostgres()) == {1: "running", 2: "queued", 3: "queued", 4: "queued"}
    # and a later leadership of the process puts back nothing
    store.mark_dispatched([2])
    assert lead(in_process, NoNews()) == {1: "running", 2: "dispatched", 3: "queued", 4: "queued"}


def states(db) -> dict[int, str]:
    from app.scheduling.models import Job

    with system_session(db=db) as session:
        return dict(session.execute(sa.select(Job.id, Job.state)).all())


def test_waiting_jobs_go_to_the_queue_of_their_tenants_plan_when_dispatched_not_when_enqueued(embedded):
    """A tenant moved off a dedicated plan (its ``-Q`` workers stopped with it) would otherwise have
    its waiting jobs published to a queue nobody consumes; one moved onto it gets its own queue at
    once. The job's row says where its message went (its dead letter is looked for there)."""
    from app.scheduling.models import Job

    settings, db = embedded
    dispatcher, publisher = make(settings, db, [("was", 1, "dedicated"), ("now", 1, "default")])
    add_jobs(settings, db, "was", 2)
    add_jobs(settings, db, "now", 2)
    with system_session(db=db) as session:
        assert {j.tenant_id: j.queue for j in session.scalars(sa.select(Job))} == {"was": "fairq.t.was", "now": None}
        session.get(Tenant, "was").plan = "default"
        session.get(Tenant, "now").plan = "dedicated"
    dispatcher.become_leader()
    assert dispatcher.step() == 4
    assert publisher.queues == {1: "fairq.jobs", 2: "fairq.jobs", 3: "fairq.t.now", 4: "fairq.t.now"}
    with system_session(db=db) as session:
        assert {j.id: j.queue for j in session.scalars(sa.select(Job))} == {1: None, 2: None, 3: "fairq.t.now",
                                                                             4: "fairq.t.now"}
