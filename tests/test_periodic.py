"""Periodic jobs run once per tick, whatever the number of schedulers."""
import threading
import time
from datetime import timedelta

import dramatiq
import pendulum
import sqlalchemy as sa
from periodiq import cron

from app.broker import build_broker
from app.db import utcnow
from app.scheduling.housekeeping import purge_old_periodic_runs
from app.scheduling.periodic import PeriodicRun, SchedulerThread, periodic_actors
from app.settings import Settings


def stub_broker_with(fn, *, spec="* * * * *"):
    """A StubBroker with fairq's middleware and one periodic actor running ``fn``."""
    broker = build_broker(Settings.load(broker_url=""))
    actor = dramatiq.Actor(
        fn, broker=broker, actor_name="tick_counter", queue_name="test.periodic", priority=0,
        options={"periodic": cron(spec), "max_retries": 0},
    )
    return broker, actor


def run_all(broker):
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    broker.join("test.periodic")
    worker.join()
    worker.stop()


def test_two_schedulers_sending_the_same_tick_run_it_once(real_settings, db):
    calls = []
    broker, actor = stub_broker_with(lambda: calls.append(1))
    tick = str(pendulum.now("UTC").replace(second=0, microsecond=0))
    # Given two schedulers started by mistake, each sends the same tick
    actor.send_with_options(scheduled_at=tick)
    actor.send_with_options(scheduled_at=tick)
    run_all(broker)
    # Then the actor ran once and the tick is recorded once, as succeeded
    assert calls == [1]
    with db.session() as session:
        runs = session.scalars(sa.select(PeriodicRun)).all()
    assert [(r.task, r.outcome) for r in runs] == [("tick_counter", "succeeded")]


def test_a_failed_tick_is_recorded_with_its_error(real_settings, db):
    def fail():
        raise RuntimeError("disk full")

    broker, actor = stub_broker_with(fail)
    actor.send_with_options(scheduled_at=str(pendulum.now("UTC").replace(microsecond=0)))
    run_all(broker)
    with db.session() as session:
        run = session.scalars(sa.select(PeriodicRun)).one()
    assert run.outcome == "failed" and "disk full" in run.error


def test_a_late_tick_is_skipped_not_run(real_settings, db):
    calls = []
    broker, actor = stub_broker_with(lambda: calls.append(1))
    actor.send_with_options(scheduled_at=str(pendulum.now("UTC").subtract(hours=1)))
    run_all(broker)
    assert calls == []


def test_a_message_sent_by_hand_runs_without_a_tick_record(real_settings, db):
    calls = []
    broker, actor = stub_broker_with(lambda: calls.append(1))
    actor.send()
    run_all(broker)
    assert calls == [1]
    with db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(PeriodicRun)) == 0


def test_housekeeping_purges_only_old_finished_runs(real_settings, db):
    now = utcnow()
    with db.session() as session:
        session.add_all([
            PeriodicRun(task="a", scheduled_at=now - timedelta(days=40), outcome="succeeded"),
            PeriodicRun(task="a", scheduled_at=now - timedelta(days=1), outcome="succeeded"),
            PeriodicRun(task="b", scheduled_at=now - timedelta(days=40), outcome="running"),
        ])
    assert purge_old_periodic_runs(older_than=timedelta(days=30)) == 1
    with db.session() as session:
        left = session.execute(sa.select(PeriodicRun.task, PeriodicRun.outcome)).all()
    assert sorted(left) == [("a", "succeeded"), ("b", "running")]


def test_the_scheduler_thread_stops_at_once():
    broker, actor = stub_broker_with(lambda: None, spec="0 0 1 1 *")  # next tick: new year
    thread = SchedulerThread(periodic_actors(broker))
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    thread.stop()
    thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - started < 2


def test_the_scheduler_thread_sends_each_due_tick(monkeypatch):
    sent = []
    broker, actor = stub_broker_with(lambda: None)
    monkeypatch.setattr(actor, "send_with_options", lambda **options: sent.append(options))
    thread = SchedulerThread([actor])
    # pretend time moves a minute per wait, so two ticks come due at once
    clock = [pendulum.datetime(2026, 11, 25, 10, 0, 30, tz="UTC")]
    monkeypatch.setattr(pendulum, "now", lambda tz=None: clock[0])
    waits = threading.Event()

    def fake_wait(delay):
        clock[0] = clock[0].add(seconds=delay)
        if len(sent) >= 2:
            return True  # stop
        return False

    monkeypatch.setattr(thread._stopping, "wait", fake_wait)
    thread.run()
    assert [s["scheduled_at"] for s in sent] == ["2026-11-25 10:01:00+00:00", "2026-11-25 10:02:00+00:00"]
    assert not waits.is_set()


def test_expired_revocations_are_purged(real_settings, db):
    from app.scheduling.housekeeping import purge_revoked_tokens
    from app.tenancy.models import RevokedToken

    now = utcnow()
    with db.session() as session:
        session.add_all([
            RevokedToken(jti="old", tenant_id="t", user_id=1, expires_at=now - timedelta(minutes=1)),
            RevokedToken(jti="live", tenant_id="t", user_id=1, expires_at=now + timedelta(minutes=10)),
        ])
    purge_revoked_tokens()  # the actor's function, called directly
    with db.session() as session:
        assert session.scalars(sa.select(RevokedToken.jti)).all() == ["live"]


def test_ticks_missed_during_an_outage_are_logged(real_settings, db, caplog):
    import logging

    broker, actor = stub_broker_with(lambda: None)  # every minute
    now = pendulum.now("UTC").replace(second=0, microsecond=0)
    with db.session() as session:
        session.add(PeriodicRun(task="tick_counter", scheduled_at=now.subtract(minutes=5), outcome="succeeded"))
    actor.send_with_options(scheduled_at=str(now))
    with caplog.at_level(logging.WARNING):
        run_all(broker)
    assert any("4 ticks of tick_counter were missed" in r.getMessage() for r in caplog.records)
