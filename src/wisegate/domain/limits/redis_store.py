"""The Redis store: the same buckets, shared by every server process (``WISEGATE_REDIS_URL``).

Each take is one Lua script, atomic in Redis, timed by Redis's own clock so that processes on
different machines agree. Keys expire once their bucket would be full again. Unused tokens given back
at settlement travel with the next take (or a background flush): one round trip per request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from wisegate.domain.limits.buckets import Bucket, Demand, Take, decide
from wisegate.errors import ApiInternal

log = logging.getLogger("wisegate.limits")

# Give-backs queued in this process ride along with the next take (or a background flush), so a
# settlement never waits for Redis. KEYS: the g give-back keys, then the take's keys. ARGV: g, then
# per key capacity, rate (units/s), amount. Returns {admitted, now, level_1, ..., level_n} for the
# take's keys as strings (Lua numbers would be truncated to integers).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local g = tonumber(ARGV[1])
for i = 1, g do
  local cap = tonumber(ARGV[3 * i - 1])
  local rate = tonumber(ARGV[3 * i])
  local amount = tonumber(ARGV[3 * i + 1])
  local s = redis.call('HMGET', KEYS[i], 'l', 't')
  if s[1] then
    local level = math.min(cap, tonumber(s[1]) + math.max(0, now - tonumber(s[2])) * rate + amount)
    redis.call('HSET', KEYS[i], 'l', string.format('%.6f', level), 't', string.format('%.6f', now))
    redis.call('PEXPIRE', KEYS[i], math.ceil((cap - level) / rate * 1000) + 1000)
  end
end
local n = #KEYS
local levels = {}
local ok = true
for i = g + 1, n do
  local cap = tonumber(ARGV[3 * i - 1])
  local rate = tonumber(ARGV[3 * i])
  local amount = tonumber(ARGV[3 * i + 1])
  local s = redis.call('HMGET', KEYS[i], 'l', 't')
  local level = cap
  if s[1] then
    level = math.min(cap, tonumber(s[1]) + math.max(0, now - tonumber(s[2])) * rate)
  end
  levels[i] = level
  if level < amount then ok = false end
end
local out = {ok and '1' or '0', string.format('%.6f', now)}
for i = g + 1, n do
  local cap = tonumber(ARGV[3 * i - 1])
  local rate = tonumber(ARGV[3 * i])
  local amount = tonumber(ARGV[3 * i + 1])
  if ok then
    local left = levels[i] - amount
    redis.call('HSET', KEYS[i], 'l', string.format('%.6f', left), 't', string.format('%.6f', now))
    redis.call('PEXPIRE', KEYS[i], math.ceil((cap - left) / rate * 1000) + 1000)
  end
  out[i - g + 2] = string.format('%.6f', levels[i])
end
return out
"""

_MAX_RIDERS = 64  # give-backs sent with one take; more wait for the background flush


class RedisLimiter:
    """Buckets in Redis under ``prefix``; one script, registered once and run by SHA.

    ``give_back`` does not wait for Redis: amounts are summed per bucket in this process and sent
    with the next take (one round trip per request), or by a background flush when no take comes;
    ``close`` sends whatever is still queued."""

    def __init__(self, url: str, prefix: str) -> None:
        # A bounded pool that waits for a free connection instead of failing under a burst.
        pool = BlockingConnectionPool.from_url(url, max_connections=64, timeout=10)
        self._redis: Redis = Redis.from_pool(pool)
        self._prefix = prefix
        self._take = self._redis.register_script(_TAKE)
        self._keys: dict[str, str] = {}
        self._owed: dict[str, tuple[Bucket, int]] = {}
        self._flusher: asyncio.Task[None] | None = None

    def _key(self, bucket: Bucket) -> str:
        key = self._keys.get(bucket.key)
        if key is None:
            if len(self._keys) > 10_000:
                self._keys.clear()
            key = self._keys[bucket.key] = f"{self._prefix}:rl:{bucket.key}"
        return key

    def _script_args(
        self, riders: Sequence[Demand], demands: Sequence[Demand]
    ) -> tuple[list[str], list[Any]]:
        keys: list[str] = []
        args: list[Any] = [len(riders)]
        for part in (riders, demands):
            for bucket, amount in part:
                keys.append(self._key(bucket))
                args += (bucket.capacity, repr(bucket.rate), amount)
        return keys, args

    def _riders(self, limit: int) -> list[Demand]:
        """Take up to ``limit`` queued give-backs off the queue (the caller sends or requeues them)."""
        if not self._owed:
            return []
        if len(self._owed) <= limit:
            riders, self._owed = list(self._owed.values()), {}
            return riders
        riders = []
        for key in list(self._owed)[:limit]:
            riders.append(self._owed.pop(key))
        return riders

    def _requeue(self, riders: Sequence[Demand]) -> None:
        for bucket, amount in riders:
            owed = self._owed.get(bucket.key)
            self._owed[bucket.key] = (bucket, amount + (owed[1] if owed else 0))

    async def take(self, demands: Sequence[Demand]) -> Take:
        riders = self._riders(_MAX_RIDERS)
        keys, args = self._script_args(riders, demands)
        try:
            if riders:  # a cancelled request must not take other requests' give-backs with it
                out = await asyncio.shield(self._take(keys=keys, args=args))
            else:
                out = await self._take(keys=keys, args=args)
        except RedisError as exc:
            # Fail closed: without the shared buckets no process can know what the others admitted.
            # Riders are dropped, not resent: the script may have run, and a bucket short of a
            # give-back errs on the safe side.
            raise ApiInternal(
                f"The rate limiter is unavailable (Redis: {type(exc).__name__}); try again shortly."
            ) from exc
        return decide(demands, [float(v) for v in out[2:]], float(out[1]), admitted=out[0] == b"1")

    async def give_back(self, demands: Sequence[Demand]) -> None:
        self._requeue([(b, n) for b, n in demands if n > 0])
        if self._owed and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        """Send queued give-backs not already carried by a take, in batches, until none are left."""
        while self._owed:
            riders = self._riders(256)
            keys, args = self._script_args(riders, [])
            try:
                await asyncio.shield(self._take(keys=keys, args=args))
            except RedisError:
                log.exception("could not return unused tokens to the rate-limit buckets")

    async def close(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            await self._flusher
        await self._flush()
        await self._redis.aclose()
