"""``open_services``: the one way a command reaches the services."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import click

from wisegate.errors import ApiError
from wisegate.settings import Settings

if TYPE_CHECKING:
    from wisegate.domain.scope import Scope
    from wisegate.services import Services

T = TypeVar("T")


def open_services(work: Callable[[Services, Scope], Awaitable[T]], settings: Settings | None = None) -> T:
    """Run ``work(services, scope)`` against the configured database (migrated first) and close it;
    ``scope`` acts for the default organization as an admin. An ``ApiError`` is a one-line error."""
    from wisegate.domain.scope import Scope
    from wisegate.services import Services
    from wisegate.storage.db import migrate

    settings = settings or Settings()
    migrate(settings.resolved_database_url)

    async def run() -> T:
        services = Services.from_settings(settings)
        try:
            org = await services.keys.bootstrap()
            return await work(services, Scope(org.id, None))
        finally:
            await services.db.close()

    try:
        return asyncio.run(run())
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
