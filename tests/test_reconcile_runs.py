"""Runs: breaks keep one identity across runs, tenants never meet, and both database paths agree."""
import time
from datetime import date

from tests.test_reconcile_support import LATER, RRN, add, at, backend, both, breaks, kinds, reconcile, tenant  # noqa: F401


def snapshot(tenant_id: str = "acme") -> list[tuple]:
    return [(b.id, b.mismatch_type, b.internal_txn_id, b.external_txn_id, b.status, b.notes, b.internal_amount,
             b.external_amount, b.first_run_id) for b in breaks(tenant_id)]


def test_rerunning_a_period_keeps_one_row_per_break_new_then_persisting_then_resolved(backend):
    t = tenant()
    add(t, "internal", "MI1", "5.00", reference=RRN(1))
    add(t, "external", "ME1", "7.00", reference=RRN(2))
    add(t, "internal", "AM1", "10.00", reference=RRN(3))
    add(t, "external", "AM1", "11.00", reference=RRN(3))
    first, _ = reconcile(t)
    assert {b.status for b in breaks(t)} == {"new"} and len(breaks(t)) == 3
    second, summary = reconcile(t)
    assert [(row[0], row[1], row[4]) for row in snapshot(t)] == [(b.id, b.mismatch_type, "persisting")
                                                               for b in breaks(t)]
    assert len(breaks(t)) == 3 and {b.run_id for b in breaks(t)} == {second}
    assert summary["lifecycle"] == {"new": 0, "persisting": 3, "resolved": 0}
    # Given no new data, a third run changes nothing, not even which run last changed a break
    before = [(b.id, b.status, b.notes, b.run_id, b.updated_at) for b in breaks(t)]
    _third, summary = reconcile(t)
    assert [(b.id, b.status, b.notes, b.run_id, b.updated_at) for b in breaks(t)] == before
    assert summary["lifecycle"] == {"new": 0, "persisting": 3, "resolved": 0}
    # When the bank file brings the missing payment, its break is resolved (and kept, once)
    add(t, "external", "MI1", "5.00", reference=RRN(1))
    fourth, summary = reconcile(t)
    assert summary["lifecycle"] == {"new": 0, "persisting": 2, "resolved": 1}
    [resolved] = breaks(t, status="resolved")
    assert (resolved.internal_txn_id, resolved.run_id, resolved.first_run_id) == ("MI1", fourth, first)
    assert len(breaks(t)) == 3 and len(breaks(t, run_id=fourth)) == 1  # the run changed one break
    # a break that comes back is new again
    add(t, "internal", "MI1-AGAIN", "5.00", reference=RRN(1))
    reconcile(t)
    assert [b.status for b in breaks(t, internal_txn_id="MI1-AGAIN")] == ["new"]


def test_the_new_breaks_a_run_counts_include_those_found_again_after_they_were_resolved(backend):
    from app.reconcile import service
    from app.settings import get_settings

    t = tenant()
    add(t, "internal", "MI1", "5.00", reference=RRN(1))
    add(t, "internal", "AM1", "10.00", reference=RRN(3))
    add(t, "external", "AM1", "11.00", reference=RRN(3))
    assert reconcile(t)[1]["lifecycle"] == {"new": 2, "persisting": 0, "resolved": 0}
    # Given the amount mismatch resolved by a wider tolerance
    assert reconcile(t, tolerance="5.00")[1]["lifecycle"] == {"new": 0, "persisting": 1, "resolved": 1}
    # When a run finds it again, Then it is new again, and counted so
    run_id, summary = reconcile(t)
    assert summary["lifecycle"] == {"new": 1, "persisting": 1, "resolved": 0}
    assert sorted((b.internal_txn_id, b.status) for b in breaks(t)) == [("AM1", "new"), ("MI1", "persisting")]
    # the same run run again (its breaks already carry its id, nothing changes): the same summary
    assert service.run_reconciliation(get_settings(), tenant_id=t, run_id=run_id, now=LATER) == summary

def test_a_run_of_another_period_leaves_this_periods_breaks_alone(backend):
    t = tenant()
    add(t, "internal", "NOV", "5.00", reference=RRN(1), when=at(3))
    reconcile(t)
    reconcile(t, period=(date(2026, 11, 10), date(2026, 11, 16)))
    assert [(b.internal_txn_id, b.status) for b in breaks(t)] == [("NOV", "new")]


