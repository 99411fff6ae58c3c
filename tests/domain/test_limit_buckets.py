"""The same bucket suite on both stores: in-process and Redis (127.0.0.1:6379, a random key prefix)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from wisegate.domain.limits import Bucket, Limiter, MemoryLimiter
from wisegate.domain.limits.redis_store import RedisLimiter

REDIS_URL = "redis://127.0.0.1:6379/0"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def make_limiter(request: pytest.FixtureRequest) -> Iterator[type]:
    kind = request.param

    def build() -> Limiter:
        if kind == "memory":
            return MemoryLimiter()
        return RedisLimiter(REDIS_URL, f"wgtest-{uuid.uuid4().hex[:10]}")

    yield build  # type: ignore[misc]


def bucket(name: str, capacity: int, dimension: str = "requests") -> Bucket:
    return Bucket(f"{uuid.uuid4().hex}:{name}", dimension, "organization", "org", "c", capacity)  # type: ignore[arg-type]


def test_take_is_all_or_nothing(make_limiter: type) -> None:
    async def run() -> None:
        limiter = make_limiter()
        rpm, itpm = bucket("rpm", 10), bucket("itpm", 100, "input-tokens")
        first = await limiter.take([(rpm, 1), (itpm, 80)])
        assert first.admitted and [round(lv.remaining) for lv in first.levels] == [9, 20]
        refused = await limiter.take([(rpm, 1), (itpm, 50)])
        assert not refused.admitted and refused.failed is itpm
        # 30 tokens missing at 100/60 per second: about 18 s.
        assert 17.0 < refused.retry_after <= 18.0
        # Nothing was taken from the requests bucket by the refused take.
        again = await limiter.take([(rpm, 1), (itpm, 10)])
        assert again.admitted and round(again.levels[0].remaining) == 8
        await limiter.close()

    asyncio.run(run())


def test_refill_is_continuous(make_limiter: type) -> None:
    async def run() -> None:
        limiter = make_limiter()
        b = bucket("fast", 600)  # 10 per second
        assert (await limiter.take([(b, 600)])).admitted
        refused = await limiter.take([(b, 5)])
        assert not refused.admitted and 0.4 < refused.retry_after <= 0.5
        await asyncio.sleep(0.6)
        assert (await limiter.take([(b, 5)])).admitted
        await limiter.close()

    asyncio.run(run())


def test_give_back_never_exceeds_capacity(make_limiter: type) -> None:
    async def run() -> None:
        limiter = make_limiter()
        b = bucket("otpm", 1000, "output-tokens")
        taken = await limiter.take([(b, 800)])
        assert round(taken.levels[0].remaining) == 200
        await limiter.give_back([(b, 700)])
        assert round((await limiter.take([(b, 0)])).levels[0].remaining) == 900
        await limiter.give_back([(b, 5000)])
        assert round((await limiter.take([(b, 0)])).levels[0].remaining) == 1000
        await limiter.close()

    asyncio.run(run())


def test_concurrent_takes_never_overshoot(make_limiter: type) -> None:
    async def run() -> None:
        limiter = make_limiter()
        b = bucket("rpm", 60)  # refills one per second
        started = time.monotonic()
        results = await asyncio.gather(*(limiter.take([(b, 1)]) for _ in range(200)))
        elapsed = time.monotonic() - started
        admitted = sum(r.admitted for r in results)
        assert 60 <= admitted <= 60 + int(elapsed) + 1
        await limiter.close()

    asyncio.run(run())


def test_memory_store_with_a_fake_clock() -> None:
    async def run() -> None:
        clock = FakeClock()
        limiter = MemoryLimiter(clock)
        b = bucket("rpm", 60)
        assert (await limiter.take([(b, 60)])).admitted
        assert not (await limiter.take([(b, 1)])).admitted
        clock.now += 30
        taken = await limiter.take([(b, 30)])
        assert taken.admitted and taken.levels[0].remaining == 0

    asyncio.run(run())


def test_redis_give_back_is_sent_in_the_background_and_on_close() -> None:
    async def run() -> None:
        prefix = f"wgtest-{uuid.uuid4().hex[:10]}"
        limiter, other = RedisLimiter(REDIS_URL, prefix), RedisLimiter(REDIS_URL, prefix)
        b = bucket("otpm", 1000, "output-tokens")
        assert (await limiter.take([(b, 800)])).admitted
        await limiter.give_back([(b, 700)])  # returns at once; no take of this bucket follows here
        await asyncio.sleep(0.1)
        # 200 left + 700 back + what refilled meanwhile (1000/min: 17 a second).
        assert 900 <= (await other.take([(b, 0)])).levels[0].remaining < 920
        await limiter.give_back([(b, 50)])
        await limiter.close()  # sends what is still owed
        assert 950 <= (await other.take([(b, 0)])).levels[0].remaining < 970
        await other.close()

    asyncio.run(run())
