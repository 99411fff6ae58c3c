"""``wisegate workspaces create|list|archive|models``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from wisegate.cli.services import open_services

if TYPE_CHECKING:
    from wisegate.domain.scope import Scope
    from wisegate.domain.tenancy import WorkspaceView
    from wisegate.services import Services


@click.group()
def workspaces() -> None:
    """Create, list and archive workspaces; set their model allow-lists."""


@workspaces.command("create")
@click.option("--name", required=True, help="Workspace name (1–40 characters).")
@click.option("--model", "models", multiple=True, help="Allow only this model (repeatable; default: all).")
def workspaces_create(name: str, models: tuple[str, ...]) -> None:
    """Create a workspace and print its id."""

    async def work(services: Services, scope: Scope) -> WorkspaceView:
        return await services.tenancy.create_workspace(scope, name, allowed_models=list(models) or None)

    view = open_services(work)
    click.echo(f"{view.workspace.id}\t{view.workspace.name}")


@workspaces.command("list")
@click.option("--archived", is_flag=True, help="Include archived workspaces.")
def workspaces_list(archived: bool) -> None:
    """List workspaces: id, name, status, allowed models."""

    async def work(services: Services, scope: Scope) -> list[WorkspaceView]:
        return await services.tenancy.list_workspaces(scope, include_archived=archived)

    for view in open_services(work):
        w = view.workspace
        status = "archived" if w.archived_at else ("default" if view.is_default else "active")
        allowed = ",".join(view.allowed_models) if view.allowed_models is not None else "*"
        click.echo(f"{w.id}\t{w.name}\t{status}\t{allowed}")


@workspaces.command("archive")
@click.argument("workspace_id")
def workspaces_archive(workspace_id: str) -> None:
    """Archive a workspace and its keys (their requests get 401 from then on)."""

    async def work(services: Services, scope: Scope) -> WorkspaceView:
        return await services.tenancy.archive_workspace(scope, workspace_id)

    view = open_services(work)
    click.echo(f"{view.workspace.id}\tarchived")


@workspaces.command("models")
@click.argument("workspace_id")
@click.argument("models", nargs=-1)
def workspaces_models(workspace_id: str, models: tuple[str, ...]) -> None:
    """Set the models a workspace may use; with no MODELS, allow every served model."""

    async def work(services: Services, scope: Scope) -> WorkspaceView:
        return await services.tenancy.update_workspace(
            scope, workspace_id, allowed_models=list(models) or None, clear_allowed_models=not models
        )

    view = open_services(work)
    allowed = ",".join(view.allowed_models) if view.allowed_models is not None else "*"
    click.echo(f"{view.workspace.id}\t{allowed}")
