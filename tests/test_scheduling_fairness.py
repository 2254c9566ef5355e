"""The dispatcher's fair-order policy (``app.scheduling.fairness``): pure, on a fake clock.

A :class:`FakeDB` plays the jobs table: ``refill`` returns the heads of every priority
level of a tenant's queued jobs, and :func:`take` moves selected jobs out of "queued"
the way the dispatcher does, so the database never offers a job that is in flight.
"""
from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.scheduling.fairness import Candidate, FairQueue

#: No example database on disk, no deadline (the long runs take tens of milliseconds).
PROPERTIES = settings(database=None, deadline=None, max_examples=60,
                      suppress_health_check=[HealthCheck.too_slow])

HIGH, NORMAL, LOW = 2, 1, 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeDB:
    """Queued jobs per tenant; records every refill call.

    Like the dispatcher's query, ``refill`` leaves out the jobs the select call in progress has
    already chosen (``queue.selecting``) unless ``exclude_selecting`` is off.
    """

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.queue: FairQueue | None = None
        self.exclude_selecting = True
        self.queued: dict[str, dict[int, Candidate]] = defaultdict(dict)
        self.calls: list[tuple[str, int]] = []
        self.ids = itertools.count(1)

    def enqueue(self, tenant: str, count: int = 1, *, priority: int = NORMAL, kind: str = "ingest",
                cost: float = 1.0) -> list[Candidate]:
        jobs = []
        for _ in range(count):
            job_id = next(self.ids)
            job = Candidate(job_id, tenant, kind, priority, job_id, self.clock.now, cost)
            self.queued[tenant][job_id] = job
            jobs.append(job)
        return jobs

    def refill(self, tenant: str, n: int) -> list[Candidate]:
        """Up to n jobs of each priority level, oldest first (the dispatcher's query)."""
        self.calls.append((tenant, n))
        skip = self.queue.selecting(tenant) if self.queue and self.exclude_selecting else ()
        levels = defaultdict(list)
        for job in sorted(self.queued[tenant].values(), key=lambda j: j.seq):
            if job.job_id not in skip:
                levels[job.priority].append(job)
        return [job for priority in sorted(levels, reverse=True) for job in levels[priority][:n]]

    def refill_in_all(self, tenant: str, n: int) -> list[Candidate]:
        """Up to n jobs in all, the heads of the levels in turn (the weaker contract)."""
        by_level = defaultdict(list)
        for job in self.refill(tenant, n):
            by_level[job.priority].append(job)
        turns = itertools.zip_longest(*(by_level[p] for p in sorted(by_level, reverse=True)))
        return [job for turn in turns for job in turn if job is not None][:n]


def take(q: FairQueue, db: FakeDB, n: int, **kwargs) -> list[Candidate]:
    """Select like the dispatcher: the chosen jobs leave the queued set."""
    chosen = q.select(n, **kwargs)
    for job in chosen:
        del db.queued[job.tenant_id][job.job_id]
    return chosen


