"""Members: the organization's people, their roles, invites with their accept links, and the audit record.

The same ``PeopleService`` calls as ``/v1/organizations/users`` and ``…/invites`` and ``wisegate invites
create``; a role change (``admin`` included) is ``AccountService.change_role``, as ``wisegate users
set-role``. Admins only (``organization:members:manage``).

A workspace's members page (``/console/workspaces/{id}/members``) adds and removes members and sets their
workspace roles, for those with ``workspace:members:manage`` in that workspace (its admins, and the
organization's); anyone else gets 403, for a workspace that exists or not.
"""

from __future__ import annotations

from starlette.responses import Response

from wisegate.console.web import Operator, page, redirect
from wisegate.domain.people import ASSIGNABLE_ROLES
from wisegate.domain.roles import ORGANIZATION_ROLES, ROLES, WORKSPACE_ROLES
from wisegate.domain.roles import Permission as P


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
        organization_roles=ORGANIZATION_ROLES,
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
    """Any organization role, ``admin`` included; the last admin keeps theirs (the domain says why)."""
    user_id = op.request.path_params["user_id"]
    role = op.text("role", required=True, label="Role")
    user = await op.services.accounts.change_role(op.organization_id, op.viewer, user_id, role, op.client)
    notice = f"{user.email} is now {ROLES[user.role].display_name}."
    if user.id == op.user_id and P.MANAGE_MEMBERS not in ROLES[user.role].permissions:
        return redirect(op.request, "/console/account", notice=notice)  # this page is no longer theirs
    return op.back(notice=notice)


WORKSPACE_MEMBER_ROLES = tuple(r for r in WORKSPACE_ROLES if r != "workspace_billing")


def _workspace_id(op: Operator) -> str:
    """The page's workspace, once the viewer may manage its members there (403 otherwise — also for a
    workspace that does not exist or is archived, so its existence does not show)."""
    workspace_id: str = op.request.path_params["workspace_id"]
    op.require(P.MANAGE_WORKSPACE_MEMBERS, workspace_id)
    return workspace_id


@page(P.MANAGE_WORKSPACE_MEMBERS)
async def workspace_members(op: Operator) -> Response:
    """A workspace's members and their workspace roles; add, change, remove (``workspace:members:manage``
    there: that workspace's admins and the organization's)."""
    workspace_id = _workspace_id(op)
    view = await op.services.tenancy.get_workspace(op.scope, workspace_id)
    members = await op.services.tenancy.list_members(op.scope, workspace_id)
    users = await op.services.people.list_users(op.scope)
    joined = {m.user_id for m in members}
    return op.render(
        "workspace_members.html",
        nav="members" if op.allows(P.MANAGE_MEMBERS) else "account",
        view=view,
        members=members,
        people={u.id: u for u in users},
        candidates=sorted((u for u in users if u.id not in joined), key=lambda u: u.email),
        roles=ROLES,
        workspace_roles=WORKSPACE_MEMBER_ROLES,
    )


@page(P.MANAGE_WORKSPACE_MEMBERS)
async def add_workspace_member(op: Operator) -> Response:
    workspace_id = _workspace_id(op)
    user_id = op.text("user_id", required=True, label="Person")
    role = op.text("workspace_role", required=True, label="Workspace role")
    await op.services.tenancy.add_member(op.scope, workspace_id, user_id, role)
    user = await op.services.people.get_user(op.scope, user_id)
    return op.back(notice=f"{user.email} is now a member ({ROLES[role].display_name}).")


@page(P.MANAGE_WORKSPACE_MEMBERS)
async def update_workspace_member(op: Operator) -> Response:
    workspace_id = _workspace_id(op)
    user_id = op.request.path_params["user_id"]
    role = op.text("workspace_role", required=True, label="Workspace role")
    await op.services.tenancy.update_member(op.scope, workspace_id, user_id, role)
    user = await op.services.people.get_user(op.scope, user_id)
    return op.back(notice=f"{user.email} is now {ROLES[role].display_name} here.")


@page(P.MANAGE_WORKSPACE_MEMBERS)
async def remove_workspace_member(op: Operator) -> Response:
    workspace_id = _workspace_id(op)
    user_id = op.request.path_params["user_id"]
    user = await op.services.people.get_user(op.scope, user_id)
    await op.services.tenancy.remove_member(op.scope, workspace_id, user_id)
    return op.back(notice=f"{user.email} is no longer a member of this workspace.")
