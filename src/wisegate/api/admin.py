"""``/v1/organizations/…``: the Admin API (organization, workspaces, members, API keys, users, invites,
usage and cost reports).

Only admin keys (``sk-wg-admin01-…``) are accepted, and they act on the whole organization; an API key
is a 401 ``authentication_error``, as the Claude API answers one (its Admin API needs an Admin API key).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wisegate.api.auth import authenticate
from wisegate.api.body import parse
from wisegate.domain.paging import paginate
from wisegate.domain.reports import ReportQuery
from wisegate.domain.scope import Scope
from wisegate.domain.tenancy import WorkspaceView
from wisegate.errors import AuthenticationFailed, InvalidRequest
from wisegate.protocol.admin import (
    AddMemberBody,
    ApiKeyCreatedBy,
    ApiKeyOut,
    CreateApiKeyBody,
    CreatedApiKey,
    CreateInviteBody,
    CreateWorkspaceBody,
    InviteDeleted,
    InviteOut,
    OrganizationInfo,
    UpdateApiKeyBody,
    UpdateMemberBody,
    UpdateUserBody,
    UpdateWorkspaceBody,
    UserDeleted,
    UserOut,
    WorkspaceMemberDeleted,
    WorkspaceMemberOut,
    WorkspaceOut,
    WorkspaceScope,
)
from wisegate.protocol.resources import ListPage
from wisegate.records.directory import Invite, User, WorkspaceMember
from wisegate.records.tenancy import ApiKey
from wisegate.services import Services, services_of

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
ADMIN_BODY_BYTES = 1024 * 1024


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        workspace_id=key.workspace_id,
        scope=WorkspaceScope(workspace_id=key.workspace_id),
        created_at=_iso(key.created_at),
        created_by=ApiKeyCreatedBy(id=key.created_by_user_id, type="user")
        if key.created_by_user_id
        else None,
        partial_key_hint=key.partial_key_hint,
        status=key.status,
    )


def _workspace_out(view: WorkspaceView) -> WorkspaceOut:
    w = view.workspace
    return WorkspaceOut(
        id=w.id,
        name=w.name,
        display_color=view.display_color,
        created_at=_iso(w.created_at),
        archived_at=_iso(w.archived_at) if w.archived_at else None,
        compartment_id=w.id,
        allowed_models=list(view.allowed_models) if view.allowed_models is not None else None,
    )


def _member_out(member: WorkspaceMember) -> WorkspaceMemberOut:
    return WorkspaceMemberOut(
        user_id=member.user_id, workspace_id=member.workspace_id, workspace_role=member.workspace_role
    )


def _user_out(user: User) -> UserOut:
    return UserOut(id=user.id, email=user.email, name=user.name, role=user.role, added_at=_iso(user.added_at))


def _invite_out(invite: Invite) -> InviteOut:
    return InviteOut(
        id=invite.id,
        email=invite.email,
        role=invite.role,
        status=invite.status,
        invited_at=_iso(invite.invited_at),
        expires_at=_iso(invite.expires_at),
        accepted_at=_iso(invite.accepted_at) if invite.accepted_at else None,
    )


def _json(model: BaseModel) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")


async def _scope(request: Request) -> tuple[Services, Scope]:
    services = services_of(request)
    principal = await authenticate(request, services.keys, kind="any")
    if principal.key.kind != "admin":
        raise AuthenticationFailed(
            "The Admin API needs an admin key (sk-wg-admin01-…); API keys are not accepted here. "
            "Create one with: wisegate keys create --admin --name NAME"
        )
    return services, Scope.of(principal)


def _values(request: Request, name: str) -> list[str]:
    """An array query parameter, bracket style (``name[]=a&name[]=b``) or repeated (``name=a&name=b``)."""
    params = request.query_params
    return [v for v in params.getlist(f"{name}[]") + params.getlist(name) if v != ""]


def _int(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name}: Input should be a valid integer, got '{raw}'") from None
    if not low <= value <= high:
        raise InvalidRequest(f"{name}: Input should be between {low} and {high}, got {value}")
    return value


def _bool(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise InvalidRequest(f"{name}: Input should be a valid boolean, got '{raw}'")
    return raw in ("true", "1")


def _datetime(request: Request, name: str, *, required: bool) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        if required:
            raise InvalidRequest(f"{name}: Field required")
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise InvalidRequest(f"{name}: '{raw}' is not an RFC 3339 datetime") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _enum(request: Request, name: str, allowed: Sequence[str]) -> str | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if value not in allowed:
        raise InvalidRequest(f"{name}: Input should be {', '.join(repr(a) for a in allowed)}, got '{value}'")
    return value


def _page(
    request: Request, items: Sequence[T], id_of: Callable[[T], str], render: Callable[[T], M]
) -> Response:
    """``items`` paged by ``before_id``/``after_id``/``limit`` into the SyncPage envelope."""
    limit = _int(request, "limit", 20, 1, 1000)
    assert limit is not None
    page = paginate(
        items,
        id_of,
        limit=limit,
        before_id=request.query_params.get("before_id") or None,
        after_id=request.query_params.get("after_id") or None,
    )
    data = [render(item) for item in page.items]
    body: ListPage[Any] = ListPage(
        data=data,
        has_more=page.has_more,
        first_id=id_of(page.items[0]) if page.items else None,
        last_id=id_of(page.items[-1]) if page.items else None,
    )
    return Response(body.model_dump_json(), media_type="application/json")


async def get_organization(request: Request) -> Response:
    services, scope = await _scope(request)
    org = await services.tenancy.organization(scope)
    return _json(OrganizationInfo(id=org.id, name=org.name))


async def list_workspaces(request: Request) -> Response:
    services, scope = await _scope(request)
    views = await services.tenancy.list_workspaces(scope, include_archived=_bool(request, "include_archived"))
    if not _bool_default_true(request, "include_default"):
        views = [v for v in views if not v.is_default]
    ids = set(_values(request, "ids"))
    if ids:
        views = [v for v in views if v.workspace.id in ids]
    return _page(request, views, lambda v: v.workspace.id, _workspace_out)


def _bool_default_true(request: Request, name: str) -> bool:
    return request.query_params.get(name, "true").lower() not in ("false", "0")


async def create_workspace(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    body = await parse(request, CreateWorkspaceBody, ADMIN_BODY_BYTES)
    view = await services.tenancy.create_workspace(
        scope, body.name, display_color=body.display_color, allowed_models=body.allowed_models
    )
    return _json(_workspace_out(view))


async def get_workspace(request: Request) -> Response:
    services, scope = await _scope(request)
    view = await services.tenancy.get_workspace(scope, request.path_params["workspace_id"])
    return _json(_workspace_out(view))


async def update_workspace(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    body = await parse(request, UpdateWorkspaceBody, ADMIN_BODY_BYTES)
    view = await services.tenancy.update_workspace(
        scope,
        request.path_params["workspace_id"],
        name=body.name,
        display_color=body.display_color,
        allowed_models=body.allowed_models,
        clear_allowed_models="allowed_models" in body.model_fields_set and body.allowed_models is None,
    )
    return _json(_workspace_out(view))


async def archive_workspace(request: Request) -> Response:
    services, scope = await _scope(request)
    view = await services.tenancy.archive_workspace(scope, request.path_params["workspace_id"])
    return _json(_workspace_out(view))


async def list_members(request: Request) -> Response:
    services, scope = await _scope(request)
    members = await services.tenancy.list_members(scope, request.path_params["workspace_id"])
    return _page(request, members, lambda m: m.user_id, _member_out)


async def add_member(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    body = await parse(request, AddMemberBody, ADMIN_BODY_BYTES)
    member = await services.tenancy.add_member(
        scope, request.path_params["workspace_id"], body.user_id, body.workspace_role
    )
    return _json(_member_out(member))


async def get_member(request: Request) -> Response:
    services, scope = await _scope(request)
    params = request.path_params
    member = await services.tenancy.get_member(scope, params["workspace_id"], params["user_id"])
    return _json(_member_out(member))


async def update_member(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    body = await parse(request, UpdateMemberBody, ADMIN_BODY_BYTES)
    params = request.path_params
    member = await services.tenancy.update_member(
        scope, params["workspace_id"], params["user_id"], body.workspace_role
    )
    return _json(_member_out(member))


async def remove_member(request: Request) -> Response:
    services, scope = await _scope(request)
    params = request.path_params
    await services.tenancy.remove_member(scope, params["workspace_id"], params["user_id"])
    return _json(WorkspaceMemberDeleted(user_id=params["user_id"], workspace_id=params["workspace_id"]))


async def list_api_keys(request: Request) -> Response:
    services, scope = await _scope(request)
    keys = await services.tenancy.list_keys(
        scope,
        workspace_id=request.query_params.get("workspace_id") or None,
        status=_enum(request, "status", ("active", "inactive", "archived", "expired")),
        created_by_user_id=request.query_params.get("created_by_user_id") or None,
    )
    return _page(request, keys, lambda k: k.id, _key_out)


async def create_api_key(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    body = await parse(request, CreateApiKeyBody, ADMIN_BODY_BYTES)
    key, secret = await services.tenancy.create_key(scope, body.workspace_id, body.name)
    return _json(CreatedApiKey(**_key_out(key).model_dump(), secret=secret))


async def get_api_key(request: Request) -> Response:
    services, scope = await _scope(request)
    return _json(_key_out(await services.tenancy.get_key(scope, request.path_params["api_key_id"])))


async def update_api_key(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    body = await parse(request, UpdateApiKeyBody, ADMIN_BODY_BYTES)
    key = await services.tenancy.update_key(
        scope, request.path_params["api_key_id"], name=body.name, status=body.status
    )
    return _json(_key_out(key))


async def list_users(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    users = await services.people.list_users(
        scope, email=request.query_params.get("email") or None, roles=_values(request, "roles")
    )
    return _page(request, users, lambda u: u.id, _user_out)


async def get_user(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    return _json(_user_out(await services.people.get_user(scope, request.path_params["user_id"])))


async def update_user(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    body = await parse(request, UpdateUserBody, ADMIN_BODY_BYTES)
    return _json(
        _user_out(await services.people.update_user(scope, request.path_params["user_id"], body.role))
    )


async def remove_user(request: Request) -> Response:
    services, scope = await _scope(request)
    await services.people.remove_user(scope, request.path_params["user_id"])
    return _json(UserDeleted(id=request.path_params["user_id"]))


async def list_invites(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    statuses = _values(request, "statuses")
    for status in statuses:
        if status not in ("pending", "accepted", "expired"):
            raise InvalidRequest(f"statuses: '{status}' is not one of pending, accepted, expired")
    invites = await services.people.list_invites(
        scope,
        email=request.query_params.get("email") or None,
        roles=_values(request, "roles"),
        statuses=statuses,
    )
    return _page(request, invites, lambda i: i.id, _invite_out)


async def create_invite(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    body = await parse(request, CreateInviteBody, ADMIN_BODY_BYTES)
    if body.rbac_group_ids:
        raise InvalidRequest("rbac_group_ids: RBAC groups are not available in Wisegate")
    return _json(_invite_out(await services.people.create_invite(scope, body.email, body.role)))


async def get_invite(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    return _json(_invite_out(await services.people.get_invite(scope, request.path_params["invite_id"])))


async def delete_invite(request: Request) -> Response:
    services, scope = await _scope(request)
    await services.people.delete_invite(scope, request.path_params["invite_id"])
    return _json(InviteDeleted(id=request.path_params["invite_id"]))


def _report_query(request: Request, *, max_limit: int) -> ReportQuery:
    starting_at = _datetime(request, "starting_at", required=True)
    assert starting_at is not None
    return ReportQuery(
        starting_at=starting_at,
        ending_at=_datetime(request, "ending_at", required=False),
        bucket_width=request.query_params.get("bucket_width") or "1d",
        limit=_int(request, "limit", None, 1, max_limit),
        page=request.query_params.get("page") or None,
        group_by=_values(request, "group_by"),
        api_key_ids=_values(request, "api_key_ids"),
        workspace_ids=_values(request, "workspace_ids"),
        models=_values(request, "models"),
        service_tiers=_values(request, "service_tiers"),
        context_windows=_values(request, "context_window"),
        inference_geos=_values(request, "inference_geos"),
        speeds=_values(request, "speeds"),
        account_ids=_values(request, "account_ids"),
        service_account_ids=_values(request, "service_account_ids"),
    )


async def usage_report(request: Request) -> Response:
    services, scope = await _scope(request)
    return _json(await services.reports.usage(scope, _report_query(request, max_limit=1440)))


async def cost_report(request: Request) -> Response:
    services, scope = await _scope(request)
    return _json(await services.reports.cost(scope, _report_query(request, max_limit=31)))


def routes() -> list[Route]:
    prefix = "/v1/organizations"
    return [
        Route(f"{prefix}/me", get_organization, methods=["GET"]),
        Route(f"{prefix}/workspaces", list_workspaces, methods=["GET"]),
        Route(f"{prefix}/workspaces", create_workspace, methods=["POST"]),
        Route(f"{prefix}/workspaces/{{workspace_id}}", get_workspace, methods=["GET"]),
        Route(f"{prefix}/workspaces/{{workspace_id}}", update_workspace, methods=["POST"]),
        Route(f"{prefix}/workspaces/{{workspace_id}}/archive", archive_workspace, methods=["POST"]),
        Route(f"{prefix}/workspaces/{{workspace_id}}/members", list_members, methods=["GET"]),
        Route(f"{prefix}/workspaces/{{workspace_id}}/members", add_member, methods=["POST"]),
        Route(f"{prefix}/workspaces/{{workspace_id}}/members/{{user_id}}", get_member, methods=["GET"]),
        Route(f"{prefix}/workspaces/{{workspace_id}}/members/{{user_id}}", update_member, methods=["POST"]),
        Route(f"{prefix}/workspaces/{{workspace_id}}/members/{{user_id}}", remove_member, methods=["DELETE"]),
        Route(f"{prefix}/api_keys", list_api_keys, methods=["GET"]),
        Route(f"{prefix}/api_keys", create_api_key, methods=["POST"]),
        Route(f"{prefix}/api_keys/{{api_key_id}}", get_api_key, methods=["GET"]),
        Route(f"{prefix}/api_keys/{{api_key_id}}", update_api_key, methods=["POST"]),
        Route(f"{prefix}/users", list_users, methods=["GET"]),
        Route(f"{prefix}/users/{{user_id}}", get_user, methods=["GET"]),
        Route(f"{prefix}/users/{{user_id}}", update_user, methods=["POST"]),
        Route(f"{prefix}/users/{{user_id}}", remove_user, methods=["DELETE"]),
        Route(f"{prefix}/invites", list_invites, methods=["GET"]),
        Route(f"{prefix}/invites", create_invite, methods=["POST"]),
        Route(f"{prefix}/invites/{{invite_id}}", get_invite, methods=["GET"]),
        Route(f"{prefix}/invites/{{invite_id}}", delete_invite, methods=["DELETE"]),
        Route(f"{prefix}/usage_report/messages", usage_report, methods=["GET"]),
        Route(f"{prefix}/cost_report", cost_report, methods=["GET"]),
    ]
