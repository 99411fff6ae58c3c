"""``open_services``: the one way a command reaches the services."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click
from pydantic import ValidationError
from pydantic_settings import SettingsError

from wisegate.errors import ApiError
from wisegate.settings import Settings

if TYPE_CHECKING:
    from wisegate.domain.scope import Scope
    from wisegate.services import Services

T = TypeVar("T")
_FIELD = re.compile(r'field "(\w+)"')


class SettingsInvalid(click.ClickException):
    """A setting whose value cannot work: one line on stderr, exit status 2, no traceback."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"wisegate: {self.message}", err=True)


def load_settings() -> Settings:
    """The settings from the environment (and config file); a bad value is :class:`SettingsInvalid`
    naming the variable and what it takes, for every setting and every command."""
    try:
        return Settings()
    except ValidationError as exc:
        parts = []
        for error in exc.errors():
            where = "__".join(str(p) for p in error["loc"] if p != "__root__")
            name = f"WISEGATE_{where.upper()}" if where else "the settings"
            parts.append(f"{name}: {error['msg']}")
        raise SettingsInvalid("invalid setting " + "; ".join(parts)) from None
    except SettingsError as exc:  # a structured value (models, backends …) that is not JSON
        field = _FIELD.search(str(exc))
        name = f"WISEGATE_{field.group(1).upper()}" if field else "a setting"
        reason = exc.__cause__ or exc
        raise SettingsInvalid(f"invalid setting {name}: not a valid JSON value ({reason})") from None


def open_services(work: Callable[[Services, Scope], Awaitable[T]], settings: Settings | None = None) -> T:
    """Run ``work(services, scope)`` against the configured database (migrated first) and close it;
    ``scope`` acts for the default organization as an admin. An ``ApiError`` is a one-line error."""
    from wisegate.domain.scope import Scope
    from wisegate.services import Services
    from wisegate.storage.db import migrate

    settings = settings or load_settings()
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
