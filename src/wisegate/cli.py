"""The ``wisegate`` command: serve, migrate, worker, batch submit|status|results, keys, backends."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from wisegate.batch_cli import batch
from wisegate.settings import Settings

T = TypeVar("T")


def _with_keys(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(KeyService)`` against the configured database (migrated first)."""
    from wisegate.domain.keys import KeyService
    from wisegate.storage.db import Database, migrate
    from wisegate.storage.repos import TenancyRepo

    migrate(settings.resolved_database_url)

    async def run() -> T:
        db = Database(settings.resolved_database_url)
        try:
            return await work(KeyService(TenancyRepo(db)))
        finally:
            await db.close()

    return asyncio.run(run())


@click.group()
def main() -> None:
    """Wisegate: a self-hostable Claude API."""


@main.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1, WISEGATE_HOST).")
@click.option("--port", default=None, type=int, help="Port to listen on (default 8080, WISEGATE_PORT).")
def serve(host: str | None, port: int | None) -> None:
    """Migrate the database, print a first API key if none exists, and serve the API."""
    import uvicorn

    from wisegate.app import create_app
    from wisegate.logs import configure

    settings = Settings()
    configure(settings.log_level, settings.log_format)

    async def first_key(keys: Any) -> str | None:
        org = await keys.bootstrap()
        if await keys.list_keys(org.id):
            return None
        workspace = await keys.default_workspace(org.id)
        _, secret = await keys.create_key(workspace.id, "first key")
        return str(secret)

    secret = _with_keys(settings, first_key)
    host, port = host or settings.host, port or settings.port
    if secret:
        click.echo(f"Your first API key (shown once, keep it): {secret}")
    else:
        click.echo("Keys already exist; create another with: wisegate keys create --name NAME")
    click.echo(
        f"Serving the Claude API on http://{host}:{port} (models: {', '.join(m.id for m in settings.models)})"
    )
    sys.stdout.flush()
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )


@main.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    from wisegate.storage.db import migrate as run_migrations

    settings = Settings()
    run_migrations(settings.resolved_database_url)
    click.echo(f"database at {settings.resolved_database_url} is up to date")


@main.group()
def keys() -> None:
    """Create, list and disable keys."""


@keys.command("create")
@click.option("--name", required=True, help="A name to recognise the key by.")
@click.option("--workspace", default=None, help="Workspace id (default: the first workspace).")
@click.option("--admin", is_flag=True, help="Create an admin key (for /v1/organizations/…).")
def keys_create(name: str, workspace: str | None, admin: bool) -> None:
    """Create a key and print its secret (shown once; only a hash is stored)."""

    async def work(service: Any) -> tuple[Any, str]:
        org = await service.bootstrap()
        workspace_id = workspace or (await service.default_workspace(org.id)).id
        result: tuple[Any, str] = await service.create_key(workspace_id, name, admin=admin)
        return result

    key, secret = _with_keys(Settings(), work)
    click.echo(f"{key.id}\t{key.workspace_id}\t{secret}")


@keys.command("list")
def keys_list() -> None:
    """List keys: id, workspace, kind, status, name, hint."""

    async def work(service: Any) -> list[Any]:
        org = await service.bootstrap()
        result: list[Any] = await service.list_keys(org.id)
        return result

    for key in _with_keys(Settings(), work):
        click.echo(
            f"{key.id}\t{key.workspace_id}\t{key.kind}\t{key.status}\t{key.name}\t{key.partial_key_hint}"
        )


@keys.command("disable")
@click.argument("key_id")
def keys_disable(key_id: str) -> None:
    """Disable a key: requests with it get 401 from then on."""

    async def work(service: Any) -> Any:
        return await service.set_status(key_id, "inactive")

    key = _with_keys(Settings(), work)
    click.echo(f"{key.id}\t{key.status}")


@main.command()
def worker() -> None:
    """Run a batch worker: claim queued batch requests from the database and run them."""
    import signal

    from wisegate.logs import configure
    from wisegate.services import Services, serial_backends
    from wisegate.storage.db import migrate as run_migrations
    from wisegate.workers.batches import BatchWorker

    settings = Settings()
    configure(settings.log_level, settings.log_format)
    run_migrations(settings.resolved_database_url)

    async def run() -> None:
        services = Services.from_settings(settings)
        try:
            await services.registry.start()
            batch_worker = BatchWorker(
                services.batches,
                services.messages,
                concurrency=settings.batch_concurrency,
                serial_backends=serial_backends(settings),
            )
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, batch_worker.stop)
            click.echo(f"batch worker {batch_worker.name} running")
            sys.stdout.flush()
            await batch_worker.run()
        finally:
            await services.registry.close()
            await services.db.close()

    asyncio.run(run())


main.add_command(batch)


@main.group()
def backends() -> None:
    """Backend types and configured backends."""


@backends.command("list")
def backends_list() -> None:
    """Configured backends, their types and the models they serve."""
    settings = Settings()
    for name, config in settings.backends.items():
        served = [m.id for m in settings.models if m.backend == name]
        click.echo(f"{name}\t{config.type}\t{', '.join(served)}")
