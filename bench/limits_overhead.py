"""What admission and settlement add to a request, on the in-process and the Redis store; and how
closely the buckets hold a limit under concurrent load.

    .venv/bin/python bench/limits_overhead.py [--requests 3000] [--redis redis://127.0.0.1:6379/0]
        [--stores memory resp redis-py]

Prints p50/p99 in milliseconds of:
- ``buckets``: take + give back of the six buckets of a request (org and workspace, 3 dimensions);
- for a free model, and for a priced model under a far monthly spend cap (the common case: the
  default tiers have caps): ``admit``; ``settle``, the settlement's request path (buckets given back,
  the lease's share, the ledger journal line; the database commit follows in the background); and
  their sum per request, ``admit + settle`` — what limits and the ledger add to a request. "spaced":
  each request starts once the previous one's background commit is done (a server with spare
  time); "back to back": requests overlap those commits (a saturated one);
and, for accuracy, requests admitted by 64 concurrent clients against a 6,000 RPM bucket over 3 s
vs the limit (the full bucket plus its refill over the measured time).

Redis is measured through two clients in the same run: ``resp`` (``domain/limits/resp.py``, ours) and
``redis-py`` (``redis.asyncio`` with the ``hiredis`` parser: what supports Sentinel, Cluster and TLS
out of the box), plus a bare ``PING`` and a bare take through each, interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from wisegate.domain.keys import KeyService, Principal
from wisegate.domain.limits import Bucket, Limiter, LimitService, MemoryLimiter
from wisegate.domain.limits.redis_store import RedisCaller, RedisLimiter
from wisegate.domain.limits.resp import Reply, RespClient, RespError
from wisegate.domain.pricing import PriceTable
from wisegate.protocol.messages import Usage
from wisegate.records.usage import UsageRecord
from wisegate.settings import PriceConfig
from wisegate.settings.tiers import LimitsConfig, RateLimits, TierConfig
from wisegate.storage.billing import BillingRepo
from wisegate.storage.db import Database, migrate
from wisegate.storage.ledger import LedgerJournal
from wisegate.storage.repos import TenancyRepo


def pct(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    return f"p50 {p50:.3f} ms  p99 {p99:.3f} ms"


def _record(principal: Principal, request_id: str, model: str) -> UsageRecord:
    return UsageRecord(
        request_id, principal.organization_id, principal.workspace_id, principal.key.id, model,
        10, 5, 0, 0, "standard", "end_turn", None, False, 1, datetime.now(UTC),
    )  # fmt: skip


async def bench_buckets(limiter: Limiter, n: int) -> list[float]:
    demands = [
        (Bucket(f"b{uuid.uuid4().hex}:{d}:{s}", d, s, "x", "c", 10**9), 10)  # type: ignore[arg-type]
        for d in ("requests", "input-tokens", "output-tokens")
        for s in ("organization", "workspace")
    ]
    times = []
    for _ in range(n):
        t = time.perf_counter()
        await limiter.take(demands)
        await limiter.give_back(demands)
        times.append(time.perf_counter() - t)
    return times


@dataclass
class PathTimes:
    """Per request: admit, and settle (the whole request path: buckets, lease, journal line)."""

    admit: list[float] = field(default_factory=list)
    settle: list[float] = field(default_factory=list)

    def both(self) -> list[float]:
        return [a + s for a, s in zip(self.admit, self.settle, strict=True)]


async def bench_service(limiter: Limiter, n: int, data: Path, *, spaced: bool) -> dict[str, PathTimes]:
    """Admit + settle ``n`` requests of a free and of a priced model under a far monthly spend cap
    (its spend is held from a lease), with the ledger journal (the default). ``spaced``: the
    background commit of each settlement finishes before the next request starts (a server that is
    not saturated); else requests follow back to back and overlap those commits."""
    url = f"sqlite+aiosqlite:///{data / f'{uuid.uuid4().hex}.db'}"
    migrate(url)
    db = Database(url)
    keys = KeyService(TenancyRepo(db))
    org = await keys.bootstrap()
    key, _ = await keys.create_key((await keys.default_workspace(org.id)).id, "bench")
    principal = Principal(key)
    limits_config = LimitsConfig(
        model_classes={"all": ["*"]},
        tiers=[
            TierConfig(
                name="t",
                monthly_spend_cap_usd="1000000",
                rate_limits={"all": RateLimits(rpm=10**9, itpm=10**12, otpm=10**12)},
            )
        ],
    )
    prices = PriceTable(
        {"paid": PriceConfig(input="1", output="2", cache_write_5m="1", cache_write_1h="1", cache_read="1")}
    )
    billing = BillingRepo(db, LedgerJournal(data / f"journal-{uuid.uuid4().hex}"))
    service = LimitService(limits_config, limiter, billing, prices)
    times = {"free": PathTimes(), "paid": PathTimes()}
    usage = Usage(input_tokens=10, output_tokens=5)
    for i in range(n):
        for model, path in times.items():
            t = time.perf_counter()
            admission = await service.admit(principal, model, 10, 50, f"{model}_{i}")
            path.admit.append(time.perf_counter() - t)
            t = time.perf_counter()
            await service.settle(admission, _record(principal, f"{model}_{i}", model), usage)
            path.settle.append(time.perf_counter() - t)
            if spaced:
                await billing.drain()
                await asyncio.sleep(0.0005)  # the pool's connection reset after the commit
    await service.leases.close()
    await billing.stop()
    await db.close()
    return times


async def accuracy(limiter: Limiter, clients: int = 64, seconds: float = 5.0, rpm: int = 1200) -> str:
    bucket = Bucket(f"acc{uuid.uuid4().hex}", "requests", "organization", "x", "c", rpm)
    admitted = 0
    started = time.monotonic()
    last = started

    async def client() -> None:
        nonlocal admitted, last
        while time.monotonic() - started < seconds:
            if (await limiter.take([(bucket, 1)])).admitted:
                admitted += 1
                last = time.monotonic()
            else:
                await asyncio.sleep(0.001)

    await asyncio.gather(*(client() for _ in range(clients)))
    allowed = rpm + rpm / 60 * (last - started)
    return f"admitted {admitted} vs limit {allowed:.0f} ({(admitted - allowed) / allowed * 100:+.2f} %)"


class RedisPy:
    """redis-py's asyncio client behind the store's ``call`` interface (errors as ``RespError``)."""

    def __init__(self, url: str) -> None:
        import redis.asyncio

        self._redis = redis.asyncio.Redis.from_url(url)

    async def call(self, *args: bytes | str) -> Reply:
        import redis.exceptions

        try:
            reply: Reply = await self._redis.execute_command(*args)
        except redis.exceptions.RedisError as exc:
            raise RespError(str(exc)) from exc
        return reply

    async def close(self) -> None:
        await self._redis.aclose()


async def bare(clients: dict[str, RedisCaller], n: int) -> None:
    """PING and a one-bucket take through each client, interleaved in 1,000-call rounds."""
    limiters = {
        name: RedisLimiter("", f"wgbench-{uuid.uuid4().hex[:8]}", client) for name, client in clients.items()
    }
    bucket = Bucket(f"bare{uuid.uuid4().hex}", "requests", "organization", "x", "c", 10**9)
    ping: dict[str, list[float]] = {name: [] for name in clients}
    take: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(max(1, n // 1000)):
        for name, client in clients.items():
            for _ in range(1000):
                t = time.perf_counter()
                await client.call("PING")
                ping[name].append(time.perf_counter() - t)
            for _ in range(1000):
                t = time.perf_counter()
                await limiters[name].take([(bucket, 1)])
                take[name].append(time.perf_counter() - t)
    for name in clients:
        print(f"[{name}] bare PING                   {pct(ping[name])}")
        print(f"[{name}] bare take (one bucket)      {pct(take[name])}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--stores", nargs="+", default=["memory", "resp", "redis-py"])
    args = parser.parse_args()
    clients: dict[str, RedisCaller] = {}
    if "resp" in args.stores:
        clients["resp"] = RespClient(args.redis)
    if "redis-py" in args.stores:
        clients["redis-py"] = RedisPy(args.redis)
    if clients:
        await bare(clients, args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        stores: list[tuple[str, Limiter]] = [("memory", MemoryLimiter())] if "memory" in args.stores else []
        for name, client in clients.items():
            stores.append((name, RedisLimiter(args.redis, f"wgbench-{uuid.uuid4().hex[:8]}", client)))
        for name, limiter in stores:
            print(f"[{name}] buckets (take + give back)   {pct(await bench_buckets(limiter, args.requests))}")
            for spaced, how in ((True, "spaced"), (False, "back to back")):
                times = await bench_service(limiter, args.requests // 3, Path(tmp), spaced=spaced)
                for model, label in (("free", "free model"), ("paid", "priced model, capped")):
                    path = times[model]
                    print(f"[{name}] {how}, {label}: admit           {pct(path.admit)}")
                    print(f"[{name}] {how}, {label}: settle          {pct(path.settle)}")
                    print(f"[{name}] {how}, {label}: admit + settle  {pct(path.both())}")
            print(f"[{name}] accuracy                    {await accuracy(limiter)}")
            await limiter.close()


if __name__ == "__main__":
    asyncio.run(main())
