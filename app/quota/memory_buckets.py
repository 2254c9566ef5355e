"""Token buckets in process memory: the embedded default and the reference for tests.

Only the threads of one process share these buckets. Idle buckets are swept
once they would be full again (the same TTL as in Redis), so memory stays
bounded by the buckets in use.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.quota.buckets import (
    KEY_PREFIX,
    BucketSpec,
    TakeRequest,
    check_count,
    check_key,
    check_wait_count,
    grantable,
    refill,
    seconds_until,
)

__all__ = ["MemoryBuckets", "SWEEP_EVERY"]

logger = logging.getLogger(__name__)

#: Calls between two sweeps of expired buckets.
SWEEP_EVERY = 1024


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float  # clock reading when ``tokens`` was right
    expires: float  # clock reading after which the bucket is full, i.e. as good as absent


class MemoryBuckets:
    """A :class:`~app.quota.buckets.BucketBackend` in a dict behind one lock.

    Parameters:
      clock: seconds from a monotonic clock; tests inject a fake one.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._calls = 0

    def __len__(self) -> int:
        """Buckets held right now, expired ones not yet swept included."""
        with self._lock:
            return len(self._buckets)

    def take(self, requests: Sequence[TakeRequest]) -> list[int]:
        """See :meth:`BucketBackend.take <app.quota.buckets.BucketBackend.take>`."""
        grants = []
        with self._lock:
            now = self._tick()
            for request in requests:
                tokens = self._tokens(request.key, request.spec, now)
                granted = grantable(tokens, request.count)
                self._store(request.key, request.spec, max(0.0, tokens - granted), now)
                grants.append(granted)
        return grants

    def wait_time(self, key: str, spec: BucketSpec, count: int = 1) -> float:
        """See :meth:`BucketBackend.wait_time <app.quota.buckets.BucketBackend.wait_time>`."""
        check_key(key)
        check_wait_count(spec, count)
        with self._lock:
            tokens = self._tokens(key, spec, self._tick())
        return seconds_until(tokens, count, spec)

    def refund(self, key: str, spec: BucketSpec, count: int) -> None:
        """See :meth:`BucketBackend.refund <app.quota.buckets.BucketBackend.refund>`."""
        check_key(key)
        check_count(count)
        with self._lock:
            now = self._tick()
            tokens = min(float(spec.burst), self._tokens(key, spec, now) + count)
            self._store(key, spec, tokens, now)

    def reset(self, key: str) -> None:
        """See :meth:`BucketBackend.reset <app.quota.buckets.BucketBackend.reset>`."""
        with self._lock:
            self._buckets.pop(KEY_PREFIX + check_key(key), None)

    # -- under the lock --------------------------------------------------

    def _tick(self) -> float:
        now = self.clock()
        self._calls += 1
        if self._calls % SWEEP_EVERY == 0:
            expired = [name for name, bucket in self._buckets.items() if bucket.expires <= now]
            for name in expired:
                del self._buckets[name]
            if expired:
                logger.debug("swept %d idle token buckets", len(expired))
        return now

    def _tokens(self, key: str, spec: BucketSpec, now: float) -> float:
        bucket = self._buckets.get(KEY_PREFIX + key)
        if bucket is None or bucket.expires <= now:
            return float(spec.burst)
        return refill(bucket.tokens, now - bucket.stamp, spec)

    def _store(self, key: str, spec: BucketSpec, tokens: float, now: float) -> None:
        self._buckets[KEY_PREFIX + key] = _Bucket(tokens, now, now + spec.ttl)
