"""``wisegate serve``, ``wisegate migrate`` and ``wisegate worker``: the processes."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, NoReturn

import click

from wisegate.cli.services import open_services
from wisegate.settings import Settings

if TYPE_CHECKING:
    from wisegate.domain.scope import Scope
    from wisegate.services import Services


@click.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1, WISEGATE_HOST).")
@click.option("--port", default=None, type=int, help="Port to listen on (default 8080, WISEGATE_PORT).")
def serve(host: str | None, port: int | None) -> None:
    """Migrate the database, print a first API key and admin key if none exists, and serve the API.

    A setting that cannot work (a taken port, a missing model file, tracing without its extra, a
    database that does not answer) is one line on stderr and exit status 2, before anything starts.
    SIGTERM drains (docs/operations.md).
    """
    from wisegate.cli.server import ListenError, listen
    from wisegate.storage.db import DatabaseUnavailable, check_reachable
    from wisegate.telemetry import tracing
    from wisegate.telemetry.logs import configure

    settings = Settings()
    configure(settings.log_level, settings.log_format)
    host, port = host or settings.host, port or settings.port
    try:
        sock = listen(host, port)
    except ListenError as exc:
        _startup_failure(str(exc))
    try:
        tracing.configure(
            settings.tracing, endpoint=settings.tracing_endpoint, sample_ratio=settings.tracing_sample_ratio
        )
    except tracing.TracingUnavailable as exc:
        _startup_failure(str(exc))

    from wisegate.app import create_app
    from wisegate.cli.connections import ConnectionLimits
    from wisegate.cli.server import run_server

    app = create_app(settings)
    problems = app.state.services.registry.preflight()
    if problems:
        _startup_failure("; ".join(problems))

    async def first_keys(services: Services, scope: Scope) -> tuple[str, str] | None:
        keys = services.keys
        if await keys.list_keys(scope.organization_id):
            return None
        workspace = await keys.default_workspace(scope.organization_id)
        _, secret = await keys.create_key(workspace.id, "first key")
        _, admin = await keys.create_key(workspace.id, "first admin key", admin=True)
        return str(secret), str(admin)

    try:
        check_reachable(settings.resolved_database_url)
    except DatabaseUnavailable as exc:
        _startup_failure(str(exc))
    created = open_services(first_keys, settings)
    if created:
        click.echo(f"Your first API key (shown once, keep it): {created[0]}")
        click.echo(f"Your first admin key, for the console and the Admin API (shown once): {created[1]}")
    else:
        click.echo("Keys already exist; create another with: wisegate keys create --name NAME")
    click.echo(f"Web console: http://{host}:{port}/console (log in with an admin key)")
    click.echo(
        f"Serving the Claude API on http://{host}:{port} (models: {', '.join(m.id for m in settings.models)})"
    )
    sys.stdout.flush()
    try:
        run_server(
            app,
            host,
            port,
            sock=sock,
            drain=app.state.services.drain,
            drain_seconds=settings.drain_seconds,
            drain_grace_seconds=settings.drain_grace_seconds,
            limits=ConnectionLimits(
                max_header_bytes=settings.max_header_bytes,
                header_timeout_seconds=settings.header_timeout_seconds,
                keep_alive_seconds=settings.keep_alive_seconds,
                max_connections=settings.max_connections,
            ),
        )
    finally:
        tracing.shutdown()


def _startup_failure(message: str) -> NoReturn:
    """A configuration that cannot work: one line on stderr, exit status 2, no traceback."""
    click.echo(f"wisegate: {message}", err=True)
    sys.exit(2)


@click.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    from wisegate.storage.db import migrate as run_migrations

    settings = Settings()
    run_migrations(settings.resolved_database_url)
    click.echo(f"database at {settings.resolved_database_url} is up to date")


@click.command()
def worker() -> None:
    """Run a batch worker: claim queued batch requests from the database and run them."""
    import signal

    from wisegate.services import Services, serial_backends
    from wisegate.storage.db import DatabaseUnavailable, check_reachable
    from wisegate.storage.db import migrate as run_migrations
    from wisegate.telemetry.logs import configure
    from wisegate.workers.batches import BatchWorker

    settings = Settings()
    configure(settings.log_level, settings.log_format)
    try:
        check_reachable(settings.resolved_database_url)
    except DatabaseUnavailable as exc:
        _startup_failure(str(exc))
    run_migrations(settings.resolved_database_url)

    async def run() -> None:
        services = Services.from_settings(settings)
        async with services.running():
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

    asyncio.run(run())
