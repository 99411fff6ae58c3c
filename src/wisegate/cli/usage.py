"""``wisegate usage``: requests, tokens and cost over a time range, as a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

from wisegate.cli.services import open_services

if TYPE_CHECKING:
    from wisegate.domain.reports import SummaryRow
    from wisegate.domain.scope import Scope
    from wisegate.services import Services


def _moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or datetime") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command()
@click.option("--start", default=None, help="Start (ISO 8601, UTC if no offset); default: --days ago.")
@click.option("--end", default=None, help="End, exclusive (ISO 8601); default: now.")
@click.option("--days", default=7, show_default=True, help="Length of the range when --start is not given.")
@click.option(
    "--by",
    "group_by",
    multiple=True,
    type=click.Choice(["model", "workspace", "api_key", "service_tier"]),
    help="Group rows by this (repeatable; default: model).",
)
def usage(start: str | None, end: str | None, days: int, group_by: tuple[str, ...]) -> None:
    """Print a table of requests, tokens and cost over a time range."""
    from rich.console import Console
    from rich.table import Table

    from wisegate.domain.pricing import format_usd

    ending_at = _moment(end) or datetime.now(UTC)
    starting_at = _moment(start) or ending_at - timedelta(days=days)
    columns = [
        {"model": "model", "workspace": "workspace_id", "api_key": "api_key_id"}.get(g, g)
        for g in dict.fromkeys(group_by or ("model",))
    ]

    async def work(services: Services, scope: Scope) -> list[SummaryRow]:
        return await services.reports.summary(scope, starting_at, ending_at, columns)

    rows = open_services(work)
    table = Table(title=f"Usage {starting_at:%Y-%m-%d %H:%M} → {ending_at:%Y-%m-%d %H:%M} UTC")
    for name in columns:
        table.add_column(name)
    for name in ("requests", "input", "output", "cache write", "cache read", "cost"):
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(
            *[str(row.group[c]) for c in columns],
            f"{row.requests:,}",
            f"{row.uncached_input_tokens:,}",
            f"{row.output_tokens:,}",
            f"{row.cache_creation_input_tokens:,}",
            f"{row.cache_read_input_tokens:,}",
            format_usd(row.cost_picodollars),
        )
    if not rows:
        table.caption = "no requests in this range"
    Console(width=160).print(table)
