"""The dispatcher's fair order: weighted fair queueing across tenants, priority with aging within.

Pure and in memory (stdlib only): the leader's dispatcher feeds it the heads of each
tenant's backlog and asks :meth:`FairQueue.select` which jobs to publish next.

Across tenants it is start-time fair queueing by cost. A tenant of weight ``w`` charged a
job of estimated cost ``c`` advances its virtual time by ``c / w``; :meth:`FairQueue.complete`
adds ``(actual - estimated) / w``. The next job comes from the eligible tenant with the
smallest virtual time (ties: tenant id), through a heap of tenants: O(log T) per job.

*Eligible*: queued work, not paused, under its cap, and the tenant's next job (in its own
order) is not blocked by the rate limiter. Only that one job is looked at: if its kind is
blocked the tenant sits the round out, even with other kinds queued behind it (simple, and
a tenant's own order is never bent). Others take the slots; at the end of the round the
blocked tenant's vtime is raised to ``V``: throttled time is not paid back later.

*No saved credit*: :attr:`FairQueue.virtual_time` ``V`` is the largest start tag dispatched
so far (it never decreases, except when :meth:`FairQueue.unselect` undoes the last charge),
so while every tenant is idle it keeps the last start. A tenant that becomes active (work
after none, unpaused, cap raised) restarts at ``max(own vtime, V)``. ``V`` is not the
minimum over active tenants: a capped or rate-limited tenant lags by design, and newcomers
must not inherit its lag. A capped tenant keeps its own lag: it gets a slot first whenever
one of its jobs ends.

Tenants first seen through :meth:`FairQueue.notify`, :meth:`FairQueue.add` or the in-flight
methods get weight 1 until :meth:`FairQueue.set_tenant` says otherwise.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .fairness_tenant import TenantHeap, TenantState

__all__ = ["Candidate", "FairQueue"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A queued job as the policy sees it. ``cost`` must be finite and > 0 (ValueError)."""

    job_id: int
    tenant_id: str
    kind: str
    priority: int  # 0 low, 1 normal, 2 high
    seq: int  # FIFO order within a priority level (e.g. the job id)
    enqueued_at: float  # seconds, on the policy's clock
    cost: float  # estimated run time, seconds

    def __post_init__(self) -> None:
        if not (self.cost > 0 and math.isfinite(self.cost)):
            raise ValueError(f"job {self.job_id}: cost must be finite and > 0, not {self.cost!r}")


