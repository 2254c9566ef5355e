"""Token buckets: one behavioural suite run against the memory and the Redis backends.

The memory backend runs on a fake clock; the Redis one on the real server at
``FAIRQ_REDIS_URL`` (db 15) with short real sleeps. Every test uses its own key
prefix and deletes only its own keys: other tests share the server.
"""
from __future__ import annotations

import math
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis

from app.quota import (
    BucketBackend,
    BucketSpec,
    LimiterUnavailable,
    MemoryBuckets,
    RedisBuckets,
    TakeRequest,
    make_buckets,
)
from app.quota.buckets import KEY_PREFIX, MAX_REFILL_SECONDS, TTL_MARGIN
from app.settings import Settings
from tests.conftest import free_port

#: Slow enough that nothing refills during a test.
FROZEN = 1e-3


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    """A backend under test, a key maker and a way to let time pass."""

    backend: BucketBackend
    prefix: str
    advance: Callable[[float], None]
    exact: bool  # False on Redis: real sleeps may overshoot

    def key(self, name: str = "k") -> str:
        return f"{self.prefix}:{name}"


@pytest.fixture
def redis_client(settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    client.close()


@pytest.fixture(params=["memory", "redis"])
def harness(request) -> Iterator[Harness]:
    prefix = f"test:{uuid.uuid4().hex}"
    if request.param == "memory":
        clock = FakeClock()

        def advance(seconds: float) -> None:
            clock.now += seconds

        yield Harness(MemoryBuckets(clock=clock), prefix, advance, exact=True)
        return
    client = request.getfixturevalue("redis_client")
    yield Harness(RedisBuckets(client), prefix, time.sleep, exact=False)
    for name in client.scan_iter(match=f"{KEY_PREFIX}{prefix}:*"):
        client.delete(name)


def take(backend: BucketBackend, key: str, spec: BucketSpec, count: int = 1) -> int:
    return backend.take([TakeRequest(key, spec, count)])[0]


# -- the policy -------------------------------------------------------------


@pytest.mark.parametrize(
    "rate, burst",
    [(0, 1), (-1, 1), (math.nan, 1), (math.inf, 1), ("1", 1), (1, 0), (1, 1.5), (1, True),
     (1 / MAX_REFILL_SECONDS, 2)],
)
def test_bucket_spec_refuses_bad_values(rate, burst):
    with pytest.raises(ValueError):
        BucketSpec(rate=rate, burst=burst)


@pytest.mark.parametrize("key, count", [("", 1), ("k", -1), ("k", 1.0), ("k", True)])
def test_take_request_refuses_bad_values(key, count):
    with pytest.raises(ValueError):
        TakeRequest(key, BucketSpec(rate=1, burst=1), count)


def test_ttl_is_time_to_refill_plus_margin():
    assert BucketSpec(rate=2, burst=9).ttl == 5 + TTL_MARGIN


# -- the behaviour, on both backends ---------------------------------------


def test_new_bucket_starts_full(harness):
    spec = BucketSpec(rate=FROZEN, burst=7)
    assert take(harness.backend, harness.key(), spec, 7) == 7
    assert take(harness.backend, harness.key(), spec, 1) == 0


def test_burst_then_refusal(harness):
    spec = BucketSpec(rate=FROZEN, burst=5)
    grants = [take(harness.backend, harness.key(), spec) for _ in range(8)]
    assert grants == [1] * 5 + [0] * 3


def test_refill_over_time(harness):
    spec = BucketSpec(rate=50, burst=20)
    assert take(harness.backend, harness.key(), spec, 20) == 20
    harness.advance(0.1)  # 5 tokens at 50/s
    granted = take(harness.backend, harness.key(), spec, 20)
    assert granted == 5 if harness.exact else 5 <= granted <= 8


def test_refill_stops_at_burst(harness):
    spec = BucketSpec(rate=1000, burst=5)
    assert take(harness.backend, harness.key(), spec, 5) == 5
    harness.advance(0.05)  # 50 tokens' worth
    assert take(harness.backend, harness.key(), spec, 100) == 5


def test_partial_grants(harness):
    spec = BucketSpec(rate=FROZEN, burst=5)
    assert [take(harness.backend, harness.key(), spec, 3) for _ in range(3)] == [3, 2, 0]
    assert take(harness.backend, harness.key(), spec, 0) == 0


def test_a_batch_equals_the_same_requests_one_by_one(harness):
    small, large = BucketSpec(rate=FROZEN, burst=3), BucketSpec(rate=FROZEN, burst=10)
    plan = [("a", small, 2), ("b", large, 4), ("a", small, 2), ("c", small, 5), ("b", large, 7),
            ("a", small, 1), ("d", large, 0)]

    def requests(side: str) -> list[TakeRequest]:
        return [TakeRequest(harness.key(f"{side}:{name}"), spec, n) for name, spec, n in plan]

    batched = harness.backend.take(requests("batch"))
    one_by_one = [harness.backend.take([r])[0] for r in requests("single")]
    assert batched == one_by_one == [2, 4, 1, 3, 6, 0, 0]
    assert harness.backend.take([]) == []


def test_refund_never_exceeds_burst(harness):
    spec = BucketSpec(rate=FROZEN, burst=5)
    assert take(harness.backend, harness.key(), spec, 3) == 3
    harness.backend.refund(harness.key(), spec, 2)
    assert take(harness.backend, harness.key(), spec, 10) == 4
    harness.backend.refund(harness.key(), spec, 100)
    assert take(harness.backend, harness.key(), spec, 10) == 5
    harness.backend.refund(harness.key("fresh"), spec, 3)  # a new bucket is already full
    assert take(harness.backend, harness.key("fresh"), spec, 10) == 5


def test_wait_time(harness):
    spec = BucketSpec(rate=10, burst=5)
    assert harness.backend.wait_time(harness.key(), spec, 5) == 0.0
    assert take(harness.backend, harness.key(), spec, 5) == 5
    waited = harness.backend.wait_time(harness.key(), spec, 2)
    assert waited == pytest.approx(0.2) if harness.exact else 0.1 < waited <= 0.2
    harness.advance(0.25)
    assert harness.backend.wait_time(harness.key(), spec, 2) == 0.0
    with pytest.raises(ValueError):
        harness.backend.wait_time(harness.key(), spec, 6)


def test_reset_fills_the_bucket(harness):
    spec = BucketSpec(rate=FROZEN, burst=4)
    assert take(harness.backend, harness.key(), spec, 4) == 4
    harness.backend.reset(harness.key())
    harness.backend.reset(harness.key("never-used"))
    assert take(harness.backend, harness.key(), spec, 4) == 4


def test_concurrent_takes_grant_exactly_the_burst(harness):
    # Given a bucket of 100 that does not refill, and 8 threads asking for ~640 tokens
    spec = BucketSpec(rate=FROZEN, burst=100)
    threads, rounds = 8, 40
    start = threading.Barrier(threads)
    totals = [0] * threads

    def hammer(index: int) -> None:
        start.wait()
        for i in range(rounds):
            count = 1 + (index + i) % 3
            if i % 2:
                totals[index] += take(harness.backend, harness.key(), spec, count)
            else:
                batch = [TakeRequest(harness.key(), spec, count)] * 2
                totals[index] += sum(harness.backend.take(batch))

    workers = [threading.Thread(target=hammer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    # Then exactly the burst was granted, not one token more or less
    assert sum(totals) == 100


# -- the memory backend ----------------------------------------------------


def test_memory_forgets_idle_buckets():
    clock = FakeClock()
    backend = MemoryBuckets(clock=clock)
    spec = BucketSpec(rate=1, burst=2)
    for n in range(50):
        backend.take([TakeRequest(f"k{n}", spec, 1)])
    assert len(backend) == 50
    clock.now += spec.ttl
    for _ in range(1024):  # enough calls to trigger a sweep
        backend.wait_time("other", spec)
    assert len(backend) == 0


# -- the Redis backend -----------------------------------------------------


def test_redis_keys_expire_once_refilled(redis_client):
    backend, key = RedisBuckets(redis_client), f"test:{uuid.uuid4().hex}:k"
    spec = BucketSpec(rate=2, burst=9)
    try:
        backend.take([TakeRequest(key, spec, 1)])
        assert spec.ttl - 1 <= redis_client.ttl(KEY_PREFIX + key) <= spec.ttl
        backend.refund(key, spec, 1)
        assert spec.ttl - 1 <= redis_client.ttl(KEY_PREFIX + key) <= spec.ttl
    finally:
        redis_client.delete(KEY_PREFIX + key)


def test_redis_uses_its_own_clock(redis_client, monkeypatch):
    backend, key = RedisBuckets(redis_client), f"test:{uuid.uuid4().hex}:k"
    spec = BucketSpec(rate=1, burst=3)
    try:
        assert take(backend, key, spec, 3) == 3
        # When the client's clock jumps a day ahead
        real_time = time.time
        monkeypatch.setattr(time, "time", lambda: real_time() + 86400)
        # Then nothing refills, and the stored timestamp is the server's
        assert take(backend, key, spec, 3) == 0
        seconds, micros = redis_client.time()
        stamp = float(redis_client.hget(KEY_PREFIX + key, "ts"))
        assert abs(seconds + micros / 1e6 - stamp) < 5
    finally:
        redis_client.delete(KEY_PREFIX + key)


def test_unreachable_redis_raises_limiter_unavailable():
    backend = make_buckets(Settings.load(redis_url=f"redis://127.0.0.1:{free_port()}/15"))
    assert isinstance(backend, RedisBuckets)
    spec = BucketSpec(rate=1, burst=1)
    try:
        with pytest.raises(LimiterUnavailable):
            backend.take([TakeRequest("k", spec)])
        with pytest.raises(LimiterUnavailable):
            backend.wait_time("k", spec)
        with pytest.raises(LimiterUnavailable):
            backend.refund("k", spec, 1)
        with pytest.raises(LimiterUnavailable):
            backend.reset("k")
    finally:
        backend.close()


def test_silent_redis_raises_limiter_unavailable():
    # Given a server that accepts connections and never answers
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        host, port = server.getsockname()
        backend = make_buckets(Settings.load(redis_url=f"redis://{host}:{port}/15"), timeout=0.2)
        try:
            started = time.monotonic()
            with pytest.raises(LimiterUnavailable):
                backend.take([TakeRequest("k", BucketSpec(rate=1, burst=1))])
            # Then it gave up after one timeout: a take is never retried
            assert time.monotonic() - started < 1
        finally:
            backend.close()


def test_make_buckets_picks_the_backend(settings):
    embedded = Settings.load(redis_url="")
    assert make_buckets(embedded) is make_buckets(embedded)
    assert isinstance(make_buckets(embedded), MemoryBuckets)
    backend = make_buckets(settings)
    try:
        assert isinstance(backend, RedisBuckets)
    finally:
        backend.close()
