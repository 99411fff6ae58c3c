"""BillingAccounts: the one API over tiers, prepaid credits, spend limits and workspace rate limits.

The console's limits page and ``wisegate credits …`` / ``wisegate limits …`` call it, and a batch
request re-run after a crash calls ``unsettle``. A change drops the limit service's cached accounts, so
this process applies it at once (other processes within ``limits.cache_seconds``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from wisegate.domain.limits.service import LimitService
from wisegate.domain.pricing import format_usd
from wisegate.domain.storable import storable_name
from wisegate.errors import InvalidRequest
from wisegate.protocol.bounds import MAX_AMOUNT_PICO, MAX_AMOUNT_USD, MAX_BALANCE_USD, NOTE_LENGTH
from wisegate.records.billing import BillingAccount, WorkspaceLimits, billing_period
from wisegate.settings.tiers import TierConfig

NO_LIMIT = 10**12
"""What a rate-limit dimension left blank stores: no limit in practice."""

RATE_DIMENSIONS = ("rpm", "itpm", "otpm")


@dataclass(frozen=True, slots=True)
class WorkspaceSpend:
    workspace_id: str
    limits: WorkspaceLimits
    spent_pico: int
    reserved_pico: int


@dataclass(frozen=True, slots=True)
class Overview:
    """An organization's billing state in the current period."""

    account: BillingAccount
    tier: TierConfig
    period: str
    spent_pico: int
    reserved_pico: int
    workspaces: list[WorkspaceSpend]


class BillingAccounts:
    def __init__(self, limits: LimitService) -> None:
        self._limits = limits
        self._billing = limits.billing

    async def overview(self, organization_id: str, workspace_ids: Sequence[str] = ()) -> Overview:
        """The account, its tier and this period's spend, with the limits and spend of ``workspace_ids``.
        This process's journaled settlements are committed first, so that the credit balance and the
        spend include the requests it just answered (and agree with each other)."""
        await self._billing.drain()
        account = await self._billing.account(organization_id)
        period = billing_period(datetime.now(UTC))
        spent, reserved = await self._billing.period_spend(organization_id, period)
        workspaces = []
        for workspace_id in workspace_ids:
            ws_spent, ws_reserved = await self._billing.period_spend(workspace_id, period)
            limits = await self._billing.workspace_limits(workspace_id)
            workspaces.append(WorkspaceSpend(workspace_id, limits, ws_spent, ws_reserved))
        return Overview(account, self._limits.tier_of(account), period, spent, reserved, workspaces)

    async def add_credits(self, organization_id: str, amount_pico: int, note: str) -> BillingAccount:
        """Top up (or, negative, correct) the prepaid balance; a first top-up makes it prepaid.

        400 naming the amount when it is past ``MAX_AMOUNT_USD`` either way, when a top-up would carry
        the balance past ``MAX_BALANCE_USD``, or a correction below zero (refused atomically: nothing
        changes). Spending may still take the balance below zero; a top-up then brings it back."""
        storable_name("note", note, NOTE_LENGTH)  # shown on the Limits page and in `credits show`
        if amount_pico == 0:  # "0", "-0", "0.000": a grant of nothing is a typing mistake, not a record
            raise InvalidRequest("amount: a top-up or correction must not be $0")
        if abs(amount_pico) > MAX_AMOUNT_PICO:
            raise InvalidRequest(
                f"Amount: a top-up or correction may be at most ${MAX_AMOUNT_USD:,} either way, got "
                f"{format_usd(amount_pico)}"
            )
        account = await self._billing.add_credits(organization_id, amount_pico, note)
        if account is None:
            balance = format_usd((await self._billing.account(organization_id)).credit_balance_pico or 0)
            if amount_pico >= 0:
                raise InvalidRequest(
                    f"Amount: the credit balance may hold at most ${MAX_BALANCE_USD:,}; it is {balance}, "
                    f"and this top-up of {format_usd(amount_pico)} would carry it past that"
                )
            raise InvalidRequest(
                f"Amount: a correction may not take the credit balance below $0; it is {balance}, and "
                f"this correction is {format_usd(amount_pico)}"
            )
        self._limits.forget_cached()
        return account

    async def pin_tier(self, organization_id: str, tier: str | None) -> BillingAccount:
        """Pin a tier by name; ``None``: follow credit purchases / spend again."""
        account = await self._billing.set_account(organization_id, tier=tier)
        self._limits.forget_cached()
        return account

    async def set_spend_limit(
        self, organization_id: str, spend_limit_pico: int | None, workspace_id: str | None = None
    ) -> None:
        """The organization's (or one workspace's) monthly spend limit; ``None`` removes it."""
        if workspace_id is None:
            await self._billing.set_account(organization_id, spend_limit_pico=spend_limit_pico)
        else:
            current = await self._billing.workspace_limits(workspace_id)
            await self._billing.set_workspace_limits(
                workspace_id, organization_id, spend_limit_pico, current.rate_limits
            )
        self._limits.forget_cached()

    async def set_workspace_rates(
        self, organization_id: str, workspace_id: str, model_class: str, rates: dict[str, int | None]
    ) -> dict[str, dict[str, int]]:
        """Lower rate limits of a workspace for one model class (a blank dimension: no limit there;
        all blank: remove them); the workspace's rate limits now."""
        current = await self._billing.workspace_limits(workspace_id)
        by_class = dict(current.rate_limits or {})
        if all(rates.get(dim) is None for dim in RATE_DIMENSIONS):
            by_class.pop(model_class, None)
        else:
            by_class[model_class] = {dim: rates.get(dim) or NO_LIMIT for dim in RATE_DIMENSIONS}
        await self._billing.set_workspace_limits(
            workspace_id, organization_id, current.spend_limit_pico, by_class or None
        )
        self._limits.forget_cached()
        return by_class

    async def unsettle(self, request_id: str) -> None:
        """Undo a committed settlement: its usage record goes, its cost returns to the period's spend
        and the credit balance (a batch request re-run after a crash is billed once)."""
        await self._billing.unsettle(request_id)
