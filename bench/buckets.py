"""Token bucket throughput: one request per call against batches of 10, 100 and 1,000.

Prints takes per second for the memory backend and for Redis on loopback
(``redis://127.0.0.1:6379/15`` unless ``--redis-url`` says otherwise). Each
measurement runs for at most ``--seconds`` and a bounded number of calls; the
keys it made are deleted afterwards (by its own prefix, never FLUSHDB).

Run: ``python3 bench/buckets.py``. It prints figures; it never passes or fails on time.
"""
from __future__ import annotations

import argparse
import logging
import time
import uuid

import redis

from app.quota import BucketBackend, BucketSpec, MemoryBuckets, RedisBuckets, TakeRequest
from app.quota.buckets import KEY_PREFIX

__all__ = ["measure", "main"]

logger = logging.getLogger(__name__)

#: Requests per call to compare.
BATCH_SIZES = (1, 10, 100, 1000)

#: Distinct buckets the requests cycle through (several tenants and kinds).
KEYS = 1000

#: Most calls one measurement makes, whatever the time budget.
MAX_CALLS = 20_000

#: A bucket that never runs dry during the benchmark, so every take does the full work.
SPEC = BucketSpec(rate=1e6, burst=1_000_000)


def measure(backend: BucketBackend, prefix: str, batch: int, *, seconds: float) -> float:
    """Takes per second with ``batch`` requests per call, over at most ``seconds``.

    Parameters:
      backend: the buckets to take from.
      prefix: the key prefix of this run.
      batch: requests per call.
      seconds: the time budget.

    Returns:
      Requests handled per second.
    """
    requests = [TakeRequest(f"{prefix}:t{n % 50}:k{n % KEYS}", SPEC) for n in range(KEYS + batch)]
    backend.take(requests[:batch])  # warm up: script loaded, connection open
    calls = handled = 0
    started = time.perf_counter()
    deadline = started + seconds
    while calls < MAX_CALLS and time.perf_counter() < deadline:
        offset = (calls * batch) % KEYS
        handled += len(backend.take(requests[offset:offset + batch]))
        calls += 1
    return handled / (time.perf_counter() - started)


def _report(name: str, backend: BucketBackend, prefix: str, *, seconds: float) -> None:
    print(f"\n{name}")
    print(f"{'requests/call':>14} {'takes/s':>12} {'calls/s':>10}")
    for batch in BATCH_SIZES:
        rate = measure(backend, prefix, batch, seconds=seconds)
        print(f"{batch:>14} {rate:>12,.0f} {rate / batch:>10,.0f}")


def main(argv: list[str] | None = None) -> None:
    """Run every measurement and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--seconds", type=float, default=0.5, help="time budget per measurement")
    options = parser.parse_args(argv)
    prefix = f"bench:{uuid.uuid4().hex[:12]}"

    _report("memory (one process, a lock)", MemoryBuckets(), prefix, seconds=options.seconds)

    client = redis.Redis.from_url(options.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        info = client.info("server")
        _report(
            f"Redis {info.get('redis_version')} at {options.redis_url} (one EVALSHA per call)",
            RedisBuckets(client),
            prefix,
            seconds=options.seconds,
        )
    finally:
        for name in client.scan_iter(match=f"{KEY_PREFIX}{prefix}:*", count=1000):
            client.delete(name)
        client.close()


if __name__ == "__main__":
    main()
