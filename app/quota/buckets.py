"""Token buckets: the policy and the small interface every storage backend offers.

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens per second.
Taking a token is the permission to dispatch (or run) one job. A bucket nobody
has touched is full, so a backend may forget an idle bucket once it would have
refilled completely: that keeps memory bounded without changing any answer.

The dispatcher takes tokens for many jobs at once (one round trip for a whole
batch); it is the only caller of :class:`BucketBackend`. The gate middleware
takes none: the token was spent when the job was dispatched (a second one at
the worker would charge the job twice), and the gate re-checks only what can
change while a message waits, the pause and the concurrency cap.
:mod:`app.quota.memory_buckets` and :mod:`app.quota.redis_buckets` implement
the interface, following Dramatiq's ``rate_limits/backend.py``: the policy
here, the storage there.

Callers namespace their keys (``t:<tenant>:k:<kind>``); the backend adds
:data:`KEY_PREFIX`.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "BucketSpec",
    "TakeRequest",
    "BucketBackend",
    "LimiterUnavailable",
    "KEY_PREFIX",
    "TTL_MARGIN",
    "MAX_REFILL_SECONDS",
    "EPSILON",
    "refill",
    "grantable",
    "seconds_until",
    "check_key",
    "check_count",
    "check_wait_count",
]

logger = logging.getLogger(__name__)

#: Prefix every backend puts before the caller's key.
KEY_PREFIX = "fairq:bucket:"

#: Seconds an idle bucket is kept beyond the time it takes to refill completely.
TTL_MARGIN = 10

#: Longest allowed time to refill an empty bucket (``burst / rate``), in seconds.
#: Anything slower is a quota, not a rate limit, and belongs to usage metering.
MAX_REFILL_SECONDS = 366 * 24 * 3600

#: Slack for floating point: 2.9999999999 tokens count as 3 (the Lua script uses the same).
EPSILON = 1e-6


class LimiterUnavailable(Exception):
    """The backend's store (Redis) cannot be reached or did not answer in time.

    Callers fail safe: they treat it as "no tokens". The dispatcher leaves the
    jobs queued and tries again on its next pass; the gate middleware puts the
    job back with a delay. No job is lost and none runs unlimited.
    """


@dataclass(frozen=True)
class BucketSpec:
    """The shape of one bucket.

    Parameters:
      rate: tokens added per second (finite, > 0).
      burst: capacity in tokens (an integer >= 1); a new bucket starts with this many.

    Raises:
      ValueError: a value is out of range, or refilling would take longer than
        :data:`MAX_REFILL_SECONDS`.
    """

    rate: float  # tokens per second
    burst: int  # capacity

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)):
            raise ValueError(f"bucket rate must be a number (got {self.rate!r})")
        if not math.isfinite(self.rate) or self.rate <= 0:
            raise ValueError(f"bucket rate must be a finite number > 0 (got {self.rate!r})")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"bucket burst must be an integer >= 1 (got {self.burst!r})")
        if self.refill_seconds > MAX_REFILL_SECONDS:
            raise ValueError(
                f"bucket refills too slowly: {self.burst} tokens at {self.rate}/s take "
                f"{self.refill_seconds:.0f} s (at most {MAX_REFILL_SECONDS} s)"
            )

    @property
    def refill_seconds(self) -> float:
        """Seconds an empty bucket takes to fill up."""
        return self.burst / self.rate

    @property
    def ttl(self) -> int:
        """Whole seconds an idle bucket is kept: by then it is full, i.e. as good as absent."""
        return math.ceil(self.burst / self.rate) + TTL_MARGIN


@dataclass(frozen=True)
class TakeRequest:
    """Take up to ``count`` tokens (``count`` >= 0) from the bucket ``key`` shaped by ``spec``."""

    key: str
    spec: BucketSpec
    count: int = 1

    def __post_init__(self) -> None:
        check_key(self.key)
        check_count(self.count)


def check_key(key: str) -> str:
    """``key`` if it is a non-empty string, else ``ValueError``."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"bucket key must be a non-empty string (got {key!r})")
    return key


def check_count(count: int) -> int:
    """``count`` if it is an integer >= 0, else ``ValueError``."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"token count must be an integer >= 0 (got {count!r})")
    return count


def check_wait_count(spec: BucketSpec, count: int) -> int:
    """``count`` if a bucket of ``spec`` can ever hold that many tokens, else ``ValueError``."""
    check_count(count)
    if count > spec.burst:
        raise ValueError(f"{count} tokens will never be available in a bucket of {spec.burst}")
    return count


def refill(tokens: float, elapsed: float, spec: BucketSpec) -> float:
    """Tokens in a bucket that held ``tokens`` ``elapsed`` seconds ago (a clock gone back: 0 s)."""
    return min(float(spec.burst), tokens + max(0.0, elapsed) * spec.rate)


def grantable(tokens: float, count: int) -> int:
    """How many of ``count`` tokens a bucket holding ``tokens`` can grant now."""
    return max(0, min(count, math.floor(tokens + EPSILON)))


def seconds_until(tokens: float, count: int, spec: BucketSpec) -> float:
    """Seconds until a bucket holding ``tokens`` holds ``count`` (0.0 if it does now)."""
    if tokens + EPSILON >= count:
        return 0.0
    return (count - tokens) / spec.rate


class BucketBackend(Protocol):
    """Where token buckets live. Every method is atomic per bucket and safe across threads.

    Every method may raise :class:`LimiterUnavailable` when the store cannot be
    reached; callers treat that as "no tokens".
    """

    def take(self, requests: Sequence[TakeRequest]) -> list[int]:
        """For each request in order: refill its bucket by the time elapsed, grant up to ``count``.

        Grants may be partial. The whole batch takes one round trip; several
        requests for one key see each other in order, so a batch gives the same
        grants as the same requests made one by one.

        Parameters:
          requests: what to take; an empty sequence costs nothing.

        Returns:
          The tokens granted for each request, 0..count, in the order given.

        Raises:
          LimiterUnavailable: the store cannot be reached.
        """

    def wait_time(self, key: str, spec: BucketSpec, count: int = 1) -> float:
        """Seconds until ``count`` tokens are available in ``key`` (0.0 if now). Takes nothing.

        Raises:
          ValueError: ``count`` is above ``spec.burst``: it would never be available.
          LimiterUnavailable: the store cannot be reached.
        """

    def refund(self, key: str, spec: BucketSpec, count: int) -> None:
        """Give back ``count`` tokens taken but not used; the bucket never exceeds ``spec.burst``.

        Raises:
          LimiterUnavailable: the store cannot be reached.
        """

    def reset(self, key: str) -> None:
        """Forget the bucket ``key``: it is full again.

        Raises:
          LimiterUnavailable: the store cannot be reached.
        """