def test_tenant_b_ledger_never_matches_tenant_a_bank_file(backend):
    a, b = tenant("acme"), tenant("globex")
    add(a, "external", "P1", "100.00", reference=RRN(1))
    add(b, "internal", "P1", "100.00", reference=RRN(1))
    _run, summary_a = reconcile(a)
    _run, summary_b = reconcile(b)
    assert kinds(a) == [("missing_internal", None, "P1")]
    assert kinds(b) == [("missing_external", "P1", None)]
    assert summary_a["matched"]["count"] == summary_b["matched"]["count"] == 0


def every_outcome(t: str) -> None:
    """One fixture with a break of each type, a fallback pair, a settlement group and clean pairs."""
    for n in range(5):
        both(t, f"OK{n}", f"{n + 1}00.25", reference=RRN(n), counterparty=f"p{n}@okaxis", when=at(2, 9 + n))
    add(t, "internal", "MISS-E", "12.34", reference=RRN(10))
    add(t, "external", "MISS-I", "56.78", reference=RRN(11))
    add(t, "internal", "AMT", "100.10", reference=RRN(12))
    add(t, "external", "AMT", "100.00", reference=RRN(12))
    add(t, "internal", "STAT", "9.99", reference=RRN(13), status="PENDING", when=at(1))
    add(t, "external", "STAT", "9.99", reference=RRN(13), when=at(1))
    add(t, "internal", "DRIFT", "1.00", reference=RRN(14), when=at(1))
    add(t, "external", "DRIFT", "1.00", reference=RRN(14), when=at(5))
    both(t, "DUP", "3.00", reference=RRN(15))
    add(t, "external", "DUP-2", "3.00", reference=RRN(15), when=at(3, 12))
    both(t, "REV", "4.00", reference=RRN(16), direction="DR")
    add(t, "external", "REV-R", "4.00", reference=RRN(16), direction="CR", when=at(4))
    add(t, "internal", "AMB", "8.00", counterparty="x@ybl", when=at(6, 10))
    add(t, "external", "AMB-1", "8.00", reference=RRN(17), counterparty="x@ybl", when=at(6, 9))
    add(t, "external", "AMB-2", "8.00", reference=RRN(18), counterparty="x@ybl", when=at(6, 11))
    add(t, "internal", "FB", "6.00", counterparty="y@ybl", when=at(6, 10))
    add(t, "external", "FB-1", "6.00", reference=RRN(19), counterparty="y@ybl", when=at(6, 13))
    for n in range(3):
        add(t, "internal", f"S{n}", "10.00", reference=RRN(20 + n), settlement_date=date(2026, 11, 4), when=at(3, n))
    add(t, "external", "SETTLE", "29.70", settlement_date=date(2026, 11, 4), when=at(4, 18))


def test_the_postgresql_and_sqlite_paths_agree_on_the_same_fixtures(db, sqlite_app):
    from app.settings import Settings, use_settings

    embedded = sqlite_app.config["FAIRQ_SETTINGS"]
    results = []
    for settings in (Settings.load(), embedded):
        use_settings(settings)
        t = tenant()
        every_outcome(t)
        _run, summary = reconcile(t, tolerance="0.05")
        results.append((summary, [row[1:] for row in snapshot(t)]))
    assert results[0] == results[1]
    summary, rows = results[0]
    assert summary["breaks"] == {"missing_internal": 1, "missing_external": 1, "amount_mismatch": 1,
                                 "status_mismatch": 1, "date_drift": 1, "duplicate": 1, "reversed": 1,
                                 "ambiguous": 3}
    assert summary["matched"] == {"count": 10, "external_count": 8, "amount": "1540.25"}
    assert len(rows) == 10


def test_a_run_cancelled_between_phases_writes_nothing_and_says_so(db):
    import pytest

    from app.reconcile import service
    from app.reconcile.models import ReconciliationRun
    from app.scheduling.kinds import JobCancelled
    from app.settings import get_settings
    from app.tenancy.scoping import tenant_session

    t = tenant()
    add(t, "internal", "MI1", "5.00", reference=RRN(1))
    run_id, _ = reconcile(t)
    add(t, "external", "MI1", "5.00", reference=RRN(1))
    add(t, "external", "NEW", "6.00", reference=RRN(2))
    seen = []

    def stop_at_fallback(number: int, name: str) -> None:
        seen.append(name)
        if name == "fallback":
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        service.run_reconciliation(get_settings(), tenant_id=t, run_id=run_id, on_phase=stop_at_fallback)
    assert seen == ["main key", "ties", "further keys", "fallback"]
    assert [(b.internal_txn_id, b.status) for b in breaks(t)] == [("MI1", "new")]  # rolled back
    with tenant_session(t) as session:
        assert session.get(ReconciliationRun, run_id).state == "cancelled"
    # run again (as a retry would): it finishes
    service.run_reconciliation(get_settings(), tenant_id=t, run_id=run_id)
    assert [(b.mismatch_type, b.status) for b in breaks(t)] == [("missing_external", "resolved"),
                                                                ("missing_internal", "new")]


