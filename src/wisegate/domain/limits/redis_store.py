"""The Redis store: the same buckets, shared by every server process (``WISEGATE_REDIS_URL``).

Each take is one Lua script, atomic in Redis, timed by Redis's own clock so that processes on
different machines agree. Keys expire once their bucket would be full again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from wisegate.domain.limits.buckets import Demand, Take, decide
from wisegate.errors import ApiInternal

# KEYS: bucket keys. ARGV: per bucket capacity, rate (units/s), amount.
# Returns {now, level_1, ..., level_n} as strings (Lua numbers would be truncated to integers).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = #KEYS
local levels = {}
local ok = true
for i = 1, n do
  local cap = tonumber(ARGV[3 * i - 2])
  local rate = tonumber(ARGV[3 * i - 1])
  local amount = tonumber(ARGV[3 * i])
  local s = redis.call('HMGET', KEYS[i], 'l', 't')
  local level = cap
  if s[1] then
    level = math.min(cap, tonumber(s[1]) + math.max(0, now - tonumber(s[2])) * rate)
  end
  levels[i] = level
  if level < amount then ok = false end
end
local out = {ok and '1' or '0', string.format('%.6f', now)}
for i = 1, n do
  local cap = tonumber(ARGV[3 * i - 2])
  local rate = tonumber(ARGV[3 * i - 1])
  local amount = tonumber(ARGV[3 * i])
  if ok then
    local left = levels[i] - amount
    redis.call('HSET', KEYS[i], 'l', string.format('%.6f', left), 't', string.format('%.6f', now))
    redis.call('PEXPIRE', KEYS[i], math.ceil((cap - left) / rate * 1000) + 1000)
  end
  out[i + 2] = string.format('%.6f', levels[i])
end
return out
"""

# KEYS: bucket keys. ARGV: per bucket capacity, rate, amount to return.
_GIVE_BACK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 1, #KEYS do
  local cap = tonumber(ARGV[3 * i - 2])
  local rate = tonumber(ARGV[3 * i - 1])
  local amount = tonumber(ARGV[3 * i])
  local s = redis.call('HMGET', KEYS[i], 'l', 't')
  if s[1] then
    local level = math.min(cap, tonumber(s[1]) + math.max(0, now - tonumber(s[2])) * rate + amount)
    redis.call('HSET', KEYS[i], 'l', string.format('%.6f', level), 't', string.format('%.6f', now))
    redis.call('PEXPIRE', KEYS[i], math.ceil((cap - level) / rate * 1000) + 1000)
  end
end
return 1
"""


class RedisLimiter:
    """Buckets in Redis under ``prefix``; the scripts are registered once and run by SHA."""

    def __init__(self, url: str, prefix: str) -> None:
        # A bounded pool that waits for a free connection instead of failing under a burst.
        pool = BlockingConnectionPool.from_url(url, max_connections=64, timeout=10)
        self._redis: Redis = Redis.from_pool(pool)
        self._prefix = prefix
        self._take = self._redis.register_script(_TAKE)
        self._give_back = self._redis.register_script(_GIVE_BACK)

    def _args(self, demands: Sequence[Demand]) -> tuple[list[str], list[Any]]:
        keys = [f"{self._prefix}:rl:{bucket.key}" for bucket, _ in demands]
        args: list[Any] = []
        for bucket, amount in demands:
            args += [bucket.capacity, repr(bucket.rate), amount]
        return keys, args

    async def take(self, demands: Sequence[Demand]) -> Take:
        keys, args = self._args(demands)
        try:
            out = await self._take(keys=keys, args=args)
        except RedisError as exc:
            # Fail closed: without the shared buckets no process can know what the others admitted.
            raise ApiInternal(
                f"The rate limiter is unavailable (Redis: {type(exc).__name__}); try again shortly."
            ) from exc
        return decide(demands, [float(v) for v in out[2:]], float(out[1]), admitted=out[0] == b"1")

    async def give_back(self, demands: Sequence[Demand]) -> None:
        if demands:
            keys, args = self._args(demands)
            await self._give_back(keys=keys, args=args)

    async def close(self) -> None:
        await self._redis.aclose()
