"""The gate's, the dispatcher's and the outcomes' multi-row updates are tried again when
PostgreSQL breaks a deadlock between them (else a job being started waits for its lease)."""
import pytest
import sqlalchemy as sa

from app.scheduling.store import DEADLOCK_ATTEMPTS, again_on_deadlock


class _Orig(Exception):
    def __init__(self, pgcode):
        self.pgcode = pgcode


def _failing(codes):
    calls = []

    def action():
        calls.append(1)
        if len(calls) <= len(codes):
            raise sa.exc.OperationalError("UPDATE jobs ...", {}, _Orig(codes[len(calls) - 1]))
        return "done"

    return action, calls


def test_a_deadlock_victim_runs_again():
    action, calls = _failing(["40P01", "40001"])
    assert again_on_deadlock(action) == "done" and len(calls) == 3


def test_other_errors_and_the_last_deadlock_are_raised():
    action, calls = _failing(["08006"])  # the connection went away: not ours to retry
    with pytest.raises(sa.exc.OperationalError):
        again_on_deadlock(action)
    assert len(calls) == 1
    action, calls = _failing(["40P01"] * DEADLOCK_ATTEMPTS)
    with pytest.raises(sa.exc.OperationalError):
        again_on_deadlock(action)
    assert len(calls) == DEADLOCK_ATTEMPTS


def test_two_updates_of_the_same_rows_in_opposite_orders_both_complete(db):
    """A real deadlock on PostgreSQL: each transaction locks one row, then wants the other's."""
    import threading

    from app.db import get_db
    from app.tenancy import service
    from app.tenancy.scoping import tenant_session
    from app.scheduling.models import Job

    service.create_tenant("acme")
    with tenant_session("acme") as session:
        session.add_all([Job(tenant_id="acme", kind="noop", payload={}) for _ in range(2)])
    engine = get_db().system_engine
    barrier = threading.Barrier(2)
    outcomes = []

    def update(first, second):
        def action():
            with engine.begin() as connection:
                connection.execute(sa.text("UPDATE jobs SET attempts = attempts + 1 WHERE id = :id"), {"id": first})
                try:
                    barrier.wait(timeout=2)
                except threading.BrokenBarrierError:
                    pass  # the retry: the other transaction is done
                connection.execute(sa.text("UPDATE jobs SET attempts = attempts + 1 WHERE id = :id"), {"id": second})
        try:
            outcomes.append(again_on_deadlock(action) is None)
        except Exception as exc:  # pragma: no cover - reported by the assertion
            outcomes.append(exc)

    threads = [threading.Thread(target=update, args=(1, 2)), threading.Thread(target=update, args=(2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes == [True, True]
    with tenant_session("acme") as session:
        assert sorted(session.scalars(sa.select(Job.attempts))) == [2, 2]
