"""What admission and settlement add to a request, on the in-process and the Redis store; and how
closely the buckets hold a limit under concurrent load.

    .venv/bin/python bench/limits_overhead.py [--requests 3000] [--redis redis://127.0.0.1:6379/0]

Prints p50/p99 in milliseconds of:
- ``buckets``: take + give back of the six buckets of a request (org and workspace, 3 dimensions);
- ``admit+settle``: the whole LimitService path for a free model (buckets, ledger row) minus the
  plain ledger write it replaces — the cost limits add to a request;
- ``admit+settle paid``: the same for a priced model, where the spend reservation is one more
  database transaction (SQLite here);
and, for accuracy, requests admitted by 64 concurrent clients against a 6,000 RPM bucket over 3 s
vs the limit (the full bucket plus its refill over the measured time).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from wisegate.domain.keys import KeyService, Principal
from wisegate.domain.limits import Bucket, Limiter, LimitService, MemoryLimiter
from wisegate.domain.limits.redis_store import RedisLimiter
from wisegate.domain.pricing import PriceTable
from wisegate.protocol.messages import Usage
from wisegate.settings import PriceConfig
from wisegate.storage.billing import BillingRepo
from wisegate.storage.db import Database, migrate
from wisegate.storage.repos import TenancyRepo, UsageRecord, UsageRepo
from wisegate.tiers import LimitsConfig, RateLimits, TierConfig


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


async def bench_service(
    limiter: Limiter, n: int, data: Path
) -> tuple[list[float], list[float], list[float], list[float]]:
    url = f"sqlite+aiosqlite:///{data / f'{uuid.uuid4().hex}.db'}"
    migrate(url)
    db = Database(url)
    keys = KeyService(TenancyRepo(db))
    org = await keys.bootstrap()
    key, _ = await keys.create_key((await keys.default_workspace(org.id)).id, "bench")
    principal = Principal(key)
    limits_config = LimitsConfig(
        model_classes={"all": ["*"]},
        tiers=[TierConfig(name="t", rate_limits={"all": RateLimits(rpm=10**9, itpm=10**12, otpm=10**12)})],
    )
    prices = PriceTable(
        {"paid": PriceConfig(input="1", output="2", cache_write_5m="1", cache_write_1h="1", cache_read="1")}
    )
    service = LimitService(limits_config, limiter, BillingRepo(db), prices)
    repo = UsageRepo(db)
    base: list[float] = []
    admit: list[float] = []
    settle: list[float] = []
    paid: list[float] = []
    usage = Usage(input_tokens=10, output_tokens=5)
    for i in range(n):
        t = time.perf_counter()
        await repo.add(_record(principal, f"base_{i}", "free"))
        base.append(time.perf_counter() - t)
        t = time.perf_counter()
        admission = await service.admit(principal, "free", 10, 50, f"free_{i}")
        admit.append(time.perf_counter() - t)
        t = time.perf_counter()
        await service.settle(admission, _record(principal, f"free_{i}", "free"), usage)
        settle.append(time.perf_counter() - t)
        t = time.perf_counter()
        admission = await service.admit(principal, "paid", 10, 50, f"paid_{i}")
        await service.settle(admission, _record(principal, f"paid_{i}", "paid"), usage)
        paid.append(time.perf_counter() - t)
    await db.close()
    return base, admit, settle, paid


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


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stores: list[tuple[str, Limiter]] = [
            ("memory", MemoryLimiter()),
            ("redis", RedisLimiter(args.redis, f"wgbench-{uuid.uuid4().hex[:8]}")),
        ]
        for name, limiter in stores:
            print(f"[{name}] buckets (take + give back)   {pct(await bench_buckets(limiter, args.requests))}")
            base, admit, settle, paid = await bench_service(limiter, args.requests // 3, Path(tmp))
            med = statistics.median
            added = (med(admit) + med(settle) - med(base)) * 1000
            print(f"[{name}] ledger write alone          {pct(base)}")
            print(f"[{name}] admit                       {pct(admit)}")
            print(f"[{name}] settle (ledger + give back) {pct(settle)}")
            print(f"[{name}] added at p50 (admit + settle - ledger write) {added:.3f} ms")
            print(f"[{name}] admit + settle, priced model (spend reservation) {pct(paid)}")
            print(f"[{name}] accuracy                    {await accuracy(limiter)}")
            await limiter.close()


if __name__ == "__main__":
    asyncio.run(main())
