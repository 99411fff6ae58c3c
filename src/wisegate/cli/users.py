"""``wisegate users list|set-role``: the organization's people and their organization roles."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from wisegate.cli.services import open_services
from wisegate.domain.roles import ORGANIZATION_ROLES
from wisegate.errors import NotFound

if TYPE_CHECKING:
    from wisegate.domain.scope import Scope
    from wisegate.records.directory import User
    from wisegate.services import Services


@click.group()
def users() -> None:
    """The organization's people (they join through invites) and their roles."""


@users.command("list")
def users_list() -> None:
    """Every person: id, e-mail, organization role, name."""

    async def work(services: Services, scope: Scope) -> list[User]:
        return await services.people.list_users(scope)

    for user in sorted(open_services(work), key=lambda u: u.email):
        click.echo(f"{user.id}\t{user.email}\t{user.role}\t{user.name}")


@users.command("set-role")
@click.argument("email")
@click.argument("role", type=click.Choice(ORGANIZATION_ROLES))
def users_set_role(email: str, role: str) -> None:
    """Give the person with EMAIL the organization role ROLE (admin included).

    The organization's last admin keeps the role: make someone else an admin first. Recorded in the
    audit record as user.role_changed."""

    async def work(services: Services, scope: Scope) -> User:
        found = await services.people.list_users(scope, email=email)
        if not found:
            raise NotFound(f"no person with the e-mail {email} (see: wisegate users list)")
        return await services.accounts.change_role(scope.organization_id, None, found[0].id, role, None)

    user = open_services(work)
    click.echo(f"{user.id}\t{user.email}\t{user.role}")
