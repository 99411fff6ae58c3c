"""The explicit container of everything a request may need, built once per app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from wisegate.backends.base import Backend
from wisegate.backends.registry import BackendRegistry
from wisegate.domain.batches import BatchService
from wisegate.domain.clock import Clock, SystemClock
from wisegate.domain.keys import KeyService
from wisegate.domain.messages import MessageService
from wisegate.domain.usage import UsageService
from wisegate.settings import Settings
from wisegate.storage.batches import BatchRepo
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
    batches: BatchService
    organization_id: str | None = field(default=None)

    @classmethod
    def from_settings(
        cls, settings: Settings, backends: dict[str, Backend] | None = None, clock: Clock | None = None
    ) -> Services:
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
            batches=BatchService(BatchRepo(db), clock or SystemClock(), settings.batch_lease_seconds),
        )

    @asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        """Start the backends and learn the default organization; release everything on shutdown."""
        try:
            org = await self.keys.bootstrap()
            self.organization_id = org.id
            await self.registry.start()
            async with batch_worker(self):
                yield
        finally:
            await self.registry.close()
            await self.db.close()


@asynccontextmanager
async def batch_worker(services: Services) -> AsyncIterator[None]:
    """Run the in-process batch worker (embedded mode) while the app serves, when enabled."""
    if not services.settings.batch_worker:
        yield
        return
    from wisegate.workers.batches import BatchWorker

    worker = BatchWorker(
        services.batches,
        services.messages,
        concurrency=services.settings.batch_concurrency,
        serial_backends=serial_backends(services.settings),
    )
    task = asyncio.create_task(worker.run(), name="batch-worker")
    try:
        yield
    finally:
        worker.stop()
        await task


def serial_backends(settings: Settings) -> list[str]:
    """Backends with one generation thread (the embedded model), where batch work must take turns."""
    return [name for name, config in settings.backends.items() if config.type == "local"]


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
