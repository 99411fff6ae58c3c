"""``wisegate invites create|accept``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from wisegate.cli.services import load_settings, open_services

if TYPE_CHECKING:
    from wisegate.domain.scope import Scope
    from wisegate.records.directory import Invite, User
    from wisegate.services import Services


@click.group()
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
    settings = load_settings()

    async def work(services: Services, scope: Scope) -> tuple[Invite, str | None]:
        invite = await services.people.create_invite(
            scope, email, role, [(w, workspace_role) for w in workspaces]
        )
        token = services.people.link_token(invite)
        return invite, token

    invite, token = open_services(work, settings)
    base = settings.console_public_url or f"http://{settings.host}:{settings.port}"
    click.echo(f"{invite.id}\t{invite.email}\t{invite.role}\texpires {invite.expires_at:%Y-%m-%d}")
    click.echo(f"{base.rstrip('/')}/console/invite/{token}")


@invites.command("accept")
@click.argument("invite_id")
@click.option("--name", required=True, help="The new user's name.")
def invites_accept(invite_id: str, name: str) -> None:
    """Accept a pending invite: creates the user with the invite's e-mail and role."""

    async def work(services: Services, scope: Scope) -> tuple[Invite, User]:
        return await services.people.accept_invite(scope, invite_id, name)

    _, user = open_services(work)
    click.echo(f"{user.id}\t{user.email}\t{user.role}")