def tenants(jobs: list[Candidate]) -> str:
    return "".join(job.tenant_id for job in jobs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(clock: FakeClock) -> FakeDB:
    return FakeDB(clock)


def make_queue(db: FakeDB, **options) -> FairQueue:
    db.queue = FairQueue(refill=db.refill, clock=db.clock, **options)
    return db.queue


@pytest.fixture
def q(db: FakeDB) -> FairQueue:
    return make_queue(db, refill_size=8)


def backlog(q: FairQueue, db: FakeDB, spec: dict[str, int], **job) -> None:
    for tenant, count in spec.items():
        db.enqueue(tenant, count, **job)
        q.notify(tenant)


# --- across tenants ----------------------------------------------------------------------------


def test_weights_1_2_4_give_10_20_40_in_an_exact_interleaving(q, db):
    for tenant, weight in {"A": 1, "B": 2, "C": 4}.items():
        q.set_tenant(tenant, weight=weight)
    backlog(q, db, {"A": 100, "B": 100, "C": 100})

    chosen = take(q, db, 70)

    assert tenants(chosen) == "ABCCBCC" * 10
    assert Counter(tenants(chosen)) == {"A": 10, "B": 20, "C": 40}
    # Within a tenant, FIFO: A's jobs come in id order.
    a_ids = [job.job_id for job in chosen if job.tenant_id == "A"]
    assert a_ids == sorted(a_ids) == list(range(1, 11))


def test_unequal_costs_share_worker_time_not_job_counts(q, db):
    backlog(q, db, {"A": 200}, cost=0.020)
    backlog(q, db, {"B": 2000}, cost=0.002)
    spent = {"A": 0.0, "B": 0.0}

    for _ in range(1100):
        (job,) = take(q, db, 1)
        spent[job.tenant_id] += job.cost
        # Worker time stays 50/50 within one (the largest) job at every step.
        assert abs(spent["A"] - spent["B"]) <= 0.020 + 1e-9

    assert spent["A"] == pytest.approx(spent["B"], abs=0.020)
    assert spent["A"] + spent["B"] > 4.0


def test_complete_corrects_the_charge_and_shifts_the_order(q, db):
    backlog(q, db, {"A": 10, "B": 10})
    assert tenants(take(q, db, 2)) == "AB"

    # A's job ran 3 s instead of the estimated 1 s: A is charged 2 more.
    q.complete("A", estimated=1.0, actual=3.0)
    assert q.snapshot()["A"]["vtime"] == 3.0
    assert tenants(take(q, db, 4)) == "BBAB"

    # B's job took no time: B gets that second back.
    q.complete("B", estimated=1.0, actual=0.0)
    assert q.snapshot()["B"]["vtime"] == 3.0
    assert tenants(take(q, db, 3)) == "BAB"
    assert q.snapshot()["A"]["in_flight"] == 2 and q.snapshot()["B"]["in_flight"] == 5


def test_weight_divides_the_charge(q, db):
    q.set_tenant("A", weight=4)
    backlog(q, db, {"A": 5}, cost=2.0)
    take(q, db, 1)
    q.complete("A", estimated=2.0, actual=4.0)
    assert q.snapshot()["A"]["vtime"] == 0.5 + 0.5


def test_a_reminder_refills_a_tenant_believed_empty_and_leaves_a_buffered_one_alone(q, db):
    # The dispatcher's periodic re-count reminds every tenant with queued work. A buffered tenant
    # must not be refilled for it (1,000 tenants: 1,000 queries every 5 s); one the queue thought
    # empty (its news lost) must be.
    backlog(q, db, {"A": 20, "B": 3})
    assert tenants(take(q, db, 6)) == "ABABAB"
    db.calls.clear()
    db.enqueue("B", 2)  # no notify: the news was lost
    q.remind("A")
    q.remind("B")
    assert db.calls == []  # nothing asked yet
    assert tenants(take(q, db, 4)) == "ABAB"
    assert db.calls == [("B", 8)]  # B was believed empty: refilled once; A kept its buffer


def test_unknown_tenants_get_weight_one(q, db):
    db.enqueue("A", 1)
    q.notify("A")
    q.add([Candidate(999, "B", "k", NORMAL, 999, 0.0, 1.0)])
    q.set_in_flight("C", 2)
    assert {t: s["weight"] for t, s in q.snapshot().items()} == {"A": 1.0, "B": 1.0, "C": 1.0}


def test_the_tenant_heap_stays_small_under_frequent_updates(q, db):
    # The dispatcher re-reads every tenant's settings often, and completions re-key tenants.
    names = [f"t{i:03d}" for i in range(100)]
    backlog(q, db, {name: 2000 for name in names})
    for _ in range(50):
        for name in names:
            q.set_tenant(name, weight=2)
        for job in take(q, db, 16):
            q.complete(job.tenant_id, estimated=1.0, actual=1.5)
    assert len(q._heap.entries) <= 2 * 100 + 64


def test_a_thousand_tenants_take_turns(q, db):
    names = [f"t{i:04d}" for i in range(1000)]
    backlog(q, db, {name: 3 for name in names})

    first = take(q, db, 1000)
    # Equal weights and vtimes: one job each, ties in tenant id order.
    assert [job.tenant_id for job in first] == names
    rest = take(q, db, 5000)
    assert len(rest) == 2000
    assert Counter(job.tenant_id for job in first + rest) == {name: 3 for name in names}
    assert take(q, db, 10) == []


# --- within a tenant ---------------------------------------------------------------------------


def test_priority_first_then_fifo(q, db):
    low = db.enqueue("A", 2, priority=LOW)
    normal = db.enqueue("A", 2, priority=NORMAL)
    high = db.enqueue("A", 2, priority=HIGH)
    q.notify("A")
    assert take(q, db, 6) == high + normal + low


def test_aging_lets_old_low_work_overtake_newer_high_work(q, db, clock):
    # Given a low job queued at t=0 and high jobs arriving later,
    (low,) = db.enqueue("A", priority=LOW)
    highs = []
    for at in (0, 60, 119, 121, 180):
        clock.now = at
        highs += db.enqueue("A", priority=HIGH)
    clock.now = 200.0
    q.notify("A")

    # then the low job (2 levels below) overtakes every high job queued over 120 s after it.
    chosen = take(q, db, 6)
    assert chosen == highs[:3] + [low] + highs[3:]


def test_aging_is_configurable(db, clock):
    q = make_queue(db, aging_seconds=10.0)
    (low,) = db.enqueue("A", priority=LOW)
    clock.now = 25.0
    (high,) = db.enqueue("A", priority=HIGH)
    q.notify("A")
    assert take(q, db, 2) == [low, high]


def test_a_level_running_dry_refills_so_priority_holds_across_refills(q, db):
    # The buffer holds only 8 (heads of each level in turn): when one level runs out while
    # the database has more, the policy refills instead of serving a lower level early.
    db.enqueue("A", 10, priority=LOW)
    db.enqueue("A", 20, priority=NORMAL)
    db.enqueue("A", 3, priority=HIGH)
    q.notify("A")

    chosen = take(q, db, 40)

    assert [job.priority for job in chosen] == [HIGH] * 3 + [NORMAL] * 20 + [LOW] * 10
    assert [job.seq for job in chosen] == list(range(31, 34)) + list(range(11, 31)) + list(range(1, 11))


# --- eligibility ----------------------------------------------------------------------------


def test_paused_tenant_is_skipped_and_resumes_where_it_stopped(q, db):
    backlog(q, db, {"A": 50, "B": 50, "C": 50})
    assert tenants(take(q, db, 6)) == "ABCABC"

    q.set_tenant("B", weight=1, paused=True)
    during = take(q, db, 30)
    assert "B" not in tenants(during) and len(during) == 30

    q.set_tenant("B", weight=1)
    after = take(q, db, 30)
    b_jobs = [job for job in after if job.tenant_id == "B"]
    # B continues with its third job, and restarts at V: no catch-up for the pause.
    assert b_jobs[0].seq == 53
    assert q.snapshot()["A"]["vtime"] - q.snapshot()["B"]["vtime"] <= 1.0
    # One job behind the others at most (V is the last start, they are at their finish).
    assert tenants(after) == "B" + "ABC" * 9 + "AB"


def test_capped_tenant_is_skipped_until_a_job_completes(q, db):
    q.set_tenant("A", weight=1, cap=2)
    backlog(q, db, {"A": 10, "B": 10})

    # A reaches its cap; B takes the rest (work-conserving).
    assert tenants(take(q, db, 6)) == "ABABBB"
    assert tenants(take(q, db, 2)) == "BB"
    assert q.snapshot()["A"]["in_flight"] == 2

    q.complete("A", estimated=1.0, actual=1.0)
    assert tenants(take(q, db, 2)) == "AB"
    q.forget_in_flight("A")
    assert tenants(take(q, db, 1)) == "A"
    assert tenants(take(q, db, 5)) == "BBB"  # B's last jobs; A is at its cap again


def test_cap_zero_and_set_in_flight_at_startup(q, db):
    q.set_tenant("A", weight=1, cap=3)
    q.set_in_flight("A", 3)  # the leader restarted: three of A's jobs still run
    backlog(q, db, {"A": 5, "B": 2})
    assert tenants(take(q, db, 5)) == "BB"
    q.set_in_flight("A", 1)
    assert tenants(take(q, db, 5)) == "AA"
    q.set_tenant("B", weight=1, cap=0)
    db.enqueue("B")
    q.notify("B")
    assert take(q, db, 5) == []


def test_blocked_kind_is_skipped_and_others_take_the_slots(q, db):
    (report,) = db.enqueue("A", kind="report")
    db.enqueue("A", 3, kind="mail")
    backlog(q, db, {"B": 10}, kind="mail")
    q.notify("A")
    seen = []

    def blocked(tenant: str, kind: str) -> bool:
        seen.append((tenant, kind))
        return (tenant, kind) == ("A", "report")

    # A's next job is a report: A sits the round out although mail is queued behind it.
    assert tenants(take(q, db, 4, blocked=blocked)) == "BBBB"
    assert seen.count(("A", "report")) == 1  # asked once per tenant per selection
    # Blocked time is no credit: A restarts at V, one job behind B at most.
    assert q.snapshot()["A"]["vtime"] == 3.0

    chosen = take(q, db, 4)
    assert chosen[0] == report
    assert tenants(chosen) == "AABA"


def test_blocked_rate_limit_for_everyone_selects_nothing(q, db):
    backlog(q, db, {"A": 3, "B": 3})
    assert q.select(5, blocked=lambda t, k: True) == []
    assert all(s["in_flight"] == 0 for s in q.snapshot().values())
    assert tenants(take(q, db, 2)) == "AB"


# --- no saved credit ----------------------------------------------------------------------------


def test_an_idle_tenant_gets_its_share_from_v_not_the_whole_window(q, db):
    # Given C configured but idle while A and B ran 1,000 jobs,
    q.set_tenant("C", weight=1)
    backlog(q, db, {"A": 2000, "B": 2000})
    for _ in range(100):
        for job in take(q, db, 10):
            q.complete(job.tenant_id, estimated=1.0, actual=1.0)
    assert q.snapshot()["C"]["vtime"] == 0.0

    # when C's work arrives it starts at V (not at 0),
    backlog(q, db, {"C": 100})
    assert q.snapshot()["C"]["vtime"] == q.virtual_time == 499.0

    # so it gets a third of the next window, not all of it.
    window = take(q, db, 30)
    assert Counter(tenants(window)) == {"A": 10, "B": 10, "C": 10}
    assert tenants(window[:6]) == "CABCAB"


def test_going_idle_briefly_does_not_reset_a_tenant_behind_v(q, db):
    backlog(q, db, {"A": 4, "B": 100}, cost=5.0)
    take(q, db, 8)  # A used up its work with a big charge
    assert q.snapshot()["A"]["vtime"] == 20.0
    backlog(q, db, {"A": 4}, cost=5.0)
    assert q.snapshot()["A"]["vtime"] == 20.0  # max(own, V): its own vtime is ahead


# --- buffer and refill --------------------------------------------------------------------------


def test_refill_when_dry_and_has_more_is_honoured(db, clock):
    q = make_queue(db, refill_size=4)
    db.enqueue("A", 10)
    q.notify("A")
    assert db.calls == []  # lazy: nothing read until a selection needs it

    assert len(take(q, db, 3)) == 3
    assert db.calls == [("A", 4)]
    assert q.snapshot()["A"] | {"vtime": None} == {
        "weight": 1.0, "vtime": None, "in_flight": 3, "buffered": 1, "has_more": True,
        "paused": False, "cap": None}

    assert [job.seq for job in take(q, db, 10)] == list(range(4, 11))
    # Within one call the policy asks for the jobs it chose meanwhile on top (4 + 1, then
    # 4 + 6): the last refill got fewer than asked, so the database has no more.
    assert db.calls == [("A", 4), ("A", 5), ("A", 10)]
    assert q.snapshot()["A"]["has_more"] is False
    assert take(q, db, 1) == [] and len(db.calls) == 3
    assert q.selecting("A") == frozenset()

    db.enqueue("A")
    q.notify("A")
    assert [job.seq for job in take(q, db, 2)] == [11]
    assert len(db.calls) == 4


def test_a_refill_of_n_in_all_still_drains_the_tenant(db, clock):
    # Given a refill that returns n jobs in all (not n per level),
    q = FairQueue(refill=db.refill_in_all, clock=clock, refill_size=4)
    db.queue = q
    highs = db.enqueue("A", 6, priority=HIGH)
    normals = db.enqueue("A", 6, priority=NORMAL)
    q.notify("A")

    chosen = take(q, db, 20)

    # every job comes out once, FIFO within its level, and priority holds within each buffer
    # (the policy cannot tell that a level has more, so it refills only when the buffer is dry).
    assert sorted(chosen, key=lambda j: j.seq) == highs + normals
    assert [j for j in chosen if j.priority == HIGH] == highs
    assert [j for j in chosen if j.priority == NORMAL] == normals
    assert chosen[:2] == highs[:2]
    assert q.snapshot()["A"]["has_more"] is False


def test_refill_sees_the_jobs_chosen_so_far_in_the_call(db, clock):
    seen = []

    def refill(tenant: str, n: int) -> list[Candidate]:
        seen.append((n, q.selecting(tenant)))
        return db.refill(tenant, n)

    db.queue = q = FairQueue(refill=refill, clock=clock, refill_size=2)
    db.enqueue("A", 5)
    q.notify("A")
    assert [job.seq for job in take(q, db, 5)] == [1, 2, 3, 4, 5]
    # The second refill asks for 2 + the 2 chosen, gets 3: that is all.
    assert seen == [(2, frozenset()), (4, frozenset({1, 2}))]


def test_a_refill_that_returns_jobs_chosen_in_the_same_call_does_not_duplicate_them(db):
    q = make_queue(db, refill_size=2)
    db.exclude_selecting = False
    db.enqueue("A", 7)
    q.notify("A")
    assert [job.seq for job in take(q, db, 10)] == [1, 2, 3, 4, 5, 6, 7]


def test_notify_lets_a_new_high_job_come_next(q, db):
    db.enqueue("A", 5)
    q.notify("A")
    assert [job.seq for job in take(q, db, 1)] == [1]
    assert q.snapshot()["A"]["buffered"] == 4

    (urgent,) = db.enqueue("A", priority=HIGH)
    q.notify("A")
    assert q.snapshot()["A"]["buffered"] == 0  # invalidated; refilled on the next selection
    second = db.queued["A"][2]
    assert take(q, db, 2) == [urgent, second]
    assert len(db.calls) == 2


def test_refill_returning_another_tenants_job_is_an_error(db):
    q = FairQueue(refill=lambda t, n: [Candidate(1, "B", "k", NORMAL, 1, 0.0, 1.0)])
    q.notify("A")
    with pytest.raises(ValueError, match="returned job 1 of 'B'"):
        q.select(1)
    assert q.snapshot()["A"]["in_flight"] == 0


def test_add_ignores_job_ids_already_buffered(q):
    job = Candidate(7, "A", "k", NORMAL, 7, 0.0, 1.0)
    q.add([job, job])
    q.add([job])
    assert q.snapshot()["A"]["buffered"] == 1
    assert q.select(5) == [job]


# --- undo: unselect, drop, errors ------------------------------------------------------------


def test_unselect_in_reverse_restores_vtimes_and_order_exactly(db, clock):
    q = make_queue(db)
    # Weights and costs whose sums are not exact in binary floating point.
    for tenant, weight in {"A": 3, "B": 7, "C": 1.1}.items():
        q.set_tenant(tenant, weight=weight)
    backlog(q, db, {"A": 20, "B": 20, "C": 20}, cost=0.1)
    take(q, db, 7)
    before, v_before = q.snapshot(), q.virtual_time

    chosen = q.select(9)
    for job in reversed(chosen):
        q.unselect(job)

    assert q.snapshot() == before and q.virtual_time == v_before
    assert q.select(9) == chosen


def test_unselect_out_of_order_refunds_and_puts_the_job_back_at_its_place(q, db):
    backlog(q, db, {"A": 5, "B": 5})
    chosen = q.select(4)
    assert tenants(chosen) == "ABAB"
    q.unselect(chosen[0])  # A's first job: the token was denied
    assert q.snapshot()["A"]["vtime"] == 1.0 and q.snapshot()["A"]["in_flight"] == 1
    assert q.select(1) == [chosen[0]]

    q.unselect(chosen[1])
    with pytest.raises(ValueError, match="not in flight"):
        q.unselect(chosen[1])
    assert q.snapshot()["B"]["in_flight"] == 1


def test_unselect_into_an_invalidated_buffer_leaves_the_job_to_the_refill(q, db):
    db.enqueue("A", 3)
    q.notify("A")
    (job,) = q.select(1)  # the caller has not removed it from the database yet
    q.notify("A")
    q.unselect(job)
    assert q.snapshot()["A"]["buffered"] == 0
    assert [c.seq for c in take(q, db, 3)] == [1, 2, 3]


def test_drop_forgets_a_cancelled_buffered_job(q, db):
    jobs = db.enqueue("A", 3)
    q.add(jobs)
    assert q.drop(jobs[1].job_id) is True
    assert q.drop(jobs[1].job_id) is False
    assert q.select(5) == [jobs[0], jobs[2]]
    assert q.drop(jobs[0].job_id) is False  # in flight, not buffered


def test_drop_of_a_levels_last_job_refills_when_the_database_has_more(db, clock):
    q = make_queue(db, refill_size=2)
    h1, h2, h3 = db.enqueue("A", 3, priority=HIGH)
    (low,) = db.enqueue("A", priority=LOW)
    q.notify("A")
    assert take(q, db, 1) == [h1]  # the buffer holds h2 and the low job; h3 is in the database
    del db.queued["A"][h2.job_id]  # cancelled
    assert q.drop(h2.job_id) is True
    # The high level ran dry while the database has more: refill, so h3 beats the low job.
    assert take(q, db, 5) == [h3, low]


def test_a_failing_select_is_undone(q, db):
    for tenant in "ABC":
        q.add(db.enqueue(tenant, 3))
    before = q.snapshot()

    def blocked(tenant: str, kind: str) -> bool:
        if tenant == "C":
            raise ConnectionError("limiter down")
        return False

    with pytest.raises(ConnectionError):
        q.select(5, blocked=blocked)
    assert q.snapshot() == before
    assert tenants(q.select(6)) == "ABCABC"


def test_bad_arguments_are_refused(q):
    with pytest.raises(ValueError):
        Candidate(1, "A", "k", NORMAL, 1, 0.0, 0.0)
    with pytest.raises(ValueError):
        Candidate(1, "A", "k", NORMAL, 1, 0.0, float("nan"))
    with pytest.raises(ValueError):
        q.set_tenant("A", weight=0)
    with pytest.raises(ValueError):
        q.set_tenant("A", weight=1, cap=-1)
    with pytest.raises(ValueError):
        q.complete("A", estimated=1.0, actual=-1.0)
    with pytest.raises(ValueError):
        FairQueue(refill=lambda t, n: [], aging_seconds=0)
    with pytest.raises(ValueError):
        FairQueue(refill=lambda t, n: [], refill_size=0)
    q.forget_in_flight("A", 5)
    assert q.snapshot()["A"]["in_flight"] == 0


# --- properties -----------------------------------------------------------------------------------

NAMES = ["A", "B", "C", "D"]
KINDS = ["mail", "report"]

operations = st.one_of(
    st.tuples(st.just("config"), st.sampled_from(NAMES), st.sampled_from([1, 2, 5]), st.booleans(),
              st.sampled_from([None, 0, 1, 3])),
    st.tuples(st.just("arrive"), st.sampled_from(NAMES), st.integers(1, 6),
              st.sampled_from([LOW, NORMAL, HIGH]), st.sampled_from(KINDS)),
    st.tuples(st.just("select"), st.integers(0, 6),
              st.frozensets(st.tuples(st.sampled_from(NAMES), st.sampled_from(KINDS)), max_size=3)),
    st.tuples(st.just("complete"), st.integers(0, 50), st.sampled_from([0.0, 0.5, 1.0, 4.0])),
    st.tuples(st.just("unselect"), st.integers(0, 50)),
    st.tuples(st.just("forget"), st.sampled_from(NAMES)),
    st.tuples(st.just("drop"), st.integers(1, 80)),
    st.tuples(st.just("tick"), st.sampled_from([1.0, 30.0, 90.0])),
)


@settings(PROPERTIES, max_examples=300)
@given(st.lists(operations, min_size=20, max_size=120), st.sampled_from([1, 3, 8]), st.booleans())
def test_invariants_hold_under_any_sequence_of_calls(ops, refill_size, exclude_selecting):
    clock = FakeClock()
    db = FakeDB(clock)
    db.exclude_selecting = exclude_selecting  # a refill may return jobs chosen in the same call
    q = make_queue(db, refill_size=refill_size, aging_seconds=60.0)
    config = {name: (1, False, None) for name in NAMES}
    in_flight: list[Candidate] = []
    finished: set[int] = set()

    for op in ops:
        if op[0] == "config":
            _, name, weight, paused, cap = op
            config[name] = (weight, paused, cap)
            q.set_tenant(name, weight=weight, paused=paused, cap=cap)
        elif op[0] == "arrive":
            _, name, count, priority, kind = op
            db.enqueue(name, count, priority=priority, kind=kind, cost=0.5 + count)
            q.notify(name)
        elif op[0] == "select":
            _, n, blocked = op
            running = Counter(job.tenant_id for job in in_flight)
            chosen = take(q, db, n, blocked=lambda t, k, no=blocked: (t, k) in no)
            assert len(chosen) <= n
            for job in chosen:
                _, paused, cap = config[job.tenant_id]
                running[job.tenant_id] += 1
                assert not paused
                assert cap is None or running[job.tenant_id] <= cap
                assert (job.tenant_id, job.kind) not in blocked
                assert job.job_id not in finished
                assert all(job.job_id != other.job_id for other in in_flight)
                in_flight.append(job)
            if len(chosen) < n:  # work-conserving: whoever is left out has a blocked next job
                for name in NAMES:
                    _, paused, cap = config[name]
                    queued = db.queued[name].values()
                    if paused or not queued or (cap is not None and running[name] >= cap):
                        continue
                    head = max(queued, key=lambda j: (j.priority + (clock.now - j.enqueued_at) / 60.0,
                                                      -j.seq))
                    assert (name, head.kind) in blocked
        elif op[0] == "complete" and in_flight:
            job = in_flight.pop(op[1] % len(in_flight))
            finished.add(job.job_id)
            q.complete(job.tenant_id, estimated=job.cost, actual=op[2])
        elif op[0] == "unselect" and in_flight:
            job = in_flight.pop(op[1] % len(in_flight))
            q.unselect(job)
            db.queued[job.tenant_id][job.job_id] = job
        elif op[0] == "forget":
            mine = [job for job in in_flight if job.tenant_id == op[1]]
            if mine:
                in_flight.remove(mine[0])
                finished.add(mine[0].job_id)
            q.forget_in_flight(op[1])
        elif op[0] == "drop":
            for name in NAMES:
                if db.queued[name].pop(op[1], None) is not None:
                    q.drop(op[1])
        elif op[0] == "tick":
            clock.now += op[1]

        counts = Counter(job.tenant_id for job in in_flight)
        for name, state in q.snapshot().items():
            assert state["in_flight"] == counts[name] >= 0
            assert state["buffered"] >= 0

    # Everything still queued (and allowed) comes out exactly once.
    for name in NAMES:
        q.set_tenant(name, weight=1)
    rest = take(q, db, 10_000)
    assert len({job.job_id for job in rest}) == len(rest)
    assert not {job.job_id for job in rest} & (finished | {job.job_id for job in in_flight})
    assert all(not jobs for jobs in db.queued.values())


@PROPERTIES
@given(
    st.lists(st.tuples(st.integers(1, 8), st.sampled_from([0.5, 1.0, 2.0, 3.0])), min_size=2, max_size=5),
    st.integers(0, 2**32),
)
def test_each_backlogged_tenant_gets_its_weight_share_of_worker_time(shape, seed):
    rng = random.Random(seed)
    ids = itertools.count(1)

    def refill(tenant: str, n: int) -> list[Candidate]:  # an endless backlog
        cost = shape[int(tenant)][1]
        return [Candidate(j, tenant, "k", rng.choice([LOW, NORMAL, HIGH]), j, 0.0, cost)
                for j in itertools.islice(ids, n)]

    q = FairQueue(refill=refill, clock=lambda: 0.0, refill_size=16)
    for index, (weight, _) in enumerate(shape):
        q.set_tenant(str(index), weight=weight)
        q.notify(str(index))
    used = Counter()
    for _ in range(1500):
        for job in q.select(4):
            actual = job.cost * rng.uniform(0.5, 1.5)  # estimates are off both ways
            used[job.tenant_id] += actual
            q.complete(job.tenant_id, estimated=job.cost, actual=actual)

    total_weight = sum(weight for weight, _ in shape)
    total_used = sum(used.values())
    for index, (weight, _) in enumerate(shape):
        assert used[str(index)] / total_used == pytest.approx(weight / total_weight, abs=0.03)
