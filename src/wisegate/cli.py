"""The ``wisegate`` command: serve, migrate, worker, batch …, keys …, workspaces …, invites create|accept,
usage, credits …, limits …, backends list."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

import click

from wisegate.batch_cli import batch
from wisegate.errors import ApiError
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

    try:
        return asyncio.run(run())
    except ApiError as exc:
        raise click.ClickException(exc.message) from None


@click.group()
def main() -> None:
    """Wisegate: a self-hostable Claude API."""


@main.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1, WISEGATE_HOST).")
@click.option("--port", default=None, type=int, help="Port to listen on (default 8080, WISEGATE_PORT).")
def serve(host: str | None, port: int | None) -> None:
    """Migrate the database, print a first API key and admin key if none exists, and serve the API.

    A setting that cannot work (a taken port, a missing model file, tracing without its extra, a
    database that does not answer) is one line on stderr and exit status 2, before anything starts.
    SIGTERM drains (docs/operations.md).
    """
    from wisegate.logs import configure
    from wisegate.server import ListenError, listen
    from wisegate.telemetry import tracing

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
    from wisegate.backends.local.supervisor import start_model_runners, stop_model_runners

    app = create_app(settings)
    problems = app.state.services.registry.preflight()
    if problems:
        _startup_failure("; ".join(problems))
    # One model runner per local backend for this host, before any API worker starts: the workers
    # reach it by its socket (docs/operations.md, "The model runner").
    try:
        runners = start_model_runners(settings)
    except RuntimeError as exc:
        _startup_failure(str(exc))
    try:
        _serve(app, settings, host, port, sock)
    finally:
        stop_model_runners(runners)
        tracing.shutdown()


def _serve(app: Any, settings: Settings, host: str, port: int, sock: Any) -> None:
    from wisegate.server import run_server
    from wisegate.storage.db import DatabaseUnavailable, check_reachable

    async def first_keys(keys: Any) -> tuple[str, str] | None:
        org = await keys.bootstrap()
        if await keys.list_keys(org.id):
            return None
        workspace = await keys.default_workspace(org.id)
        _, secret = await keys.create_key(workspace.id, "first key")
        _, admin = await keys.create_key(workspace.id, "first admin key", admin=True)
        return str(secret), str(admin)

    try:
        check_reachable(settings.resolved_database_url)
    except DatabaseUnavailable as exc:
        _startup_failure(str(exc))
    created = _with_keys(settings, first_keys)
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
    run_server(
        app,
        host,
        port,
        sock=sock,
        drain=app.state.services.drain,
        drain_seconds=settings.drain_seconds,
        drain_grace_seconds=settings.drain_grace_seconds,
    )


def _startup_failure(message: str) -> NoReturn:
    """A configuration that cannot work: one line on stderr, exit status 2, no traceback."""
    click.echo(f"wisegate: {message}", err=True)
    sys.exit(2)


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


def _with_services(settings: Settings, work: Callable[[Any, Any], Awaitable[T]]) -> T:
    """Run ``work(services, admin_scope)`` against the configured database (migrated first)."""
    from wisegate.domain.scope import Scope
    from wisegate.services import Services
    from wisegate.storage.db import migrate

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


@main.group()
def workspaces() -> None:
    """Create, list and archive workspaces; set their model allow-lists."""


@workspaces.command("create")
@click.option("--name", required=True, help="Workspace name (1–40 characters).")
@click.option("--model", "models", multiple=True, help="Allow only this model (repeatable; default: all).")
def workspaces_create(name: str, models: tuple[str, ...]) -> None:
    """Create a workspace and print its id."""

    async def work(services: Any, scope: Any) -> Any:
        return await services.tenancy.create_workspace(scope, name, allowed_models=list(models) or None)

    view = _with_services(Settings(), work)
    click.echo(f"{view.workspace.id}\t{view.workspace.name}")


@workspaces.command("list")
@click.option("--archived", is_flag=True, help="Include archived workspaces.")
def workspaces_list(archived: bool) -> None:
    """List workspaces: id, name, status, allowed models."""

    async def work(services: Any, scope: Any) -> list[Any]:
        result: list[Any] = await services.tenancy.list_workspaces(scope, include_archived=archived)
        return result

    for view in _with_services(Settings(), work):
        w = view.workspace
        status = "archived" if w.archived_at else ("default" if view.is_default else "active")
        allowed = ",".join(view.allowed_models) if view.allowed_models is not None else "*"
        click.echo(f"{w.id}\t{w.name}\t{status}\t{allowed}")


@workspaces.command("archive")
@click.argument("workspace_id")
def workspaces_archive(workspace_id: str) -> None:
    """Archive a workspace and its keys (their requests get 401 from then on)."""

    async def work(services: Any, scope: Any) -> Any:
        return await services.tenancy.archive_workspace(scope, workspace_id)

    view = _with_services(Settings(), work)
    click.echo(f"{view.workspace.id}\tarchived")


@workspaces.command("models")
@click.argument("workspace_id")
@click.argument("models", nargs=-1)
def workspaces_models(workspace_id: str, models: tuple[str, ...]) -> None:
    """Set the models a workspace may use; with no MODELS, allow every served model."""

    async def work(services: Any, scope: Any) -> Any:
        return await services.tenancy.update_workspace(
            scope, workspace_id, allowed_models=list(models) or None, clear_allowed_models=not models
        )

    view = _with_services(Settings(), work)
    allowed = ",".join(view.allowed_models) if view.allowed_models is not None else "*"
    click.echo(f"{view.workspace.id}\t{allowed}")


@main.group()
def invites() -> None:
    """Organization invites: each has an accept link to send to the person."""


@invites.command("create")
@click.option("--email", required=True, help="The person's e-mail address.")
@click.option(
    "--role",
    default="developer",
    show_default=True,
    type=click.Choice(["user", "developer", "billing", "claude_code_user"]),
    help="Organization role.",
)
@click.option(
    "--workspace", "workspaces", multiple=True, help="Also make them a member of this workspace (repeatable)."
)
@click.option(
    "--workspace-role",
    default="workspace_developer",
    show_default=True,
    type=click.Choice(
        ["workspace_user", "workspace_developer", "workspace_restricted_developer", "workspace_admin"]
    ),
    help="Their role in the --workspace workspaces.",
)
def invites_create(email: str, role: str, workspaces: tuple[str, ...], workspace_role: str) -> None:
    """Invite someone: prints the link (valid 21 days, once) where they choose a name and password."""
    settings = Settings()

    async def work(services: Any, scope: Any) -> tuple[Any, str]:
        invite = await services.people.create_invite(
            scope, email, role, [(w, workspace_role) for w in workspaces]
        )
        token = services.people.link_token(invite)
        return invite, token

    invite, token = _with_services(settings, work)
    base = settings.console_public_url or f"http://{settings.host}:{settings.port}"
    click.echo(f"{invite.id}\t{invite.email}\t{invite.role}\texpires {invite.expires_at:%Y-%m-%d}")
    click.echo(f"{base.rstrip('/')}/console/invite/{token}")


@invites.command("accept")
@click.argument("invite_id")
@click.option("--name", required=True, help="The new user's name.")
def invites_accept(invite_id: str, name: str) -> None:
    """Accept a pending invite: creates the user with the invite's e-mail and role."""

    async def work(services: Any, scope: Any) -> Any:
        return await services.people.accept_invite(scope, invite_id, name)

    _, user = _with_services(Settings(), work)
    click.echo(f"{user.id}\t{user.email}\t{user.role}")


def _moment(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or datetime") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@main.command()
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

    async def work(services: Any, scope: Any) -> list[Any]:
        result: list[Any] = await services.reports.summary(scope, starting_at, ending_at, columns)
        return result

    rows = _with_services(Settings(), work)
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


@main.command()
def worker() -> None:
    """Run a batch worker: claim queued batch requests from the database and run them."""
    import signal

    from wisegate.logs import configure
    from wisegate.services import Services, serial_backends
    from wisegate.storage.db import DatabaseUnavailable, check_reachable
    from wisegate.storage.db import migrate as run_migrations
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
        try:
            await services.registry.start()
            await services.limits.start()  # replays dead journals; keeps this process's leases renewed
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
            await services.limits.close()  # unused lease room back, settlements committed
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
        served = [m.id for m in settings.models if any(d.backend == name for d in m.deployment_list())]
        click.echo(f"{name}\t{config.type}\t{', '.join(served)}")


def _add_billing_commands() -> None:
    from wisegate.cli_billing import credits, limits

    main.add_command(credits)
    main.add_command(limits)


_add_billing_commands()
