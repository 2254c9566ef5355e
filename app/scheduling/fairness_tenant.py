"""The fair-order policy's parts: one tenant's state, and the heap of runnable tenants.

:class:`app.scheduling.fairness.FairQueue` owns one :class:`TenantState` per tenant and
one :class:`TenantHeap`. A state knows nothing about other tenants; it answers "which of
my buffered jobs comes next" (priority with aging, then FIFO) and keeps the counters the
policy needs (in flight, more in the database). The heap orders the runnable ones.
"""
from __future__ import annotations

import bisect
import heapq
from collections.abc import Collection, Iterable
from operator import attrgetter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .fairness import Candidate

__all__ = ["COMPACT_SLACK", "TenantHeap", "TenantState"]

#: FIFO order within a priority level.
_FIFO = attrgetter("seq", "job_id")

#: The tenant heap is rebuilt when it holds more than twice its live entries plus this many.
COMPACT_SLACK = 64


class TenantState:
    """A tenant's share, virtual time, in-flight count and buffered candidates.

    The buffer holds one list per priority level, newest first, so the level's head (its
    oldest job) is the last item: each level is FIFO, so only the heads are ever compared.
    Empty levels are removed, so :meth:`head` looks at three lists at most.
    """

    __slots__ = (
        "cap",
        "count",
        "has_more",
        "in_flight",
        "in_heap",
        "levels",
        "more_levels",
        "paused",
        "tenant_id",
        "version",
        "vtime",
        "weight",
    )

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.weight = 1.0
        self.paused = False
        self.cap: int | None = None
        self.vtime = 0.0
        self.in_flight = 0
        self.has_more = False  # the database may hold queued jobs that are not buffered
        self.more_levels: set[int] = set()  # priority levels the last refill returned in full
        self.levels: dict[int, list[Candidate]] = {}
        self.count = 0  # buffered candidates over all levels
        self.version = 0  # bumped whenever the policy's heap entry for this tenant goes stale
        self.in_heap = False  # a current entry is in the policy's heap

    @property
    def active(self) -> bool:
        """Not paused and has queued work (buffered, or possibly more in the database)."""
        return not self.paused and (self.count > 0 or self.has_more)

    @property
    def runnable(self) -> bool:
        """Active and under its concurrency cap: may be asked for its next job."""
        return self.active and (self.cap is None or self.in_flight < self.cap)

    @property
    def awaiting_refill(self) -> bool:
        """The buffer is empty and the database may have more: the next selection refills."""
        return self.count == 0 and self.has_more

    def as_dict(self) -> dict:
        """Returns: weight, vtime, in_flight, buffered, has_more, paused, cap."""
        return {"weight": self.weight, "vtime": self.vtime, "in_flight": self.in_flight,
                "buffered": self.count, "has_more": self.has_more, "paused": self.paused,
                "cap": self.cap}

    def refilled(self, got: list[Candidate], *, asked: int, skip: Collection[int]) -> list[Candidate]:
        """Note what a refill of ``asked`` per level returned: whether the database has more.

        Returns:
          The candidates of ``got`` whose job id is not in ``skip`` (for the caller to buffer).

        Raises:
          ValueError: a candidate belongs to another tenant (nothing is changed then).
        """
        per_level: dict[int, int] = {}
        for c in got:
            if c.tenant_id != self.tenant_id:
                raise ValueError(f"refill({self.tenant_id!r}) returned job {c.job_id} of {c.tenant_id!r}")
            per_level[c.priority] = per_level.get(c.priority, 0) + 1
        self.has_more = len(got) >= asked
        self.more_levels = {p for p, count in per_level.items() if count >= asked}
        return [c for c in got if c.job_id not in skip]

    def extend(self, candidates: Iterable[Candidate]) -> None:
        """Buffer ``candidates`` (of this tenant, not buffered yet), each at its place."""
        touched = set()
        for candidate in candidates:
            level = self.levels.get(candidate.priority)
            if level is None:
                level = self.levels[candidate.priority] = []
            level.append(candidate)
            touched.add(candidate.priority)
            self.count += 1
        for priority in touched:
            self.levels[priority].sort(key=_FIFO, reverse=True)  # linear for ordered input

    def insert(self, candidate: Candidate) -> None:
        """Buffer one ``candidate`` at its place (binary search)."""
        level = self.levels.setdefault(candidate.priority, [])
        bisect.insort(level, candidate, key=lambda c: (-c.seq, -c.job_id))
        self.count += 1

    def head(self, now: float, aging_seconds: float) -> Candidate | None:
        """The buffered candidate that comes next within this tenant, or None if none.

        Parameters:
          now: the current time, on the candidates' clock.
          aging_seconds: waiting this long raises a job's effective priority by one.

        Returns:
          The level head with the highest ``priority + (now - enqueued_at) / aging_seconds``;
          on a tie, the lower ``seq``.
        """
        best: Candidate | None = None
        best_rank = 0.0
        for priority, level in self.levels.items():
            candidate = level[-1]
            rank = priority + (now - candidate.enqueued_at) / aging_seconds
            if best is None or rank > best_rank or (rank == best_rank and candidate.seq < best.seq):
                best, best_rank = candidate, rank
        return best

    def take(self, candidate: Candidate) -> bool:
        """Remove ``candidate``, which must be the head of its level (from :meth:`head`).

        Returns:
          True if its level ran dry while the database may hold more of it: refill before
          serving a lower level.
        """
        level = self.levels[candidate.priority]
        level.pop()
        return self._shrunk(candidate.priority, level)

    def remove(self, candidate: Candidate) -> bool:
        """Remove a buffered ``candidate`` wherever it sits in its level (linear in the level).

        Returns:
          As :meth:`take`.
        """
        level = self.levels[candidate.priority]
        level.remove(candidate)
        return self._shrunk(candidate.priority, level)

    def clear(self) -> list[int]:
        """Empty the buffer and forget which levels have more; the caller decides ``has_more``.

        Returns:
          The job ids that were buffered.
        """
        job_ids = [c.job_id for level in self.levels.values() for c in level]
        self.levels.clear()
        self.more_levels.clear()
        self.count = 0
        return job_ids

    def _shrunk(self, priority: int, level: list) -> bool:
        self.count -= 1
        if level:
            return False
        del self.levels[priority]
        return priority in self.more_levels


