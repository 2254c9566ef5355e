"""Plans, token buckets, concurrency caps, quotas, usage metering and the gate middleware."""
from __future__ import annotations

import logging
import threading

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.quota.buckets import BucketBackend, BucketSpec, LimiterUnavailable, TakeRequest
from app.quota.memory_buckets import MemoryBuckets
from app.quota.redis_buckets import RedisBuckets
from app.settings import Settings

__all__ = [
    "BucketBackend",
    "BucketSpec",
    "LimiterUnavailable",
    "MemoryBuckets",
    "RedisBuckets",
    "TakeRequest",
    "make_buckets",
]

logger = logging.getLogger(__name__)

#: Seconds to connect to Redis, or to wait for an answer, before the limiter counts as unavailable.
REDIS_TIMEOUT = 1.0

_memory_lock = threading.Lock()
_memory: MemoryBuckets | None = None


def make_buckets(settings: Settings, *, timeout: float | None = None) -> BucketBackend:
    """The token buckets the settings describe.

    Redis when ``settings.redis_url`` is set: a new client each call, so call it
    once per process (after any fork) and keep the result. Otherwise the one
    in-memory backend of this process, the same object on every call.

    Redis calls are not retried: a take that timed out may have run, and
    running it twice would take twice. The caller fails safe on
    :class:`LimiterUnavailable` and tries again on its next pass.

    Parameters:
      settings: the process settings.
      timeout: seconds to connect and to wait for each answer (default :data:`REDIS_TIMEOUT`).

    Returns:
      A :class:`RedisBuckets` or the process-wide :class:`MemoryBuckets`.
    """
    global _memory
    if settings.redis_url:
        client = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=timeout or REDIS_TIMEOUT,
            socket_connect_timeout=timeout or REDIS_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        return RedisBuckets(client)
    with _memory_lock:
        if _memory is None:
            logger.info("token buckets in memory: limits apply per process")
            _memory = MemoryBuckets()
        return _memory

