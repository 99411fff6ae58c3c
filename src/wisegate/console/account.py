"""Account Settings: profile, password, open sessions, and the person's own API keys.

Anyone signed in as a person may open it. Keys made here belong to the person
(``created_by``); they are made in a workspace where the person's role lets them make keys, and only
their maker (or a workspace admin, on the API keys page) renames or disables them. Enabling a disabled
key again takes ``workspace:keys:manage`` there (a workspace or organization admin): a key disabled for
cause is not brought back by its owner.
"""

from __future__ import annotations

from starlette.responses import Response

from wisegate.console.session import COOKIE
from wisegate.console.web import Operator, cookie_options, page
from wisegate.domain.accounts import PASSWORD_MIN
from wisegate.domain.pricing import format_amount
from wisegate.domain.roles import ROLES
from wisegate.domain.roles import Permission as P
from wisegate.domain.spend_limits import parse_limit_usd
from wisegate.domain.tenancy import key_not_found
from wisegate.errors import InvalidRequest, NotFound, PermissionDenied
from wisegate.protocol.bounds import echo
from wisegate.records.tenancy import ApiKey

OWN_KEYS = (P.CREATE_OWN_KEYS, P.MANAGE_KEYS)


async def _page(op: Operator, created: tuple[ApiKey, str] | None = None, status: int = 200) -> Response:
    assert op.viewer.user is not None
    views = await op.services.tenancy.list_workspaces(op.scope, include_archived=True)
    names = {v.workspace.id: v.workspace.name for v in views}
    usable = set(op.workspaces_allowing(*OWN_KEYS))
    mine = await op.services.tenancy.list_keys(op.scope, created_by_user_id=op.viewer.user.id)
    asked = await op.services.spend_limits.list_requests(op.scope, actor_ids=[op.viewer.user.id])
    member_of = set(op.viewer.access.workspace_roles)
    return op.render(
        "account.html",
        status,
        nav="account",
        user=op.viewer.user,
        role=ROLES[op.viewer.user.role],
        workspace_roles={
            names.get(w, w): [ROLES[r].display_name for r in roles]
            for w, roles in op.viewer.access.workspace_roles.items()
        },
        member_pages={
            names.get(w, w): w for w in op.workspaces_allowing(P.MANAGE_WORKSPACE_MEMBERS) if w in names
        },
        sessions=await op.services.accounts.sessions(op.viewer),
        current_session=op.viewer.session.id,
        keys=mine,
        names=names,
        key_workspaces=[v for v in views if v.workspace.id in usable and v.workspace.archived_at is None],
        limit_workspaces=[
            v for v in views if v.workspace.id in member_of and v.workspace.archived_at is None
        ],
        spend_requests=asked,
        usd=format_amount,
        created=created,
        activity=await op.services.accounts.audit_log(op.organization_id, actor_id=op.viewer.user.id),
        password_min=PASSWORD_MIN,
        base_url=str(op.request.base_url).rstrip("/"),
    )


@page(person=True)
async def account(op: Operator) -> Response:
    return await _page(op)


@page(person=True)
async def update_profile(op: Operator) -> Response:
    user = await op.services.accounts.rename(
        op.viewer, op.text("name", required=True, label="Name"), op.client
    )
    return op.back(notice=f"Your name is now “{user.name}”.")


@page(person=True)
async def change_password(op: Operator) -> Response:
    """Every session of the person ends (a copied cookie stops working); this browser gets a new one."""
    current = str(op.form.get("current_password") or "")
    new = str(op.form.get("new_password") or "")
    if new != str(op.form.get("confirm_password") or ""):
        raise InvalidRequest("New password: the two entries differ")
    token, _ = await op.services.accounts.change_password(op.viewer, current, new, op.client)
    response = op.back(notice="Password changed. Every other session of yours has been signed out.")
    response.set_cookie(
        COOKIE,
        token,
        max_age=op.services.accounts.session_seconds,
        path="/console",
        **cookie_options(op.request),
    )
    return response


@page(person=True)
async def end_session(op: Operator) -> Response:
    await op.services.accounts.end_session(op.viewer, op.request.path_params["session_id"], op.client)
    return op.back(notice="That session is signed out.")


@page(person=True)
async def end_other_sessions(op: Operator) -> Response:
    ended = await op.services.accounts.sign_out_others(op.viewer, op.client)
    return op.back(notice=f"Signed out {ended} other session{'s' if ended != 1 else ''}.")


def _key_name(op: Operator) -> str:
    return op.text("name", required=True, label="Name")  # its bounds: the domain's (KEY_NAME_LENGTH)


@page(*OWN_KEYS, person=True)
async def create_my_key(op: Operator) -> Response:
    """A key of the person's in a workspace they may make keys in; its secret is shown once."""
    name = _key_name(op)
    workspace_id = op.text("workspace_id", required=True, label="Workspace")
    if not any(op.allows(p, workspace_id) for p in OWN_KEYS):
        raise InvalidRequest("Workspace: your role does not let you make keys there")
    key, secret = await op.services.tenancy.create_key(
        op.scope, workspace_id, name, created_by_user_id=op.user_id
    )
    return await _page(op, created=(key, secret))


@page(person=True)
async def update_my_key(op: Operator) -> Response:
    """Rename one's own key, or disable (``inactive``) / enable it again."""
    key_id = op.request.path_params["key_id"]
    key = await op.services.tenancy.get_key(op.scope, key_id)
    if key.created_by_user_id != op.user_id:
        raise key_not_found(key_id)  # as for no such key: the form tells nothing of others' keys
    if not any(op.allows(p, key.workspace_id) for p in OWN_KEYS):
        raise InvalidRequest("Your role no longer lets you manage keys in that workspace")
    status = op.text("status") or None
    if status not in (None, "active", "inactive"):
        raise InvalidRequest(f"Status: '{echo(status)}' is not one of active, inactive")
    if status == "active" and key.status != "active" and not op.allows(P.MANAGE_KEYS, key.workspace_id):
        # A key may have been disabled for cause (by an admin, or by its owner after a leak): only those
        # who manage the workspace's keys bring it back.
        raise PermissionDenied(
            f"Key {key.id} is disabled; only an admin of its workspace (or of the organization) can enable "
            "it again. Ask them, or create a new key."
        )
    name = _key_name(op) if status is None else None
    updated = await op.services.tenancy.update_key(op.scope, key_id, name=name, status=status)
    what = f"renamed to “{updated.name}”" if name else f"now {updated.status}"
    return op.back(notice=f"Key {updated.id} is {what}.")


@page(person=True)
async def ask_spend_limit(op: Operator) -> Response:
    """Ask billing or an admin for a higher monthly spend limit of a workspace one works in."""
    assert op.viewer.user is not None
    workspace_id = op.text("workspace_id", required=True, label="Workspace")
    if workspace_id not in op.viewer.access.workspace_roles:
        raise NotFound(f"workspace {echo(workspace_id)} not found")
    amount = op.usd_pico("usd", label="Monthly limit asked for", parse=parse_limit_usd)
    reason = op.text("reason", required=True, label="Reason")
    await op.services.spend_limits.ask(op.organization_id, op.viewer.user.id, workspace_id, amount, reason)
    return op.back(notice="Asked for a higher spend limit; billing and admins see it on their Limits page.")