def test_a_run_that_reports_progress_and_checks_for_cancellation_between_every_phase_finishes(backend):
    from app.db import get_db
    from app.reconcile import service
    from app.reconcile.models import ReconciliationRun
    from app.scheduling.models import Job
    from app.scheduling.store import Store
    from app.settings import get_settings
    from app.tenancy.scoping import tenant_session

    # Given a run whose job writes its progress and reads its cancellation on another connection
    # between every phase (the job kind does so at most every half second), while the run's own
    # transaction is open: on SQLite it holds the write lock from its first temporary table on
    t = tenant()
    add(t, "internal", "MI1", "5.00", reference=RRN(1))
    run_id, _ = reconcile(t)
    with tenant_session(t) as session:
        job_id = session.get(ReconciliationRun, run_id).job_id
    store = Store(get_db())

    def report(number: int, name: str) -> None:
        store.progress(job_id, number, 7, name)
        assert not store.cancel_requested(job_id)

    # When it runs, Then it finishes (on SQLite a progress write it cannot make at once is dropped)
    started = time.monotonic()
    summary = service.run_reconciliation(get_settings(), tenant_id=t, run_id=run_id, on_phase=report)
    assert summary["total_breaks"] == 1
    assert time.monotonic() - started < 5  # never waits out the busy timeout
    with tenant_session(t) as session:
        assert session.get(Job, job_id).progress_done is not None


def test_a_runs_new_breaks_take_their_ids_in_the_byte_order_of_their_keys(backend):
    # Given missing rows whose txn ids sort differently as a whole key than column by column
    # ('A-1' < 'A|' byte by byte, where 'A' < 'A-1'), in an order unlike either
    t = tenant()
    for txn_id in ("b", "A-1", "A", "a"):
        add(t, "internal", txn_id, "5.00", reference=RRN(len(txn_id) * 10 + ord(txn_id[-1])))
    add(t, "external", "Z", "6.00", reference=RRN(99))
    # When one run writes them
    reconcile(t)
    # Then their ids follow their break keys, byte by byte, on either database
    keys = [b.break_key for b in breaks(t)]
    assert keys == sorted(keys, key=lambda k: k.encode())
    assert keys == ["UPI|missing_external|A-1|", "UPI|missing_external|A|", "UPI|missing_external|a|",
                    "UPI|missing_external|b|", "UPI|missing_internal||Z"]


def test_the_main_keys_lookups_read_each_side_in_the_order_of_its_ids(db):
    """Each half of the main key's statement sorts the rows it looks up by the ledger's id, looks them
    up, then sorts by the bank's id and looks those up: the index and the table are read in order
    rather than in the grouping's hash order (PostgreSQL; the benchmark measured it faster)."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from app.reconcile import engine
    from app.reconcile.pairing import Pairing
    from app.reconcile.rules import find_rules
    from app.reconcile.tuning import HALVES, tune, tuned
    from app.tenancy.scoping import tenant_session

    t = tenant()
    source, rules = find_rules("UPI")
    params = engine.Params(t, source, rules, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 8, tzinfo=UTC),
                           Decimal("0.00"), 48, 0, 1, LATER)
    with tenant_session(t) as session:
        connection = session.connection()
        statement = Pairing(connection, params, None)
        tune(connection)
        with tuned(connection, HALVES):
            plan = statement.x(f"EXPLAIN (COSTS OFF) {statement.named(statement.collapsed(0))}").scalars().all()
            whole = statement.x(f"EXPLAIN (COSTS OFF) {statement.halves()}").scalars().all()
    # the two halves run at once, each in a parallel worker
    assert whole[0].startswith("Gather") and "Workers Planned: 2" in whole[1], "\n".join(whole)
    assert "Parallel Append" in whole[2], "\n".join(whole)
    sorts = [line for line in plan if "Sort Key:" in line]
    # the outer sort (the bank's ids) comes first in the plan's text, the inner (the ledger's) under it
    assert len(sorts) == 2 and "eid" in sorts[0] and "iid" in sorts[1], "\n".join(plan)