class FairQueue:
    """The fair-order policy. Not thread-safe: the one leader thread owns it.

    Parameters:
      refill: ``refill(tenant_id, n)`` returns up to ``n`` queued candidates of each priority
        level of that tenant, oldest first, leaving out jobs in flight. It is called from
        :meth:`select` when the tenant's buffer is empty or a level ran out, and the buffer is
        empty then, so buffered jobs need no excluding. Jobs chosen earlier in the same call
        (:meth:`selecting`) may come back: ``n`` counts them and they are skipped. Fewer than
        ``n`` in all means "no more" until :meth:`notify`; a level with fewer than ``n`` is
        complete (a caller returning ``n`` in all still works, refilling only when dry).
      aging_seconds: waiting this long raises a job's effective priority by one (> 0).
      clock: current time in seconds, the clock of ``Candidate.enqueued_at``.
      refill_size: the ``n`` passed to ``refill`` when no job of the tenant was chosen yet (>= 1).

    Raises:
      ValueError: ``aging_seconds`` or ``refill_size`` is out of range.
    """

    def __init__(self, *, refill: Callable[[str, int], list[Candidate]], aging_seconds: float = 60.0,
                 clock: Callable[[], float] = time.time, refill_size: int = 64) -> None:
        if not aging_seconds > 0 or refill_size < 1:
            raise ValueError("aging_seconds must be > 0 and refill_size >= 1")
        self._refill, self._aging, self._clock, self._refill_size = refill, aging_seconds, clock, refill_size
        self._tenants: dict[str, TenantState] = {}
        self._heap = TenantHeap()
        self._where: dict[int, Candidate] = {}  # every buffered candidate by job id
        #: the last select's charges still standing: (job id, tenant id, vtime before, after, V before)
        self._undo: list[tuple[int, str, float, float, float]] = []
        self.virtual_time = 0.0  #: ``V``: the largest start tag dispatched (see the module doc).

    def set_tenant(self, tenant_id: str, *, weight: float, paused: bool = False,
                   cap: int | None = None) -> None:
        """Configure a tenant (creating it if new); its virtual time is kept.

        Parameters:
          weight: its share (finite, > 0); charges made from now on use it.
          paused: a paused tenant is never selected; on resume it restarts at ``max(vtime, V)``.
          cap: most jobs in flight at once (>= 0), or None for no cap.

        Raises:
          ValueError: ``weight`` or ``cap`` is out of range.
        """
        if not (weight > 0 and math.isfinite(weight)) or (cap is not None and cap < 0):
            raise ValueError(f"tenant {tenant_id}: weight must be finite and > 0, cap >= 0 or None")
        t = self._tenant(tenant_id)
        was_active, was_runnable = t.active, t.runnable
        t.weight, t.paused, t.cap = float(weight), paused, cap
        self._reheap(t, activated=(t.active and not was_active) or (t.runnable and not was_runnable))

    def notify(self, tenant_id: str) -> None:
        """The tenant has new queued work in the database: drop its buffer, refill on next select."""
        t = self._tenant(tenant_id)
        was_active = t.active
        self._invalidate(t)
        self._reheap(t, activated=t.active and not was_active)

    def remind(self, tenant_id: str) -> None:
        """The database holds queued work of the tenant (a periodic re-count, not news of new
        work): if the queue believes it has none, it is refilled on the next select.

        A tenant with work buffered, or already due a refill, is left as it is: it refills when
        its buffer runs dry, so a job a lost notification left behind still runs. Dropping its
        buffer (:meth:`notify`) cost a refill query per tenant per re-count: with 1,000 tenants,
        1,000 queries every 5 s, most of the dispatcher's time (see BENCHMARKS.md, scenario 6).
        """
        t = self._tenant(tenant_id)
        if t.count or t.has_more:
            return
        was_active = t.active
        t.has_more = True
        self._reheap(t, activated=t.active and not was_active)

    def add(self, candidates: Iterable[Candidate]) -> None:
        """Buffer known candidates directly (start-up, tests); job ids already buffered are ignored.

        ``has_more`` is left alone: a tenant with buffered work is refilled when it runs dry.
        """
        new: dict[str, list[Candidate]] = {}
        for c in candidates:
            if c.job_id not in self._where:
                self._where[c.job_id] = c
                new.setdefault(c.tenant_id, []).append(c)
        for tenant_id, batch in new.items():
            t = self._tenant(tenant_id)
            was_active = t.active
            t.extend(batch)
            self._reheap(t, activated=t.active and not was_active)

    def select(self, n: int, *,
               blocked: Callable[[str, str], bool] = lambda t, k: False) -> list[Candidate]:
        """Choose up to ``n`` jobs in dispatch order; each is charged and counted in flight.

        Parameters:
          n: how many slots are free.
          blocked: ``blocked(tenant_id, kind)`` is True when that job may not start now (no
            token). It should only look: take the tokens for the batch afterwards and
            :meth:`unselect` the refused jobs. Asked before each job is chosen; a tenant
            found blocked is not asked again in the same call.

        Returns:
          The candidates in the order they should be published; fewer than ``n`` when the
          eligible work runs out.

        Raises:
          Whatever ``refill``, ``blocked`` or the clock raise; the call is then undone (nothing
          stays charged or in flight).
        """
        chosen: list[Candidate] = []
        aside: list[TenantState] = []  # blocked this round: back in the heap at V afterwards
        self._undo = []
        heap = self._heap
        try:
            now = self._clock()
            while len(chosen) < n and (t := heap.top()) is not None:
                if t.awaiting_refill:
                    self._fill(t)
                c = t.head(now, self._aging)
                if c is None:
                    heap.remove_top(t)  # the refill found nothing
                elif blocked(t.tenant_id, c.kind):
                    heap.remove_top(t)
                    aside.append(t)
                else:
                    self._charge(t, c)
                    chosen.append(c)
                    heap.requeue_top(t)
        except BaseException:
            for c in reversed(chosen):
                self.unselect(c)
            raise
        finally:
            for t in aside:
                self._reheap(t, activated=True)
        return chosen

    def selecting(self, tenant_id: str) -> frozenset[int]:
        """Job ids of the tenant chosen by the current (or last) :meth:`select` call."""
        return frozenset(u[0] for u in self._undo if u[1] == tenant_id)

    def unselect(self, candidate: Candidate) -> None:
        """The caller could not dispatch ``candidate``: refund it and put it back at its place.

        Undoing the last :meth:`select` call in reverse order restores every virtual time and
        ``V`` exactly; otherwise ``cost / weight`` is refunded. If the tenant's buffer awaits a
        refill the job is left to the refill (it is no longer in flight).

        Raises:
          ValueError: the job is buffered already (unselected twice, or never selected).
        """
        if candidate.job_id in self._where:
            raise ValueError(f"job {candidate.job_id} is not in flight here")
        t = self._tenant(candidate.tenant_id)
        last = self._undo[-1] if self._undo else None
        if last is not None and last[0] == candidate.job_id and t.vtime == last[3]:
            self._undo.pop()
            t.vtime, self.virtual_time = last[2], last[4]
        else:
            self._undo = [u for u in self._undo if u[0] != candidate.job_id]
            t.vtime -= candidate.cost / t.weight
        t.in_flight = max(0, t.in_flight - 1)
        if not t.awaiting_refill:
            t.insert(candidate)
            self._where[candidate.job_id] = candidate
        self._reheap(t)

    def drop(self, job_id: int) -> bool:
        """Forget a buffered job (cancelled meanwhile). Returns: False if it was not buffered."""
        c = self._where.pop(job_id, None)
        if c is None:
            return False
        t = self._tenants[c.tenant_id]
        if t.remove(c):
            self._invalidate(t)  # its level ran out: the database may hold more of it
        self._reheap(t)
        return True

    def complete(self, tenant_id: str, *, estimated: float, actual: float) -> None:
        """A job ended: one less in flight, its charge corrected by ``(actual - estimated) / w``.

        Raises:
          ValueError: a time is negative or not finite.
        """
        if not (0 <= estimated < math.inf and 0 <= actual < math.inf):
            raise ValueError("estimated and actual must be finite and >= 0")
        t = self._tenant(tenant_id)
        t.in_flight = max(0, t.in_flight - 1)
        t.vtime += (actual - estimated) / t.weight
        self._reheap(t)

    def forget_in_flight(self, tenant_id: str, count: int = 1) -> None:
        """``count`` jobs in flight ended without a measured time (their estimate stays charged)."""
        t = self._tenant(tenant_id)
        t.in_flight = max(0, t.in_flight - max(0, count))
        self._reheap(t)

    def set_in_flight(self, tenant_id: str, count: int) -> None:
        """At leader start-up: ``count`` jobs of the tenant are already dispatched or running."""
        t = self._tenant(tenant_id)
        t.in_flight = max(0, count)
        self._reheap(t)

    def snapshot(self) -> dict[str, dict]:
        """Returns: per tenant id, its weight, vtime, in_flight, buffered, has_more, paused, cap."""
        return {tenant_id: t.as_dict() for tenant_id, t in self._tenants.items()}

    def _tenant(self, tenant_id: str) -> TenantState:
        t = self._tenants.get(tenant_id)
        if t is None:
            t = self._tenants[tenant_id] = TenantState(tenant_id)
        return t

    def _charge(self, t: TenantState, c: Candidate) -> None:
        level_ran_out = t.take(c)
        del self._where[c.job_id]
        before, v_before = t.vtime, self.virtual_time
        if before > v_before:
            self.virtual_time = before
        t.vtime = before + c.cost / t.weight
        t.in_flight += 1
        self._undo.append((c.job_id, t.tenant_id, before, t.vtime, v_before))
        if level_ran_out:
            self._invalidate(t)  # more of that level may be in the database, ahead of lower ones

    def _fill(self, t: TenantState) -> None:
        picked = self.selecting(t.tenant_id)
        asked = self._refill_size + len(picked)  # chosen ones may still look queued to the caller
        fresh = []
        for c in t.refilled(list(self._refill(t.tenant_id, asked)), asked=asked, skip=picked):
            if c.job_id not in self._where:
                self._where[c.job_id] = c
                fresh.append(c)
        t.extend(fresh)

    def _invalidate(self, t: TenantState) -> None:
        for job_id in t.clear():
            del self._where[job_id]
        t.has_more = True

    def _reheap(self, t: TenantState, *, activated: bool = False) -> None:
        """Renew the tenant's heap entry after any change; ``activated`` applies no-saved-credit."""
        if activated:
            t.vtime = max(t.vtime, self.virtual_time)
        self._heap.update(t)
