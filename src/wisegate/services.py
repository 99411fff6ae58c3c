"""The explicit container of everything a request may need, built once per app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from wisegate.backends.base import Backend
from wisegate.backends.registry import BackendRegistry
from wisegate.domain.catalog import ModelCatalog
from wisegate.domain.keys import KeyService
from wisegate.domain.messages import MessageService
from wisegate.domain.people import PeopleService
from wisegate.domain.pricing import PriceTable
from wisegate.domain.reports import ReportService
from wisegate.domain.tenancy import TenancyService
from wisegate.domain.usage import UsageService
from wisegate.settings import Settings
from wisegate.storage.db import Database
from wisegate.storage.directory import DirectoryRepo
from wisegate.storage.reports import UsageReportRepo
from wisegate.storage.repos import TenancyRepo, UsageRepo


@dataclass
class Services:
    settings: Settings
    db: Database
    registry: BackendRegistry
    keys: KeyService
    usage: UsageService
    messages: MessageService
    catalog: ModelCatalog
    tenancy: TenancyService
    people: PeopleService
    reports: ReportService
    organization_id: str | None = field(default=None)

    @classmethod
    def from_settings(cls, settings: Settings, backends: dict[str, Backend] | None = None) -> Services:
        """Wire the services; ``backends`` replaces configured backends by name (tests, embedding)."""
        db = Database(settings.resolved_database_url)
        registry = BackendRegistry(settings.backends, settings.models, backends)
        usage = UsageService(UsageRepo(db))
        keys = KeyService(TenancyRepo(db), settings.key_cache_seconds)
        directory = DirectoryRepo(db)
        catalog = ModelCatalog(registry, _allow_list(directory), settings.key_cache_seconds)
        display_names = {m.id: m.display_name or m.id for m in settings.models}
        return cls(
            settings=settings,
            db=db,
            registry=registry,
            keys=keys,
            usage=usage,
            messages=MessageService(registry, usage, catalog),
            catalog=catalog,
            tenancy=TenancyService(TenancyRepo(db), directory, keys, catalog),
            people=PeopleService(directory),
            reports=ReportService(
                UsageReportRepo(db), PriceTable(settings.prices), lambda m: display_names.get(m, m)
            ),
        )

    @asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        """Start the backends and learn the default organization; release everything on shutdown."""
        try:
            org = await self.keys.bootstrap()
            self.organization_id = org.id
            await self.registry.start()
            yield
        finally:
            await self.registry.close()
            await self.db.close()


def _allow_list(directory: DirectoryRepo) -> Callable[[str], Awaitable[tuple[str, ...] | None]]:
    async def lookup(workspace_id: str) -> tuple[str, ...] | None:
        settings = await directory.workspace_settings(workspace_id)
        return settings.allowed_models if settings else None

    return lookup


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
