"""Members: the organization's people, their roles, invites with their accept links, and the audit record.

The same ``PeopleService`` calls as ``/v1/organizations/users`` and ``…/invites`` and ``wisegate invites
create``. Admins only (``organization:members:manage``).
"""

from __future__ import annotations

from starlette.responses import Response

from wisegate.console.web import Operator, page
from wisegate.domain.people import ASSIGNABLE_ROLES
from wisegate.domain.roles import ROLES, WORKSPACE_ROLES
from wisegate.domain.roles import Permission as P
from wisegate.errors import InvalidRequest
from wisegate.protocol.bounds import echo


def invite_url(base: str, token: str) -> str:
    return f"{base.rstrip('/')}/console/invite/{token}"


@page(P.MANAGE_MEMBERS)
async def members(op: Operator) -> Response:
    people = op.services.people
    base = op.services.settings.console_public_url or str(op.request.base_url)
    invites = await people.list_invites(op.scope)
    links = {i.id: invite_url(base, t) for i in invites if (t := people.link_token(i)) is not None}
    views = await op.services.tenancy.list_workspaces(op.scope)
    return op.render(
        "members.html",
        nav="members",
        users=await people.list_users(op.scope),
        invites=invites,
        links=links,
        roles=ROLES,
        assignable=sorted(ASSIGNABLE_ROLES),
        workspace_roles=[r for r in WORKSPACE_ROLES if r != "workspace_billing"],
        workspaces=views,
        names={v.workspace.id: v.workspace.name for v in views},
        activity=await op.services.accounts.audit_log(op.organization_id),
    )


@page(P.MANAGE_MEMBERS)
async def create_invite(op: Operator) -> Response:
    email = op.text("email", required=True, label="Email")
    role = op.text("role", required=True, label="Role")
    workspace_id = op.text("workspace_id")
    grants = [(workspace_id, op.text("workspace_role") or "workspace_developer")] if workspace_id else []
    invite = await op.services.people.create_invite(op.scope, email, role, grants)
    return op.back(notice=f"Invite for {invite.email} created: copy its link below and send it to them.")


@page(P.MANAGE_MEMBERS)
async def new_invite_link(op: Operator) -> Response:
    invite = await op.services.people.new_link(op.scope, op.request.path_params["invite_id"])
    return op.back(notice=f"New link for {invite.email}; the old one no longer works.")


@page(P.MANAGE_MEMBERS)
async def delete_invite(op: Operator) -> Response:
    invite_id = op.request.path_params["invite_id"]
    await op.services.people.delete_invite(op.scope, invite_id)
    return op.back(notice=f"Invite {invite_id} deleted; its link no longer works.")


@page(P.MANAGE_MEMBERS)
async def update_member(op: Operator) -> Response:
    user_id = op.request.path_params["user_id"]
    role = op.text("role", required=True, label="Role")
    if role not in ASSIGNABLE_ROLES:
        raise InvalidRequest(f"Role: '{echo(role)}' is not one of {', '.join(sorted(ASSIGNABLE_ROLES))}")
    user = await op.services.people.update_user(op.scope, user_id, role)
    return op.back(notice=f"{user.email} is now {ROLES[user.role].display_name}.")
