"""Token buckets in Redis, one Lua script call per batch.

Each bucket is a hash ``fairq:bucket:<key>`` with ``tokens`` (a float) and
``ts`` (Redis's own clock, in seconds, when ``tokens`` was right). The scripts
read the time with ``redis.call('TIME')``, so every client agrees whatever its
own clock says. Every write sets an ``EXPIRE`` of the time to refill completely
plus :data:`~app.quota.buckets.TTL_MARGIN`: an idle bucket vanishes once it
would be full anyway, which is what a missing bucket means.

One call of :data:`TAKE_SCRIPT` handles a whole batch: Redis runs it
atomically, so no other client sees a half-taken batch. A batch of 1,000 keys
keeps Redis busy for a few milliseconds.

Redis Cluster would need every key of one call in the same hash slot (a
``{tenant}`` hash tag); fairq runs a single Redis, so keys carry no hash tag.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import redis

from app.quota.buckets import (
    EPSILON,
    KEY_PREFIX,
    TTL_MARGIN,
    BucketSpec,
    LimiterUnavailable,
    TakeRequest,
    check_count,
    check_key,
    check_wait_count,
    seconds_until,
)

__all__ = ["RedisBuckets", "TAKE_SCRIPT", "REFUND_SCRIPT", "WAIT_SCRIPT"]

logger = logging.getLogger(__name__)

#: Lua shared by the scripts: Redis's clock, refill, store with expiry.
#: Lua numbers are doubles; ``%.17g`` writes them back without loss.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function tokens_of(key, rate, burst)
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens, ts = tonumber(state[1]), tonumber(state[2])
  if tokens == nil or ts == nil then return burst end
  local elapsed = now - ts
  if elapsed < 0 then elapsed = 0 end
  return math.min(burst, tokens + elapsed * rate)
end
local function store(key, tokens, rate, burst)
  redis.call('HSET', key, 'tokens', string.format('%.17g', tokens),
             'ts', string.format('%.17g', now))
  redis.call('EXPIRE', key, math.ceil(burst / rate) + {margin})
end
""".replace("{margin}", str(TTL_MARGIN))

#: KEYS: the buckets; ARGV: rate, burst, count for each key in turn. Returns the grants.
TAKE_SCRIPT = _PRELUDE + """
local grants = {}
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1])
  local count = tonumber(ARGV[3 * i])
  local tokens = tokens_of(KEYS[i], rate, burst)
  local granted = math.max(0, math.min(count, math.floor(tokens + {epsilon})))
  store(KEYS[i], math.max(0, tokens - granted), rate, burst)
  grants[i] = granted
end
return grants
""".replace("{epsilon}", repr(EPSILON))

#: KEYS[1]: the bucket; ARGV: rate, burst, count to give back.
REFUND_SCRIPT = _PRELUDE + """
local rate, burst, count = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
store(KEYS[1], math.min(burst, tokens_of(KEYS[1], rate, burst) + count), rate, burst)
return 0
"""

#: KEYS[1]: the bucket; ARGV: rate, burst. Returns the tokens it holds now, as text
#: (Redis would truncate a Lua number to an integer). Writes nothing.
WAIT_SCRIPT = _PRELUDE + """
return string.format('%.17g', tokens_of(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])))
"""

#: Errors that mean "Redis is not there right now" (a replica during failover refuses writes).
_UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
)


class RedisBuckets:
    """A :class:`~app.quota.buckets.BucketBackend` on one Redis server.

    Parameters:
      client: a ``redis.Redis`` with socket timeouts set (see
        :func:`app.quota.make_buckets`); it is thread-safe, so one per process is enough.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        # register_script sends EVALSHA and loads the script again after NOSCRIPT
        self._take = client.register_script(TAKE_SCRIPT)
        self._refund = client.register_script(REFUND_SCRIPT)
        self._wait = client.register_script(WAIT_SCRIPT)

    def take(self, requests: Sequence[TakeRequest]) -> list[int]:
        """See :meth:`BucketBackend.take <app.quota.buckets.BucketBackend.take>`."""
        if not requests:
            return []
        keys: list[str] = []
        args: list[float | int] = []
        for request in requests:
            keys.append(KEY_PREFIX + request.key)
            args += (request.spec.rate, request.spec.burst, request.count)
        with _unavailable("take"):
            grants = self._take(keys=keys, args=args)
        return [int(granted) for granted in grants]

    def wait_time(self, key: str, spec: BucketSpec, count: int = 1) -> float:
        """See :meth:`BucketBackend.wait_time <app.quota.buckets.BucketBackend.wait_time>`."""
        check_wait_count(spec, count)
        with _unavailable("wait_time"):
            held = self._wait(keys=[KEY_PREFIX + check_key(key)], args=[spec.rate, spec.burst])
        return seconds_until(float(held), count, spec)

    def refund(self, key: str, spec: BucketSpec, count: int) -> None:
        """See :meth:`BucketBackend.refund <app.quota.buckets.BucketBackend.refund>`."""
        check_count(count)
        with _unavailable("refund"):
            self._refund(keys=[KEY_PREFIX + check_key(key)], args=[spec.rate, spec.burst, count])

    def reset(self, key: str) -> None:
        """See :meth:`BucketBackend.reset <app.quota.buckets.BucketBackend.reset>`."""
        with _unavailable("reset"):
            self.client.delete(KEY_PREFIX + check_key(key))

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


@contextmanager
def _unavailable(operation: str) -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as exc:
        logger.debug("token buckets unavailable during %s: %s", operation, exc)
        raise LimiterUnavailable(f"Redis is unavailable: {exc}") from exc
