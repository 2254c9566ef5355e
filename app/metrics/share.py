"""Each tenant's share of worker time over a window, beside its entitlement.

The leading dispatcher already hears how long every job ran (to correct its
fair queue); it adds each one to a :class:`ShareWindow`, and publishes, about
once a second, every tenant's share of the worker time in the window beside
its entitlement: its weight over the sum of the weights of the tenants that
were active (ran, waited or were in flight) in the window.
"""
from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable

__all__ = ["ShareWindow", "shares"]


class ShareWindow:
    """Worker seconds per tenant over the last ``window`` seconds, in ``slots`` time slots.

    Not thread-safe: the dispatcher's thread owns it.
    """

    def __init__(self, window: float, *, slots: int = 30, clock: Callable[[], float] = time.monotonic) -> None:
        if window <= 0 or slots < 1:
            raise ValueError("window must be > 0 and slots >= 1")
        self.window = window
        self._slot = window / slots
        self._clock = clock
        self._slots: deque[tuple[int, dict[str, float]]] = deque()

    def add(self, tenant_id: str, seconds: float) -> None:
        """``tenant_id`` used ``seconds`` of worker time just now."""
        index = int(self._clock() // self._slot)
        if not self._slots or self._slots[-1][0] != index:
            self._slots.append((index, defaultdict(float)))
            self._expire(index)
        self._slots[-1][1][tenant_id] += seconds

    def seconds(self) -> dict[str, float]:
        """Worker seconds per tenant within the window."""
        self._expire(int(self._clock() // self._slot))
        total: dict[str, float] = defaultdict(float)
        for _, used in self._slots:
            for tenant_id, seconds in used.items():
                total[tenant_id] += seconds
        return dict(total)

    def _expire(self, now_index: int) -> None:
        oldest = now_index - int(round(self.window / self._slot)) + 1
        while self._slots and self._slots[0][0] < oldest:
            self._slots.popleft()


def shares(used: dict[str, float], weights: dict[str, float], busy: Iterable[str]) -> dict[str, tuple[float, float]]:
    """Per tenant, (share of worker time, entitlement).

    Parameters:
      used: worker seconds per tenant in the window.
      weights: every tenant's weight.
      busy: tenants with work waiting or in flight now (active even if nothing of theirs ran).
    """
    active = {t for t, seconds in used.items() if seconds > 0} | set(busy)
    total_used = sum(used.values())
    total_weight = sum(weights.get(t, 1.0) for t in active)
    return {
        t: (used.get(t, 0.0) / total_used if total_used else 0.0,
            weights.get(t, 1.0) / total_weight if total_weight else 0.0)
        for t in active
    }
