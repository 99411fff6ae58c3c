"""``wisegate serve``, ``wisegate migrate`` and ``wisegate worker``: the processes."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from typing import TYPE_CHECKING, NoReturn

import click

from wisegate.cli.services import load_settings, open_services

if TYPE_CHECKING:
    from wisegate.cli.connections import ConnectionLimits
    from wisegate.domain.scope import Scope
    from wisegate.services import Services
    from wisegate.settings import Settings


@click.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1, WISEGATE_HOST).")
@click.option("--port", default=None, type=int, help="Port to listen on (default 8080, WISEGATE_PORT).")
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(min=1),
    help="API processes serving the port (default 1, WISEGATE_WORKERS); more than one needs Redis.",
)
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Migrate the database, print a first API key and admin key if none exists, and serve the API.

    A setting that cannot work (a taken port, a missing model file, tracing without its extra, a
    database or Redis that does not answer, several workers without Redis) is one line on stderr and
    exit status 2, before anything starts. SIGTERM drains (docs/operations.md).
    """
    from wisegate.backends.registry import BackendRegistry
    from wisegate.cli import checks
    from wisegate.cli.server import ListenError, listen
    from wisegate.storage.db import DatabaseUnavailable, check_reachable
    from wisegate.telemetry import tracing
    from wisegate.telemetry.logs import configure

    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    host, port, workers = host or settings.host, port or settings.port, workers or settings.workers
    if problem := checks.workers_problem(settings, workers):
        _startup_failure(problem)
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
    if problems := BackendRegistry(settings.backends, settings.models).preflight():
        _startup_failure("; ".join(problems))
    if problem := checks.redis_problem(settings):
        _startup_failure(problem)
    try:
        check_reachable(settings.resolved_database_url)
    except DatabaseUnavailable as exc:
        _startup_failure(str(exc))

    async def first_keys(services: Services, scope: Scope) -> tuple[str, str] | None:
        keys = services.keys
        if await keys.list_keys(scope.organization_id):
            return None
        workspace = await keys.default_workspace(scope.organization_id)
        _, secret = await keys.create_key(workspace.id, "first key")
        _, admin = await keys.create_key(workspace.id, "first admin key", admin=True)
        return str(secret), str(admin)

    created = open_services(first_keys, settings)
    if created:
        click.echo(f"Your first API key (shown once, keep it): {created[0]}")
        click.echo(f"Your first admin key, for the console and the Admin API (shown once): {created[1]}")
    else:
        click.echo("Keys already exist; create another with: wisegate keys create --name NAME")
    click.echo(f"Web console: http://{host}:{port}/console (log in with an admin key)")
    click.echo(
        f"Serving the Claude API on http://{host}:{port} (models: {', '.join(m.id for m in settings.models)})"
        + (f" with {workers} worker processes" if workers > 1 else "")
    )
    sys.stdout.flush()

    from wisegate.cli.host import host_services

    # Per-host services start here, in this (the parent) process, before the API workers start.
    with host_services(settings, workers):
        if workers > 1:
            from wisegate.cli.supervisor import run_workers

            tracing.shutdown()  # each worker traces for itself
            stop_timeout = settings.drain_grace_seconds + settings.drain_seconds + 15
            sys.exit(run_workers(sock, workers, stop_timeout=stop_timeout))
        _serve_here(settings, host, port, sock)


def _serve_here(settings: Settings, host: str, port: int, sock: socket.socket) -> None:
    """One API process: this one."""
    from wisegate.app import create_app
    from wisegate.cli.server import run_server
    from wisegate.telemetry import tracing

    app = create_app(settings)
    try:
        run_server(
            app,
            host,
            port,
            sock=sock,
            drain=app.state.services.drain,
            drain_seconds=settings.drain_seconds,
            drain_grace_seconds=settings.drain_grace_seconds,
            limits=connection_limits(settings),
        )
    finally:
        tracing.shutdown()


def connection_limits(settings: Settings) -> ConnectionLimits:
    """What one connection may take (``cli/connections.py``), from the settings."""
    from wisegate.cli.connections import ConnectionLimits

    return ConnectionLimits(
        max_header_bytes=settings.max_header_bytes,
        header_timeout_seconds=settings.header_timeout_seconds,
        keep_alive_seconds=settings.keep_alive_seconds,
        max_connections=settings.max_connections,
        body_timeout_seconds=settings.body_timeout_seconds,
        body_min_bytes_per_second=settings.body_min_bytes_per_second,
    )


def _startup_failure(message: str) -> NoReturn:
    """A configuration that cannot work: one line on stderr, exit status 2, no traceback."""
    click.echo(f"wisegate: {message}", err=True)
    sys.exit(2)


@click.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    from wisegate.storage.db import migrate as run_migrations

    settings = load_settings()
    run_migrations(settings.resolved_database_url)
    click.echo(f"database at {settings.resolved_database_url} is up to date")


@click.command()
def worker() -> None:
    """Run a batch worker: claim queued batch requests from the database and run them.

    SIGTERM (or SIGINT) drains: no new claims, the requests already claimed run to completion for up
    to WISEGATE_DRAIN_SECONDS, then what is left is given back to the queue; exit status 0. A second
    signal gives back what is left at once.
    """
    import signal

    from wisegate.services import Services, shared_backends
    from wisegate.storage.db import DatabaseUnavailable, check_reachable
    from wisegate.storage.db import migrate as run_migrations
    from wisegate.telemetry.logs import configure
    from wisegate.workers.batches import BatchWorker

    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    try:
        check_reachable(settings.resolved_database_url)
    except DatabaseUnavailable as exc:
        _startup_failure(str(exc))
    run_migrations(settings.resolved_database_url)
    log = logging.getLogger("wisegate.worker")

    async def run() -> None:
        services = Services.from_settings(settings)
        async with services.running():
            batch_worker = BatchWorker(
                services.batches,
                services.messages,
                concurrency=settings.batch_concurrency,
                shared_backends=shared_backends(settings),
            )
            loop = asyncio.get_running_loop()
            signals: list[signal.Signals] = []

            def on_signal(sig: signal.Signals) -> None:
                signals.append(sig)
                if len(signals) > 1:
                    log.warning("second signal: giving back the batch requests still running")
                    batch_worker.stop()
                    return
                log.warning(
                    "draining: no new claims; the requests claimed have %g s to finish",
                    settings.drain_seconds,
                    extra={"signal": sig.name},
                )
                batch_worker.drain()
                loop.call_later(settings.drain_seconds, batch_worker.stop)

            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, on_signal, sig)
            click.echo(f"batch worker {batch_worker.name} running")
            sys.stdout.flush()
            await batch_worker.run()

    asyncio.run(run())
