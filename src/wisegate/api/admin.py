"""``/v1/organizations/…``: the Admin API (organization, workspaces, members, API keys, users, invites,
usage and cost reports).

Only admin keys (``sk-wg-admin01-…``) are accepted, and they act on the whole organization; an API key
is a 401 ``authentication_error``, as the Claude API answers one (its Admin API needs an Admin API key).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wisegate.api.auth import authenticate
from wisegate.api.body import parse
from wisegate.api.paging import (
    query_bool,
    query_bool_default_true,
    query_datetime,
    query_enum,
    query_int,
    query_values,
)
from wisegate.api.render import json_response
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
    ServiceAccountActor,
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
from wisegate.protocol.bounds import echo
from wisegate.protocol.resources import ListPage, rfc3339
from wisegate.records.directory import Invite, User, WorkspaceMember
from wisegate.records.tenancy import ApiKey
from wisegate.services import Services, services_of

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
ADMIN_BODY_BYTES = 1024 * 1024


def _key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        workspace_id=key.workspace_id,
        scope=WorkspaceScope(workspace_id=key.workspace_id),
        created_at=rfc3339(key.created_at),
        created_by=ApiKeyCreatedBy(id=key.created_by_user_id, type="user")
        if key.created_by_user_id
        else None,
        partial_key_hint=key.partial_key_hint,
        principal=ServiceAccountActor(service_account_id=key.service_account_id)
        if key.service_account_id
        else None,
        status=key.status,
    )


def _workspace_out(view: WorkspaceView) -> WorkspaceOut:
    w = view.workspace
    return WorkspaceOut(
        id=w.id,
        name=w.name,
        display_color=view.display_color,
        created_at=rfc3339(w.created_at),
        archived_at=rfc3339(w.archived_at) if w.archived_at else None,
        compartment_id=w.id,
        allowed_models=list(view.allowed_models) if view.allowed_models is not None else None,
    )


def _member_out(member: WorkspaceMember) -> WorkspaceMemberOut:
    return WorkspaceMemberOut(
        user_id=member.user_id, workspace_id=member.workspace_id, workspace_role=member.workspace_role
    )


def _user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id, email=user.email, name=user.name, role=user.role, added_at=rfc3339(user.added_at)
    )


def _invite_out(invite: Invite) -> InviteOut:
    return InviteOut(
        id=invite.id,
        email=invite.email,
        role=invite.role,
        status=invite.status,
        invited_at=rfc3339(invite.invited_at),
        expires_at=rfc3339(invite.expires_at),
        accepted_at=rfc3339(invite.accepted_at) if invite.accepted_at else None,
    )


async def _scope(request: Request) -> tuple[Services, Scope]:
    services = services_of(request)
    principal = await authenticate(request, services.keys, kind="any")
    if principal.key.kind != "admin":
        raise AuthenticationFailed(
            "The Admin API needs an admin key (sk-wg-admin01-…); API keys are not accepted here. "
            "Create one with: wisegate keys create --admin --name NAME"
        )
    request.state.principal = principal  # who changed what, for the audit record
    return services, Scope.of(principal)


def _page(
    request: Request, items: Sequence[T], id_of: Callable[[T], str], render: Callable[[T], M]
) -> Response:
    """``items`` paged by ``before_id``/``after_id``/``limit`` into the SyncPage envelope."""
    limit = query_int(request, "limit", 20, 1, 1000)
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
    return json_response(body)


async def get_organization(request: Request) -> Response:
    services, scope = await _scope(request)
    org = await services.tenancy.organization(scope)
    return json_response(OrganizationInfo(id=org.id, name=org.name))


async def list_workspaces(request: Request) -> Response:
    services, scope = await _scope(request)
    views = await services.tenancy.list_workspaces(
        scope, include_archived=query_bool(request, "include_archived")
    )
    if not query_bool_default_true(request, "include_default"):
        views = [v for v in views if not v.is_default]
    ids = set(query_values(request, "ids"))
    if ids:
        views = [v for v in views if v.workspace.id in ids]
    return _page(request, views, lambda v: v.workspace.id, _workspace_out)


async def create_workspace(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    body = await parse(request, CreateWorkspaceBody, ADMIN_BODY_BYTES)
    view = await services.tenancy.create_workspace(
        scope, body.name, display_color=body.display_color, allowed_models=body.allowed_models
    )
    return json_response(_workspace_out(view))


async def get_workspace(request: Request) -> Response:
    services, scope = await _scope(request)
    view = await services.tenancy.get_workspace(scope, request.path_params["workspace_id"])
    return json_response(_workspace_out(view))


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
    return json_response(_workspace_out(view))


async def archive_workspace(request: Request) -> Response:
    services, scope = await _scope(request)
    view = await services.tenancy.archive_workspace(scope, request.path_params["workspace_id"])
    return json_response(_workspace_out(view))


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
    return json_response(_member_out(member))


async def get_member(request: Request) -> Response:
    services, scope = await _scope(request)
    params = request.path_params
    member = await services.tenancy.get_member(scope, params["workspace_id"], params["user_id"])
    return json_response(_member_out(member))


async def update_member(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    body = await parse(request, UpdateMemberBody, ADMIN_BODY_BYTES)
    params = request.path_params
    member = await services.tenancy.update_member(
        scope, params["workspace_id"], params["user_id"], body.workspace_role
    )
    return json_response(_member_out(member))


async def remove_member(request: Request) -> Response:
    services, scope = await _scope(request)
    params = request.path_params
    await services.tenancy.remove_member(scope, params["workspace_id"], params["user_id"])
    return json_response(
        WorkspaceMemberDeleted(user_id=params["user_id"], workspace_id=params["workspace_id"])
    )


async def list_api_keys(request: Request) -> Response:
    services, scope = await _scope(request)
    keys = await services.tenancy.list_keys(
        scope,
        workspace_id=request.query_params.get("workspace_id") or None,
        status=query_enum(request, "status", ("active", "inactive", "archived", "expired")),
        created_by_user_id=request.query_params.get("created_by_user_id") or None,
    )
    return _page(request, keys, lambda k: k.id, _key_out)


async def create_api_key(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    body = await parse(request, CreateApiKeyBody, ADMIN_BODY_BYTES)
    if body.service_account_id is not None:
        key, secret = await services.service_accounts.create_key(
            scope, body.service_account_id, body.workspace_id, body.name
        )
    else:
        key, secret = await services.tenancy.create_key(scope, body.workspace_id, body.name)
    return json_response(CreatedApiKey(**_key_out(key).model_dump(), secret=secret))


async def get_api_key(request: Request) -> Response:
    services, scope = await _scope(request)
    return json_response(_key_out(await services.tenancy.get_key(scope, request.path_params["api_key_id"])))


async def update_api_key(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    body = await parse(request, UpdateApiKeyBody, ADMIN_BODY_BYTES)
    key = await services.tenancy.update_key(
        scope, request.path_params["api_key_id"], name=body.name, status=body.status
    )
    return json_response(_key_out(key))


async def list_users(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    users = await services.people.list_users(
        scope, email=request.query_params.get("email") or None, roles=query_values(request, "roles")
    )
    return _page(request, users, lambda u: u.id, _user_out)


async def get_user(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    return json_response(_user_out(await services.people.get_user(scope, request.path_params["user_id"])))


async def update_user(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    body = await parse(request, UpdateUserBody, ADMIN_BODY_BYTES)
    return json_response(
        _user_out(await services.people.update_user(scope, request.path_params["user_id"], body.role))
    )


async def remove_user(request: Request) -> Response:
    services, scope = await _scope(request)
    await services.people.remove_user(scope, request.path_params["user_id"])
    await services.tenancy.archive_keys(scope, user_id=request.path_params["user_id"])  # a leaver's keys stop
    return json_response(UserDeleted(id=request.path_params["user_id"]))


async def list_invites(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    statuses = query_values(request, "statuses")
    for status in statuses:
        if status not in ("pending", "accepted", "expired"):
            raise InvalidRequest(f"statuses: '{echo(status)}' is not one of pending, accepted, expired")
    invites = await services.people.list_invites(
        scope,
        email=request.query_params.get("email") or None,
        roles=query_values(request, "roles"),
        statuses=statuses,
    )
    return _page(request, invites, lambda i: i.id, _invite_out)


async def create_invite(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    body = await parse(request, CreateInviteBody, ADMIN_BODY_BYTES)
    if body.rbac_group_ids:
        raise InvalidRequest("rbac_group_ids: RBAC groups are not available in Wisegate")
    return json_response(_invite_out(await services.people.create_invite(scope, body.email, body.role)))


async def get_invite(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    return json_response(
        _invite_out(await services.people.get_invite(scope, request.path_params["invite_id"]))
    )


async def delete_invite(request: Request) -> Response:
    services, scope = await _scope(request)
    await services.people.delete_invite(scope, request.path_params["invite_id"])
    return json_response(InviteDeleted(id=request.path_params["invite_id"]))


def _report_query(request: Request, *, max_limit: int) -> ReportQuery:
    starting_at = query_datetime(request, "starting_at", required=True)
    assert starting_at is not None
    return ReportQuery(
        starting_at=starting_at,
        ending_at=query_datetime(request, "ending_at", required=False),
        bucket_width=request.query_params.get("bucket_width") or "1d",
        limit=query_int(request, "limit", None, 1, max_limit),
        page=request.query_params.get("page") or None,
        group_by=query_values(request, "group_by"),
        api_key_ids=query_values(request, "api_key_ids"),
        workspace_ids=query_values(request, "workspace_ids"),
        models=query_values(request, "models"),
        service_tiers=query_values(request, "service_tiers"),
        context_windows=query_values(request, "context_window"),
        inference_geos=query_values(request, "inference_geos"),
        speeds=query_values(request, "speeds"),
        account_ids=query_values(request, "account_ids"),
        service_account_ids=query_values(request, "service_account_ids"),
    )


async def usage_report(request: Request) -> Response:
    services, scope = await _scope(request)
    return json_response(await services.reports.usage(scope, _report_query(request, max_limit=1440)))


async def cost_report(request: Request) -> Response:
    services, scope = await _scope(request)
    return json_response(await services.reports.cost(scope, _report_query(request, max_limit=31)))


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
