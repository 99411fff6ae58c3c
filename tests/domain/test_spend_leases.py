"""Spend leases on a real database (SQLite and PostgreSQL): the counters stay exact over many grouped
settlements, a dead process's lease is released by the sweep and a live one's is not, and near a cap
requests are held one by one as before."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import postgres_database
from wisegate.domain.keys import KeyService, Principal
from wisegate.domain.limits import LimitService, MemoryLimiter
from wisegate.domain.pricing import PriceTable
from wisegate.errors import InvalidRequest
from wisegate.protocol.messages import Usage
from wisegate.records.usage import UsageRecord
from wisegate.settings import PriceConfig
from wisegate.settings.tiers import LimitsConfig
from wisegate.storage.billing import BillingRepo
from wisegate.storage.db import Database, migrate
from wisegate.storage.repos import TenancyRepo
from wisegate.storage.tables import SpendReservationRow, UsageRecordRow

MODEL = "priced"
# 1e6 picodollars per input token (the dearest input-side price), 2e6 per output token.
PRICES = {MODEL: PriceConfig(input="1", output="2", cache_write_5m="1", cache_write_1h="1", cache_read="1")}
WORST = 10 * 1_000_000 + 20 * 2_000_000  # 10 input tokens, max_tokens 20


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
        migrate(url)
        yield url
        return
    with postgres_database() as url:
        migrate(url)
        yield url


@dataclass
class World:
    db: Database
    billing: BillingRepo
    principal: Principal
    month: str

    def service(self, timeout: int = 900) -> LimitService:
        # Tier caps and rate limits off: the spend limit and the credit balance set here still hold.
        config = LimitsConfig(enabled=False, cache_seconds=0, reservation_timeout_seconds=timeout)
        return LimitService(config, MemoryLimiter(), self.billing, PriceTable(PRICES))

    async def counters(self) -> tuple[int, int, int, int]:
        """(spent, reserved, held by reservation rows, credit balance) of the organization."""
        org = self.principal.organization_id
        spent, reserved = await self.billing.period_spend(org, self.month)
        async with self.db.read() as session:
            rows = await session.scalar(
                select(func.coalesce(func.sum(SpendReservationRow.amount_pico), 0)).where(
                    SpendReservationRow.organization_id == org
                )
            )
        balance = (await self.billing.account(org)).credit_balance_pico
        return spent, reserved, int(rows or 0), int(balance or 0)


@asynccontextmanager
async def world(url: str) -> AsyncIterator[World]:
    db = Database(url)
    keys = KeyService(TenancyRepo(db))
    org = await keys.bootstrap()
    key, _ = await keys.create_key((await keys.default_workspace(org.id)).id, "k")
    try:
        yield World(db, BillingRepo(db), Principal(key), datetime.now(UTC).strftime("%Y-%m"))
    finally:
        await db.close()


def record(principal: Principal, request_id: str, usage: Usage) -> UsageRecord:
    return UsageRecord(
        request_id, principal.organization_id, principal.workspace_id, principal.key.id, MODEL,
        usage.input_tokens, usage.output_tokens, 0, 0, "standard", "end_turn", None, False, 1,
        datetime.now(UTC),
    )  # fmt: skip


async def serve(
    limits: LimitService,
    principal: Principal,
    request_id: str,
    output_tokens: int,
    seen: set[str] | None = None,
) -> int:
    """Admit, yield to the others, settle with ``output_tokens`` (-1: never ran); the cost. ``seen``
    collects the spend leases used."""
    admission = await limits.admit(principal, MODEL, 10, 20, request_id)
    if seen is not None and admission.reservation is not None and admission.reservation.lease:
        seen.add(admission.reservation.request_id)
    await asyncio.sleep(0)
    if output_tokens < 0:
        await limits.release(admission)
        return 0
    usage = Usage(input_tokens=10, output_tokens=output_tokens)
    return (await limits.settle(admission, record(principal, request_id, usage), usage)).cost_picousd


def test_lease_accounting_is_exact_over_many_grouped_settlements(database_url: str) -> None:
    async def run() -> None:
        async with world(database_url) as w:
            credits = 800 * WORST  # a first lease holds an eighth of it: room for 100 requests
            await w.billing.add_credits(w.principal.organization_id, credits, "top-up")
            limits = w.service()
            rng = random.Random(7)
            costs: list[int] = []
            seen: set[str] = set()
            for wave in range(4):  # concurrent waves: settlements are grouped in shared transactions
                outputs = [rng.choice([-1, 0, 1, 7, 20]) for _ in range(150)]
                costs += await asyncio.gather(
                    *(serve(limits, w.principal, f"r{wave}_{i}", n, seen) for i, n in enumerate(outputs))
                )
                await w.billing.drain()
                spent, reserved, rows, balance = await w.counters()
                assert spent == sum(costs)
                assert reserved == rows  # what the lease rows (and requests held alone) still hold
                assert balance == credits - spent - rows
            await limits.close()
            spent, reserved, rows, balance = await w.counters()
            assert (spent, reserved, rows, balance) == (sum(costs), 0, 0, credits - sum(costs))
            assert len(seen) > 1  # leases ran out and were replaced along the way
            async with w.db.read() as session:
                ledger = await session.scalar(select(func.sum(UsageRecordRow.cost_picousd)))
            assert ledger == spent

    asyncio.run(run())


def test_a_dead_process_lease_is_released_by_the_sweep_and_a_live_one_is_not(database_url: str) -> None:
    async def run() -> None:
        async with world(database_url) as w:
            await w.billing.set_account(w.principal.organization_id, spend_limit_pico=10**12)
            live, dead = w.service(timeout=1), w.service(timeout=1)
            live.leases.start()  # renews its leases; ``dead`` never does, as after a kill -9
            cost = await serve(live, w.principal, "live_1", 5)
            in_flight = await dead.admit(w.principal, MODEL, 10, 20, "dead_1")
            assert in_flight.reservation is not None and in_flight.reservation.lease
            await asyncio.sleep(1.5)

            assert await w.billing.release_stale(datetime.now(UTC) - timedelta(seconds=1)) == 1
            async with w.db.read() as session:
                rows = (await session.execute(select(SpendReservationRow.request_id))).scalars().all()
            assert len(rows) == 1 and rows[0].startswith(f"lease:{live.leases.process}")
            # The dead process's request is settled later (a replayed journal): its cost is booked,
            # and nothing of the lease the sweep already released is given back twice.
            usage = Usage(input_tokens=10, output_tokens=20)
            cost += (await dead.settle(in_flight, record(w.principal, "dead_1", usage), usage)).cost_picousd
            await w.billing.drain()
            assert (await serve(live, w.principal, "live_2", 1)) > 0  # the live lease still serves
            cost += 10 * 1_000_000 + 2_000_000
            await live.close()
            spent, reserved, rows_held, _ = await w.counters()
            assert (spent, reserved, rows_held) == (cost, 0, 0)

    asyncio.run(run())


def test_near_the_cap_requests_are_held_one_by_one_and_never_past_it(database_url: str) -> None:
    async def run() -> None:
        async with world(database_url) as w:
            org = w.principal.organization_id
            await w.billing.set_account(org, spend_limit_pico=40 * WORST)
            limits = w.service()
            kinds: list[bool] = []
            served = 0
            while True:  # every request costs its worst case
                try:
                    admission = await limits.admit(w.principal, MODEL, 10, 20, f"s{served}")
                except InvalidRequest as refused:
                    assert "specified API usage limits" in refused.message
                    break
                assert admission.reservation is not None
                kinds.append(admission.reservation.lease)
                usage = Usage(input_tokens=10, output_tokens=20)
                await limits.settle(admission, record(w.principal, f"s{served}", usage), usage)
                served += 1
            # Leases while the headroom is at least 32 worst cases, then one reservation per request.
            assert served == 40
            assert kinds[:5] == [True] * 5 and kinds[-31:] == [False] * 31
            await limits.close()
            assert await w.counters() == (40 * WORST, 0, 0, 0)

            # 200 at once against room for 10 and a half: each held alone, never past the cap.
            await w.billing.set_account(org, spend_limit_pico=50 * WORST + WORST // 2)
            limits = w.service()
            results = await asyncio.gather(
                *(serve(limits, w.principal, f"c{i}", 20) for i in range(200)), return_exceptions=True
            )
            await limits.close()
            ok = [r for r in results if isinstance(r, int)]
            assert len(ok) == 10 and all(isinstance(r, InvalidRequest) for r in results if r not in ok)
            assert await w.counters() == (50 * WORST, 0, 0, 0)

    asyncio.run(run())


def test_an_idle_lease_gives_its_room_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wisegate.domain.limits import leases

    monkeypatch.setattr(leases, "_IDLE_SECONDS", 0.3)
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)

    async def run() -> None:
        async with world(url) as w:
            await w.billing.set_account(w.principal.organization_id, spend_limit_pico=10**12)
            limits = w.service(timeout=4)  # the keeper looks every half second
            limits.leases.start()
            cost = await serve(limits, w.principal, "r1", 3)
            await w.billing.drain()
            spent, reserved, _, _ = await w.counters()
            assert spent == cost and reserved > WORST  # a lease, not one request's worth
            await asyncio.sleep(1.5)
            assert (await w.counters())[:3] == (cost, 0, 0)  # given back without close()
            await limits.close()

    asyncio.run(run())
