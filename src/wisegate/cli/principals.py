"""``wisegate service-accounts …`` and ``wisegate spend-requests …``: the Admin API's service accounts
and spend limit increase requests from the command line, on the same domain services."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from wisegate.cli.services import open_services

if TYPE_CHECKING:
    from wisegate.domain.scope import Scope
    from wisegate.domain.spend_limits import RequestView, WorkspaceLimit
    from wisegate.records.principals import ServiceAccount, ServiceAccountMember
    from wisegate.records.tenancy import ApiKey
    from wisegate.services import Services

ROLES = ["workspace_user", "workspace_developer", "workspace_restricted_developer", "workspace_admin"]


@click.group("service-accounts")
def service_accounts() -> None:
    """Non-human principals holding API keys in the workspaces they belong to."""


@service_accounts.command("create")
@click.option("--name", required=True, help="Slug: lowercase letters, digits and hyphens.")
@click.option("--description", default=None)
@click.option("--role", default="developer", type=click.Choice(["developer", "admin"]), show_default=True)
def sa_create(name: str, description: str | None, role: str) -> None:
    """Create a service account (an implicit workspace_user of the default workspace)."""

    async def work(services: Services, scope: Scope) -> ServiceAccount:
        return await services.service_accounts.create(
            scope, name, description=description, organization_role=role, actor_id=None
        )

    account = open_services(work)
    click.echo(f"{account.id}\t{account.name}\t{account.organization_role}")


@service_accounts.command("list")
@click.option("--archived", is_flag=True, help="Include archived service accounts.")
def sa_list(archived: bool) -> None:
    """id, name, organization role, status."""

    async def work(services: Services, scope: Scope) -> list[ServiceAccount]:
        return await services.service_accounts.list_accounts(scope, include_archived=archived)

    for a in open_services(work):
        click.echo(f"{a.id}\t{a.name}\t{a.organization_role}\t{'archived' if a.archived_at else 'active'}")


@service_accounts.command("add-workspace")
@click.argument("service_account_id")
@click.option("--workspace", required=True, help="Workspace id.")
@click.option("--role", default="workspace_developer", type=click.Choice(ROLES), show_default=True)
def sa_add_workspace(service_account_id: str, workspace: str, role: str) -> None:
    """Make it a member of a workspace (or change its role there)."""

    async def work(services: Services, scope: Scope) -> ServiceAccountMember:
        return await services.service_accounts.add(scope, workspace, service_account_id, role, actor_id=None)

    member = open_services(work)
    click.echo(f"{member.service_account_id}\t{member.workspace_id}\t{member.workspace_role}")


@service_accounts.command("key")
@click.argument("service_account_id")
@click.option("--workspace", required=True, help="A workspace it belongs to.")
@click.option("--name", required=True, help="Key name.")
def sa_key(service_account_id: str, workspace: str, name: str) -> None:
    """A new API key of the service account; the secret is printed once."""

    async def work(services: Services, scope: Scope) -> tuple[ApiKey, str]:
        return await services.service_accounts.create_key(scope, service_account_id, workspace, name)

    key, secret = open_services(work)
    click.echo(f"{key.id}\t{key.workspace_id}\t{secret}")


@service_accounts.command("archive")
@click.argument("service_account_id")
def sa_archive(service_account_id: str) -> None:
    """Archive it and every key it holds."""

    async def work(services: Services, scope: Scope) -> ServiceAccount:
        return await services.service_accounts.archive(scope, service_account_id, actor_id=None)

    account = open_services(work)
    click.echo(f"{account.id}\tarchived")


@click.group("spend-requests")
def spend_requests() -> None:
    """Requests for a higher monthly spend limit of a workspace (made in the console)."""


@spend_requests.command("list")
@click.option("--status", type=click.Choice(["pending", "approved", "denied"]), default=None)
def sr_list(status: str | None) -> None:
    """id, status, workspace, requester, amount asked (USD), reason."""
    from wisegate.domain.pricing import format_amount

    async def work(services: Services, scope: Scope) -> list[RequestView]:
        return await services.spend_limits.list_requests(scope, statuses=[status] if status else [])

    for v in open_services(work):
        r = v.request
        asked = format_amount(r.requested_pico) if r.requested_pico is not None else "-"
        who = v.actor.user.email if v.actor.user else r.user_id
        click.echo(f"{r.id}\t{r.status}\t{r.workspace_id}\t{who}\t{asked}\t{r.reason}")


@spend_requests.command("approve")
@click.argument("request_id")
@click.option("--usd", required=True, help="The workspace's new monthly spend limit, in USD.")
def sr_approve(request_id: str, usd: str) -> None:
    """Approve: the workspace's monthly spend limit becomes --usd."""
    from wisegate.domain.pricing import format_amount
    from wisegate.domain.spend_limits import Actor, parse_limit_usd

    try:
        pico = parse_limit_usd(usd)  # the amounts the console's ask and approve forms take
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None

    async def work(services: Services, scope: Scope) -> tuple[RequestView, WorkspaceLimit]:
        return await services.spend_limits.approve(scope, request_id, pico, Actor("operator", "cli"))

    view, _limit = open_services(work)
    click.echo(f"{view.request.id}\tapproved\t{view.request.workspace_id}\t{format_amount(pico)}")


@spend_requests.command("deny")
@click.argument("request_id")
def sr_deny(request_id: str) -> None:
    """Deny a pending request."""
    from wisegate.domain.spend_limits import Actor

    async def work(services: Services, scope: Scope) -> RequestView:
        return await services.spend_limits.deny(scope, request_id, Actor("operator", "cli"))

    view = open_services(work)
    click.echo(f"{view.request.id}\t{view.request.status}")
