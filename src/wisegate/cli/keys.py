"""``wisegate keys create|list|disable``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from wisegate.cli.services import open_services

if TYPE_CHECKING:
    from wisegate.domain.scope import Scope
    from wisegate.records.tenancy import ApiKey
    from wisegate.services import Services


@click.group()
def keys() -> None:
    """Create, list and disable keys."""


@keys.command("create")
@click.option("--name", required=True, help="A name to recognise the key by.")
@click.option("--workspace", default=None, help="Workspace id (default: the first workspace).")
@click.option("--admin", is_flag=True, help="Create an admin key (for /v1/organizations/…).")
def keys_create(name: str, workspace: str | None, admin: bool) -> None:
    """Create a key and print its secret (shown once; only a hash is stored)."""

    async def work(services: Services, scope: Scope) -> tuple[ApiKey, str]:
        keys = services.keys
        workspace_id = workspace or (await keys.default_workspace(scope.organization_id)).id
        return await keys.create_key(workspace_id, name, admin=admin)

    key, secret = open_services(work)
    click.echo(f"{key.id}\t{key.workspace_id}\t{secret}")


@keys.command("list")
def keys_list() -> None:
    """List keys: id, workspace, kind, status, name, hint."""

    async def work(services: Services, scope: Scope) -> list[ApiKey]:
        return await services.keys.list_keys(scope.organization_id)

    for key in open_services(work):
        click.echo(
            f"{key.id}\t{key.workspace_id}\t{key.kind}\t{key.status}\t{key.name}\t{key.partial_key_hint}"
        )


@keys.command("disable")
@click.argument("key_id")
def keys_disable(key_id: str) -> None:
    """Disable a key: requests with it get 401 from then on."""

    async def work(services: Services, scope: Scope) -> ApiKey:
        return await services.keys.set_status(key_id, "inactive")

    key = open_services(work)
    click.echo(f"{key.id}\t{key.status}")
