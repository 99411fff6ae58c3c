"""The explicit container of everything a request may need, built once per app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from wisegate.backends.base import Backend
from wisegate.backends.registry import BackendRegistry
from wisegate.domain.keys import KeyService
from wisegate.domain.messages import MessageService
from wisegate.domain.models import ModelCatalog
from wisegate.domain.usage import UsageService
from wisegate.settings import Settings
from wisegate.storage.db import Database
from wisegate.storage.repos import TenancyRepo, UsageRepo


@dataclass
class Services:
    settings: Settings
    db: Database
    registry: BackendRegistry
    keys: KeyService
    usage: UsageService
    messages: MessageService
    models: ModelCatalog
    organization_id: str | None = field(default=None)

    @classmethod
    def from_settings(cls, settings: Settings, backends: dict[str, Backend] | None = None) -> Services:
        """Wire the services; ``backends`` replaces configured backends by name (tests, embedding)."""
        db = Database(settings.resolved_database_url)
        registry = BackendRegistry(settings.backends, settings.models, backends)
        usage = UsageService(UsageRepo(db))
        return cls(
            settings=settings,
            db=db,
            registry=registry,
            keys=KeyService(TenancyRepo(db), settings.key_cache_seconds),
            usage=usage,
            messages=MessageService(registry, usage),
            models=ModelCatalog(registry),
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


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
