"""One dispatcher leader at a time: the in-process lock, and PostgreSQL's advisory lock across processes."""
import os
import signal
import subprocess
import sys
import time

import pytest

from app.scheduling.leader import LocalLeadership, PostgresLeadership
from tests.conftest import ROOT
from tests.helpers import wait_for

#: A process that takes the dispatcher's lock, says so, and holds it until it is killed.
HOLDER = """
import sys, time
from app.scheduling.leader import PostgresLeadership
leadership = PostgresLeadership(sys.argv[1])
print("held" if leadership.try_acquire() else "refused", flush=True)
time.sleep(600)
"""


@pytest.fixture
def free_lock(db, settings):
    """The dispatcher's lock on the test database, free: a leadership an earlier test dropped
    without ``release`` (a killed process, a closed connection) frees it only once the server's
    backend has ended."""
    probe = PostgresLeadership(settings.database_url)
    try:
        wait_for(probe.try_acquire, timeout=10, interval=0.05)
    finally:
        probe.release()


def test_a_second_local_leadership_in_the_same_process_is_refused_until_the_first_releases():
    first, second = LocalLeadership(), LocalLeadership()
    try:
        assert first.try_acquire() and first.held
        assert not second.try_acquire() and not second.held
        assert first.try_acquire()  # the holder asking again keeps it
        first.release()
        assert second.try_acquire() and not first.try_acquire()
    finally:
        first.release()
        second.release()


def test_two_postgres_leaderships_exclude_each_other_and_hand_over_on_release(db, settings, free_lock):
    first, second = PostgresLeadership(settings.database_url), PostgresLeadership(settings.database_url)
    try:
        assert first.try_acquire()
        assert not second.try_acquire()
        assert first.try_acquire()  # still connected, still the leader
        first.release()
        assert second.try_acquire() and not first.try_acquire()
    finally:
        first.release()
        second.release()


def test_only_a_processs_first_postgres_leadership_says_it_is_the_first(db, settings, monkeypatch, free_lock):
    """A process's first leadership has no job in flight of its own (see ``first_in_process``);
    any later one, by the same leadership or another, may have."""
    from app.scheduling import leader

    monkeypatch.setattr(leader, "_led_in", set())  # a process that has not led yet
    first, second = PostgresLeadership(settings.database_url), PostgresLeadership(settings.database_url)
    try:
        assert not first.first_in_process
        assert first.try_acquire() and first.first_in_process
        assert not second.try_acquire() and not second.first_in_process
        first.release()
        assert second.try_acquire() and not second.first_in_process
        second.release()
        assert first.try_acquire() and not first.first_in_process
    finally:
        first.release()
        second.release()


def test_when_the_leading_process_dies_another_takes_over_within_seconds(db, settings):
    """SIGKILL the process holding the lock: its connection closes, PostgreSQL frees the lock, and
    a dispatcher asking every couple of seconds leads at its next try."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, settings.database_url], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    standby = PostgresLeadership(settings.database_url)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not standby.try_acquire()  # the other process leads
        time.sleep(0.5)
        assert not standby.try_acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        died = time.monotonic()
        wait_for(standby.try_acquire, timeout=5, interval=0.2)
        assert time.monotonic() - died < 5
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
        holder.stdout.close()
        standby.release()


def test_a_released_leadership_is_free_at_once_for_the_next(db, settings, free_lock):
    """``release`` unlocks before it closes: closing alone frees the lock only once the server's
    backend has ended, so a successor already connected and asking at once (a standby at a
    handover) was refused now and then."""
    leaderships = [PostgresLeadership(settings.database_url) for _ in range(2)]
    try:
        for round_ in range(100):
            leader, successor = leaderships[round_ % 2], leaderships[(round_ + 1) % 2]
            assert leader.try_acquire(), f"round {round_}"
            assert not successor.try_acquire()  # connected, standing by
            leader.release()
            assert successor.try_acquire(), f"round {round_}: the released lock was still held"
    finally:
        for leadership in leaderships:
            leadership.release()
