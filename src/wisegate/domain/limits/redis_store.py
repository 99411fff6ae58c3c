"""The Redis store: the same buckets, shared by every server process (``WISEGATE_REDIS_URL``).

Each take is one Lua script, atomic in Redis, timed by Redis's own clock so that processes on
different machines agree. Keys expire once their bucket would be full again.

Giving unused tokens back never waits for Redis: ``give_back`` sums the amounts per bucket in this
process. The next take of a bucket carries what is owed to it in the same script (applied before the
take, so this process's own order holds); what no take carries within a few milliseconds is sent by a
background flush, coalesced; ``close`` sends the rest. One round trip per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from typing import Protocol

from wisegate.domain.limits.buckets import Bucket, Demand, Take, decide
from wisegate.domain.limits.resp import Reply, RespClient, RespError
from wisegate.errors import Overloaded

log = logging.getLogger("wisegate.limits")

# KEYS: bucket keys. ARGV[1]: per bucket "capacity rate amount back" (units, units/s, to take, given
# back first — only to a bucket that has state: a bucket without is full), all in one space-separated
# string: the client packs one argument instead of four per bucket. All or nothing for the takes; the
# give-backs apply either way. Returns "admitted now level_1 ... level_n", the levels before the take,
# as one string: Lua numbers would be truncated to integers, and one bulk string is much cheaper for
# the client to parse than an array.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local a = {}
for v in string.gmatch(ARGV[1], '%S+') do a[#a + 1] = tonumber(v) end
local n = #KEYS
local levels = {}
local had = {}
local ok = true
for i = 1, n do
  local cap, rate, amount, back = a[4 * i - 3], a[4 * i - 2], a[4 * i - 1], a[4 * i]
  local s = redis.call('HMGET', KEYS[i], 'l', 't')
  local level = cap
  if s[1] then
    level = math.min(cap, tonumber(s[1]) + math.max(0, now - tonumber(s[2])) * rate + back)
    had[i] = true
  end
  levels[i] = level
  if level < amount then ok = false end
end
local out = {ok and '1' or '0', string.format('%.6f', now)}
for i = 1, n do
  local cap, rate, amount, back = a[4 * i - 3], a[4 * i - 2], a[4 * i - 1], a[4 * i]
  local left = nil
  if ok and (amount > 0 or had[i]) then
    left = levels[i] - amount
  elseif had[i] and back > 0 then
    left = levels[i]
  end
  if left then
    redis.call('HSET', KEYS[i], 'l', string.format('%.6f', left), 't', string.format('%.6f', now))
    redis.call('PEXPIRE', KEYS[i], math.ceil((cap - left) / rate * 1000) + 1000)
  end
  out[i + 2] = string.format('%.6f', levels[i])
end
return table.concat(out, ' ')
"""

_RETRY_AFTER = 1.0  # seconds a client is told to wait while Redis does not answer
_FLUSH_AFTER = 0.005  # seconds a give-back waits for a take of its bucket before it is sent alone


class RedisCaller(Protocol):
    """What the store needs of a Redis client (``resp.RespClient``; the bench also measures redis-py)."""

    async def call(self, *args: bytes | str) -> Reply:
        """One command's reply; :class:`RespError` for an error reply or a lost connection."""
        ...

    async def close(self) -> None: ...


class RedisLimiter:
    """Buckets in Redis under ``prefix``; the script is registered once and run by SHA."""

    def __init__(self, url: str, prefix: str, client: RedisCaller | None = None) -> None:
        self._redis = client or RespClient(url)
        self._prefix = prefix
        self._sha = hashlib.sha1(_TAKE.encode()).hexdigest()
        self._args: dict[Bucket, tuple[str, str]] = {}
        self._owed: dict[str, tuple[Bucket, int]] = {}
        self._flusher: asyncio.Task[None] | None = None

    def _script_args(self, demands: Sequence[tuple[Bucket, int, int]]) -> tuple[list[str], list[str]]:
        keys: list[str] = []
        parts: list[str] = []
        for bucket, amount, back in demands:
            fixed = self._args.get(bucket)
            if fixed is None:
                if len(self._args) > 10_000:
                    self._args.clear()
                fixed = self._args[bucket] = (
                    f"{self._prefix}:rl:{bucket.key}",
                    f"{bucket.capacity} {bucket.rate!r}",
                )
            keys.append(fixed[0])
            parts.append(f"{fixed[1]} {amount} {back}")
        return keys, [" ".join(parts)]

    async def take(self, demands: Sequence[Demand]) -> Take:
        owed = self._owed
        carried = [(b, n, owed.pop(b.key, (b, 0))[1] if owed else 0) for b, n in demands]
        keys, args = self._script_args(carried)
        try:
            out = await self._run(keys, args)
        except RespError as exc:
            # Fail closed: without the shared buckets no process can know what the others admitted.
            # What the take carried is not sent again (the script may have run; the same when the
            # request is cancelled meanwhile): a bucket short of a give-back errs on the safe side.
            # The reason (which names Redis's address) is for the log; the client learns only that
            # it may retry: 529, as for any overload, and a retry succeeds once Redis answers again.
            log.warning("rate limiter unavailable: %s", exc)
            raise Overloaded(
                "The rate limiter is unavailable; try again shortly.", retry_after=_RETRY_AFTER
            ) from exc
        admitted, now, *levels = out.split()
        return decide(demands, [float(v) for v in levels], float(now), admitted=admitted == b"1")

    async def give_back(self, demands: Sequence[Demand]) -> None:
        for bucket, amount in demands:
            if amount > 0:
                owed = self._owed.get(bucket.key)
                self._owed[bucket.key] = (bucket, amount + (owed[1] if owed else 0))
        if self._owed and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush(_FLUSH_AFTER))

    async def _flush(self, delay: float) -> None:
        """After ``delay``, send what no take has carried, 256 buckets a script, until none is owed."""
        await asyncio.sleep(delay)
        while self._owed:
            batch = list(self._owed.values())[:256]
            for bucket, _ in batch:
                del self._owed[bucket.key]
            keys, args = self._script_args([(b, 0, n) for b, n in batch])
            try:
                await asyncio.shield(self._run(keys, args))
            except RespError:
                log.exception("could not return unused tokens to the rate-limit buckets")

    async def _run(self, keys: list[str], args: list[str]) -> bytes:
        """The take script by its SHA; loaded first when Redis does not know it (a restart)."""
        try:
            out = await self._redis.call("EVALSHA", self._sha, str(len(keys)), *keys, *args)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            await self._redis.call("SCRIPT", "LOAD", _TAKE)
            out = await self._redis.call("EVALSHA", self._sha, str(len(keys)), *keys, *args)
        if not isinstance(out, bytes):
            raise RespError(f"unexpected reply to the take script: {out!r}")
        return out

    async def ping(self) -> None:
        """One ``PING``; :class:`RespError` when Redis does not answer."""
        await self._redis.call("PING")

    async def close(self) -> None:
        """Send every give-back still owed, then release the connections."""
        if self._flusher is not None and not self._flusher.done():
            await self._flusher
        await self._flush(0)
        await self._redis.close()
