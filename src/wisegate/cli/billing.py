"""``wisegate credits add|show`` and ``wisegate limits tier|spend|workspace-rate``: an operator's (or a
reseller's) hands on tiers, prepaid credits and spend limits. Running servers see changes within
``limits.cache_seconds``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import click

from wisegate.cli.services import load_settings, open_services

if TYPE_CHECKING:
    from wisegate.domain.limits.accounts import BillingAccounts
    from wisegate.domain.scope import Scope
    from wisegate.records.billing import BillingAccount
    from wisegate.services import Services

T = TypeVar("T")


def _run(work: Callable[[BillingAccounts, str], Awaitable[T]]) -> T:
    """``work(BillingAccounts, organization_id)`` through :func:`open_services`."""

    async def run(services: Services, scope: Scope) -> T:
        return await work(services.billing, scope.organization_id)

    return open_services(run)


def _pico(usd: str) -> int:
    from wisegate.domain.pricing import parse_usd

    try:
        return parse_usd(usd)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _usd(pico: int | None) -> str:
    from wisegate.domain.pricing import format_amount

    return format_amount(pico)


@click.group()
def credits() -> None:
    """Prepaid credit balance: top-ups and the balance."""


@credits.command("add")
@click.option("--usd", required=True, help="Amount in USD, e.g. 25 or 0.50 (negative to correct).")
@click.option("--note", default="top-up", help="Why, kept with the grant.")
def credits_add(usd: str, note: str) -> None:
    """Add credits; the first top-up makes the organization prepaid (requests need a balance)."""

    from wisegate.errors import ApiError

    amount = _pico(usd)

    async def work(accounts: BillingAccounts, org: str) -> BillingAccount:
        return await accounts.add_credits(org, amount, note)

    try:
        account = _run(work)
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(
        f"balance {_usd(account.credit_balance_pico)}\tpurchased {_usd(account.credits_purchased_pico)}"
    )


@credits.command("show")
def credits_show() -> None:
    """Tier, balance, purchases, this month's spend and the limits in force."""

    async def work(accounts: BillingAccounts, org: str) -> list[str]:
        overview = await accounts.overview(org)
        account, tier, month = overview.account, overview.tier, overview.period
        spent, reserved = overview.spent_pico, overview.reserved_pico
        return [
            f"organization\t{org}",
            f"tier\t{tier.name}" + ("" if account.tier is None else " (pinned)"),
            f"tier monthly cap\t{tier.monthly_spend_cap_usd or 'none'}",
            f"spend limit\t{_usd(account.spend_limit_pico)}",
            f"credit balance\t{_usd(account.credit_balance_pico)}",
            f"credits purchased\t{_usd(account.credits_purchased_pico)}",
            f"spent {month}\t{_usd(spent)} (+{_usd(reserved)} reserved)",
        ]

    for line in _run(work):
        click.echo(line)


@click.group()
def limits() -> None:
    """Tier pin, spend limits and workspace rate limits."""


@limits.command("tier")
@click.argument("name", required=False)
def limits_tier(name: str | None) -> None:
    """Pin the organization to tier NAME (no NAME: follow credit purchases / spend again)."""
    known = [t.name for t in load_settings().limits.tiers]
    if name is not None and name not in known:
        raise click.BadParameter(f"unknown tier {name!r}; configured: {', '.join(known)}")

    async def work(accounts: BillingAccounts, org: str) -> BillingAccount:
        return await accounts.pin_tier(org, name)

    account = _run(work)
    click.echo(f"tier\t{account.tier or 'by threshold'}")


@limits.command("spend")
@click.option("--workspace", default=None, help="A workspace id (default: the organization).")
@click.option("--usd", default=None, help="Monthly limit in USD; omit to remove the limit.")
def limits_spend(workspace: str | None, usd: str | None) -> None:
    """Set a user-defined monthly spend limit (requests past it get 400, as on the Claude API)."""
    pico = _pico(usd) if usd is not None else None

    async def work(accounts: BillingAccounts, org: str) -> str:
        await accounts.set_spend_limit(org, pico, workspace)
        return workspace or org

    click.echo(f"{_run(work)}\tmonthly spend limit {_usd(pico)}")


@limits.command("workspace-rate")
@click.option("--workspace", required=True, help="Workspace id.")
@click.option("--class", "model_class", required=True, help="Model class (see WISEGATE_LIMITS).")
@click.option("--rpm", type=int, help="Requests per minute.")
@click.option("--itpm", type=int, help="Input tokens per minute.")
@click.option("--otpm", type=int, help="Output tokens per minute.")
def limits_workspace_rate(
    workspace: str, model_class: str, rpm: int | None, itpm: int | None, otpm: int | None
) -> None:
    """Give a workspace lower rate limits for a model class (no numbers: remove them)."""
    if model_class not in load_settings().limits.model_classes:
        raise click.BadParameter(f"unknown model class {model_class!r}")

    async def work(accounts: BillingAccounts, org: str) -> dict[str, dict[str, int]]:
        rates = {"rpm": rpm, "itpm": itpm, "otpm": otpm}
        return await accounts.set_workspace_rates(org, workspace, model_class, rates)

    click.echo(f"{workspace}\t{json.dumps(_run(work))}")
