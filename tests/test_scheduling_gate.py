"""The gate's pure parts (the message-by-message tests are in test_scheduling_e2e.py)."""
import random

import pytest

from app.scheduling.gate import backoff


class Jitter:
    """A random source whose ``uniform`` always gives the low end, the middle or the high end."""

    def __init__(self, where: str) -> None:
        self.where = where

    def uniform(self, low: float, high: float) -> float:
        return {"low": low, "middle": (low + high) / 2, "high": high}[self.where]


def test_backoff_doubles_with_each_attempt_up_to_the_cap():
    delays = [backoff(attempt, base=1.0, maximum=30.0, rng=Jitter("middle")) for attempt in range(1, 9)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert backoff(0, base=0.5, maximum=30.0, rng=Jitter("middle")) == 0.5  # never below the first delay


@pytest.mark.parametrize(("attempt", "nominal"), [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.6), (5, 2.0), (9, 2.0)])
def test_backoff_jitter_spreads_each_delay_from_half_to_one_and_a_half_times(attempt, nominal):
    assert backoff(attempt, base=0.2, maximum=2.0, rng=Jitter("low")) == pytest.approx(nominal * 0.5)
    assert backoff(attempt, base=0.2, maximum=2.0, rng=Jitter("high")) == pytest.approx(nominal * 1.5)
    rng = random.Random(attempt)
    delays = [backoff(attempt, base=0.2, maximum=2.0, rng=rng) for _ in range(500)]
    assert all(nominal * 0.5 <= d <= nominal * 1.5 for d in delays)
    # really spread over the range (retries of many jobs failing together do not come back together)
    assert min(delays) < nominal * 0.6 and max(delays) > nominal * 1.4 and len(set(delays)) == len(delays)


def test_backoff_uses_the_module_random_source_by_default():
    random.seed(7)
    first = [backoff(3, base=1.0, maximum=60.0) for _ in range(5)]
    random.seed(7)
    assert [backoff(3, base=1.0, maximum=60.0) for _ in range(5)] == first
    assert all(2.0 <= d <= 6.0 for d in first)