class TenantHeap:
    """The runnable tenants by ``(vtime, tenant id)``: a binary heap with lazy invalidation.

    A tenant has at most one current entry (same ``version``, ``in_heap`` set). Older entries
    are skipped when they reach the top and dropped when the heap is rebuilt, so an update
    costs O(log T) and the heap stays within twice the runnable tenants.
    """

    __slots__ = ("entries", "live")

    def __init__(self) -> None:
        self.entries: list[tuple[float, str, int, TenantState]] = []  # the state is never compared
        self.live = 0  # tenants with a current entry

    def update(self, t: TenantState) -> None:
        """Give ``t`` a current entry at its vtime if it is runnable, none otherwise."""
        t.version += 1
        self.live -= t.in_heap
        t.in_heap = t.runnable
        if t.in_heap:
            self.live += 1
            heapq.heappush(self.entries, (t.vtime, t.tenant_id, t.version, t))
            if len(self.entries) > 2 * self.live + COMPACT_SLACK:
                self.entries[:] = [e for e in self.entries if e[3].in_heap and e[2] == e[3].version]
                heapq.heapify(self.entries)

    def top(self) -> TenantState | None:
        """The runnable tenant with the smallest ``(vtime, tenant id)``, or None."""
        entries = self.entries
        while entries:
            _, _, version, t = entries[0]
            if version == t.version and t.in_heap:
                return t
            heapq.heappop(entries)  # stale
        return None

    def requeue_top(self, t: TenantState) -> None:
        """``t``, the top, was charged: move it to its new place (one sift), or out."""
        if t.runnable:
            t.version += 1
            heapq.heapreplace(self.entries, (t.vtime, t.tenant_id, t.version, t))
        else:
            self.remove_top(t)

    def remove_top(self, t: TenantState) -> None:
        """Take ``t``, the top, out of the heap."""
        heapq.heappop(self.entries)
        t.in_heap = False
        self.live -= 1
