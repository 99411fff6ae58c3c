"""LimitService on a real database: tiers advance with credit purchases, cache reads give their input
tokens back, and the settlement is one transaction with the ledger row."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from wisegate.domain.keys import KeyService, Principal
from wisegate.domain.limits import LimitService, MemoryLimiter
from wisegate.domain.pricing import PriceTable
from wisegate.protocol.messages import Usage
from wisegate.records.usage import UsageRecord
from wisegate.settings import Settings
from wisegate.storage.billing import BillingRepo
from wisegate.storage.db import Database, migrate
from wisegate.storage.repos import TenancyRepo, UsageRepo

MODEL = "claude-sonnet-4-5"


def record(principal: Principal, request_id: str, usage: Usage) -> UsageRecord:
    return UsageRecord(
        request_id,
        principal.organization_id,
        principal.workspace_id,
        principal.key.id,
        MODEL,
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_creation_input_tokens,
        usage.cache_read_input_tokens,
        "standard",
        "end_turn",
        None,
        False,
        1,
        datetime.now(UTC),
    )


def test_tiers_cache_reads_and_settlement(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)

    async def run() -> None:
        db = Database(url)
        keys = KeyService(TenancyRepo(db))
        org = await keys.bootstrap()
        key, _ = await keys.create_key((await keys.default_workspace(org.id)).id, "k")
        principal = Principal(key)
        settings = Settings()
        billing = BillingRepo(db)
        limits = LimitService(
            settings.limits.model_copy(update={"cache_seconds": 0}),
            MemoryLimiter(),
            billing,
            PriceTable(settings.prices),
        )
        account = await limits.account(org.id)
        assert limits.tier_of(account).name == "tier-1"  # below the first threshold: the first tier
        await billing.add_credits(org.id, 40 * 10**12, "first purchase")
        assert limits.tier_of(await limits.account(org.id)).name == "tier-2"
        await billing.set_account(org.id, tier="tier-4")
        assert limits.tier_of(await limits.account(org.id)).name == "tier-4"
        assert (
            limits.model_class("claude-sonnet-4-5") == "sonnet" and limits.model_class("smollm2") == "other"
        )

        admission = await limits.admit(principal, MODEL, 1000, 500, "req_a")
        states = admission.snapshot.states if admission.snapshot else {}
        assert states["input-tokens"].remaining == 2_000_000 - 1000
        assert admission.reservation is not None
        # Sonnet: $6/MTok 1h cache write is the dearest input price, $15/MTok output.
        assert admission.reservation.amount_pico == 1000 * 6_000_000 + 500 * 15_000_000
        # Held from the credit balance (with room for more requests: this process's spend lease).
        assert (
            await billing.account(org.id)
        ).credit_balance_pico <= 40 * 10**12 - admission.reservation.amount_pico

        # 800 of the 1,000 prompt tokens were cache reads: they do not count toward ITPM.
        usage = Usage(input_tokens=200, cache_read_input_tokens=800, output_tokens=100)
        settled = await limits.settle(admission, record(principal, "req_a", usage), usage)
        cost = 200 * 3_000_000 + 800 * 300_000 + 100 * 15_000_000
        assert settled.cost_picousd == cost
        after = await limits.admit(principal, MODEL, 0, 0, "req_b")
        states = after.snapshot.states if after.snapshot else {}
        assert round(states["input-tokens"].remaining) >= 2_000_000 - 200
        assert round(states["output-tokens"].remaining) >= 400_000 - 100
        await limits.release(after)

        row = await UsageRepo(db).for_request("req_a")
        assert row is not None and row.cost_picousd == cost
        await limits.close()  # gives the unused part of the spend lease back
        account = await billing.account(org.id)
        assert account.credit_balance_pico == 40 * 10**12 - cost and account.spent_pico == cost
        month = datetime.now(UTC).strftime("%Y-%m")
        assert await billing.period_spend(org.id, month) == (cost, 0)
        assert await billing.period_spend(key.workspace_id, month) == (cost, 0)
        await db.close()

    asyncio.run(run())
