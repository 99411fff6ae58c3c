"""``/v1/organizations/…``, the newer resources of SDK 2.10: rate limits, spend limits and increase
requests, RBAC roles and groups (service accounts: ``service_accounts.py``) — and the answer for the
resources Wisegate does not offer (analytics, compliance settings, external keys, federation): 400
``invalid_request_error`` with ``error.details.error_code`` ``organization_type_not_supported``, as
Anthropic answers an organization that cannot use a resource.

Lists here are ``{data, next_page}`` pages: ``limit`` and ``page`` (the previous ``next_page``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wisegate.api.admin import ADMIN_BODY_BYTES, _scope
from wisegate.api.body import parse
from wisegate.api.cursor import cursor_page
from wisegate.api.paging import query_bool, query_enum, query_values
from wisegate.api.render import json_response
from wisegate.domain.rate_limits import RateLimitEntry, WorkspaceRateLimitEntry
from wisegate.domain.rbac import UNAVAILABLE_GROUPS
from wisegate.domain.roles import Role
from wisegate.domain.spend_limits import Actor, RequestView, Summary, cents, pico_of_cents
from wisegate.errors import InvalidRequest
from wisegate.protocol.bounds import echo
from wisegate.protocol.organization import (
    AddGroupMemberBody,
    ApproveBody,
    ApprovedIncreaseRequestOut,
    DenyBody,
    KeyActor,
    LimitSource,
    OrganizationRateLimitOut,
    PermissionResource,
    RateLimitGroup,
    RateLimitValue,
    RBACGroupMemberOut,
    RBACGroupOut,
    RBACRoleOut,
    RBACRolePermissionOut,
    SpendLimitIncreaseRequestOut,
    SpendLimitOut,
    SpendScope,
    SpendSummaryOut,
    UpdateWorkspaceRateLimitBody,
    UserActor,
    WorkspaceRateLimitOut,
    WorkspaceRateLimitValue,
)
from wisegate.protocol.resources import rfc3339
from wisegate.records.directory import User

T = TypeVar("T")
GROUP_TYPES = ("batch", "files", "model_group", "skills", "token_count", "web_search")
UNAVAILABLE = {
    "analytics": "Claude apps analytics (Claude, Claude Code, Cowork usage) are not available in Wisegate",
    "compliance_settings": "compliance settings are not available in Wisegate",
    "external_keys": "external (customer-managed) encryption keys are not available in Wisegate",
    "federation": (
        "workload identity federation is not available in Wisegate; use a service account's API key"
    ),
}


def _unavailable(message: str) -> InvalidRequest:
    return InvalidRequest(message, details={"error_code": "organization_type_not_supported"})


def _group(entry: RateLimitEntry) -> RateLimitGroup:
    return RateLimitGroup(id=f"rlg_{entry.model_class}", display_name=entry.model_class)


def _org_limit_out(entry: RateLimitEntry) -> OrganizationRateLimitOut:
    return OrganizationRateLimitOut(
        id=entry.id,
        group=_group(entry),
        limits=[RateLimitValue(type=t, value=v) for t, v in entry.limits.items()],
        models=entry.models,
    )


def _ws_limit_out(found: WorkspaceRateLimitEntry) -> WorkspaceRateLimitOut:
    return WorkspaceRateLimitOut(
        rate_limit_id=found.entry.id,
        workspace_id=found.workspace_id,
        group=_group(found.entry),
        models=found.entry.models,
        limits=[
            WorkspaceRateLimitValue(
                type=v.type,
                value=v.value,
                org_limit=v.org_limit,
                source=LimitSource(type="workspace" if v.overridden else "organization"),
            )
            for v in found.limits
        ],
    )


def _group_type(request: Request) -> str | None:
    return query_enum(request, "group_type", GROUP_TYPES)


async def list_rate_limits(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    entries = await services.rate_limits.organization(
        scope, group_type=_group_type(request), model=request.query_params.get("model") or None
    )
    return cursor_page(request, entries, _org_limit_out, default=None)


async def list_workspace_rate_limits(request: Request) -> Response:
    services, scope = await _scope(request)
    found = await services.rate_limits.workspace(
        scope,
        request.path_params["workspace_id"],
        group_type=_group_type(request),
        include_inherited=query_bool(request, "include_inherited"),
    )
    return cursor_page(request, found, _ws_limit_out, default=None)


async def update_workspace_rate_limit(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    body = await parse(request, UpdateWorkspaceRateLimitBody, ADMIN_BODY_BYTES)
    changes: dict[str, int | None] = {item.type: item.value for item in body.limits}
    found = await services.rate_limits.set_workspace(
        scope, request.path_params["workspace_id"], request.path_params["rate_limit_id"], changes
    )
    return json_response(_ws_limit_out(found))


def _actor_out(actor: Actor) -> UserActor:
    user = actor.user
    return UserActor(
        user_id=actor.id,
        name=user.name if user else None,
        email_address=user.email if user else None,
        deleted=user is None,
    )


def _resolver_out(actor: Actor | None) -> UserActor | KeyActor | None:
    if actor is None:
        return None
    if actor.type == "user":
        return _actor_out(actor)
    return KeyActor(scoped_api_key_id=actor.id)


def _summary_out(summary: Summary) -> SpendSummaryOut:
    scope = SpendScope(type=summary.scope, workspace_id=summary.workspace_id)
    return SpendSummaryOut(
        actor=_actor_out(summary.actor),
        amount=cents(summary.amount_pico) if summary.amount_pico is not None else None,
        period_to_date_spend=cents(summary.spent_pico),
        scope=scope,
        source=scope,
        spend_limit_id=summary.spend_limit_id,
    )


def _request_fields(view: RequestView) -> dict[str, Any]:
    r = view.request
    return {
        "id": r.id,
        "actor": _actor_out(view.actor),
        "created_at": rfc3339(r.created_at),
        "status": r.status,
        "resolved_at": rfc3339(r.resolved_at) if r.resolved_at else None,
        "resolved_by": _resolver_out(view.resolved_by),
        "spend_summary": _summary_out(view.summary) if view.summary else None,
        "requested_amount": cents(r.requested_pico) if r.requested_pico is not None else None,
        "reason": r.reason,
    }


def _request_out(view: RequestView) -> SpendLimitIncreaseRequestOut:
    return SpendLimitIncreaseRequestOut(**_request_fields(view))


def _key_actor(request: Request) -> Actor:
    return Actor("scoped_api_key_actor", request.state.principal.key.id)


async def effective_spend_limits(request: Request) -> Response:
    services, scope = await _scope(request)
    periods = query_values(request, "period")
    for period in periods:
        if period not in ("daily", "weekly", "monthly"):
            raise InvalidRequest(f"period: '{echo(period)}' is not one of daily, weekly, monthly")
    user_ids = query_values(request, "user_ids")
    if len(user_ids) > 100:
        raise InvalidRequest("user_ids: at most 100 entries")
    rows = await services.spend_limits.effective(scope, user_ids=user_ids, periods=periods)
    return cursor_page(request, rows, _summary_out, default=20)


async def list_increase_requests(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    views = await services.spend_limits.list_requests(
        scope, actor_ids=query_values(request, "actor_ids"), statuses=query_values(request, "status")
    )
    return cursor_page(request, views, _request_out, default=20)


async def get_increase_request(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    view = await services.spend_limits.get(scope, request.path_params["request_id"])
    return json_response(_request_out(view))


async def approve_increase_request(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    body = await parse(request, ApproveBody, ADMIN_BODY_BYTES)
    view, limit = await services.spend_limits.approve(
        scope,
        request.path_params["request_id"],
        pico_of_cents(body.amount),
        _key_actor(request),
        period=body.period,
    )
    spend_limit = SpendLimitOut(
        id=f"spl_{limit.workspace_id}",
        amount=cents(limit.amount_pico) if limit.amount_pico is not None else None,
        scope=SpendScope(type="workspace", workspace_id=limit.workspace_id),
        created_at=rfc3339(view.request.created_at),
        updated_at=rfc3339(limit.updated_at),
    )
    return json_response(ApprovedIncreaseRequestOut(**_request_fields(view), spend_limit=spend_limit))


async def deny_increase_request(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    await parse(request, DenyBody, ADMIN_BODY_BYTES)
    view = await services.spend_limits.deny(scope, request.path_params["request_id"], _key_actor(request))
    return json_response(_request_out(view))


def _role_out(role: Role, organization_created: datetime) -> RBACRoleOut:
    stamp = rfc3339(organization_created)
    return RBACRoleOut(
        id=role.id,
        display_name=role.display_name,
        created_at=stamp,
        updated_at=stamp,
        level=role.level,
        description=role.description,
    )


def _group_out(role: Role, organization_created: datetime) -> RBACGroupOut:
    stamp = rfc3339(organization_created)
    return RBACGroupOut(
        id=f"rbacgrp_{role.id}",
        name=role.display_name,
        role_ids=[role.id],
        created_at=stamp,
        updated_at=stamp,
    )


def _group_member_out(group_id: str) -> Callable[[User], RBACGroupMemberOut]:
    def render(user: User) -> RBACGroupMemberOut:
        return RBACGroupMemberOut(
            rbac_group_id=group_id, user_id=user.id, email=user.email, created_at=rfc3339(user.added_at)
        )

    return render


async def list_roles(request: Request) -> Response:
    services, scope = await _scope(request)
    roles = services.rbac.roles(scope)
    created = (await services.tenancy.organization(scope)).created_at
    return cursor_page(request, roles, lambda r: _role_out(r, created), default=20)


async def get_role(request: Request) -> Response:
    services, scope = await _scope(request)
    role = services.rbac.role(scope, request.path_params["role_id"])
    return json_response(_role_out(role, (await services.tenancy.organization(scope)).created_at))


async def list_role_permissions(request: Request) -> Response:
    services, scope = await _scope(request)
    permissions = services.rbac.permissions(scope, request.path_params["role_id"])
    resource = PermissionResource(organization_id=scope.organization_id)
    return cursor_page(
        request, permissions, lambda p: RBACRolePermissionOut(action=p.value, resource=resource), default=20
    )


async def list_groups(request: Request) -> Response:
    services, scope = await _scope(request)
    groups = services.rbac.groups(scope)
    created = (await services.tenancy.organization(scope)).created_at
    return cursor_page(request, groups, lambda r: _group_out(r, created), default=20)


async def get_group(request: Request) -> Response:
    services, scope = await _scope(request)
    role = services.rbac.group(scope, request.path_params["group_id"])
    return json_response(_group_out(role, (await services.tenancy.organization(scope)).created_at))


async def change_groups(request: Request) -> Response:
    """Create, rename or delete a group: groups are the role table here."""
    services, scope = await _scope(request)
    scope.require_admin()
    if "group_id" in request.path_params:
        services.rbac.group(scope, request.path_params["group_id"])  # 404 for an unknown group first
    raise _unavailable(UNAVAILABLE_GROUPS)


async def list_group_members(request: Request) -> Response:
    services, scope = await _scope(request)
    group_id = request.path_params["group_id"]
    users = await services.rbac.members(scope, group_id)
    return cursor_page(request, users, _group_member_out(group_id), default=20)


async def add_group_member(request: Request) -> Response:
    services, scope = await _scope(request)
    body = await parse(request, AddGroupMemberBody, ADMIN_BODY_BYTES)
    group_id = request.path_params["group_id"]
    user = await services.rbac.add_member(scope, group_id, body.user_id)
    return json_response(_group_member_out(group_id)(user))


async def remove_group_member(request: Request) -> Response:
    services, scope = await _scope(request)
    params = request.path_params
    await services.rbac.refuse_removal(scope, params["group_id"], params["user_id"])


def _unavailable_endpoint(feature: str) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        _services, scope = await _scope(request)
        scope.require_admin()
        raise _unavailable(UNAVAILABLE[feature])

    endpoint.__name__ = f"unavailable_{feature}"
    return endpoint


def routes() -> list[Route]:
    prefix = "/v1/organizations"
    ws = f"{prefix}/workspaces/{{workspace_id}}"
    slir = f"{prefix}/spend_limit_increase_requests/{{request_id}}"
    group = f"{prefix}/rbac_groups/{{group_id}}"
    found: list[Route] = [
        Route(f"{prefix}/rate_limits", list_rate_limits, methods=["GET"]),
        Route(f"{ws}/rate_limits", list_workspace_rate_limits, methods=["GET"]),
        Route(f"{ws}/rate_limits/{{rate_limit_id}}", update_workspace_rate_limit, methods=["POST"]),
        Route(f"{prefix}/spend_limits/effective", effective_spend_limits, methods=["GET"]),
        Route(f"{prefix}/spend_limit_increase_requests", list_increase_requests, methods=["GET"]),
        Route(slir, get_increase_request, methods=["GET"]),
        Route(f"{slir}/approve", approve_increase_request, methods=["POST"]),
        Route(f"{slir}/deny", deny_increase_request, methods=["POST"]),
        Route(f"{prefix}/rbac_roles", list_roles, methods=["GET"]),
        Route(f"{prefix}/rbac_roles/{{role_id}}", get_role, methods=["GET"]),
        Route(f"{prefix}/rbac_roles/{{role_id}}/permissions", list_role_permissions, methods=["GET"]),
        Route(f"{prefix}/rbac_groups", list_groups, methods=["GET"]),
        Route(f"{prefix}/rbac_groups", change_groups, methods=["POST"]),
        Route(group, get_group, methods=["GET"]),
        Route(group, change_groups, methods=["POST", "DELETE"]),
        Route(f"{group}/members", list_group_members, methods=["GET"]),
        Route(f"{group}/members", add_group_member, methods=["POST"]),
        Route(f"{group}/members/{{user_id}}", remove_group_member, methods=["DELETE"]),
    ]
    for feature, paths in (
        ("analytics", ("/analytics/{rest:path}",)),
        ("compliance_settings", ("/compliance_settings",)),
        ("external_keys", ("/external_keys", "/external_keys/{rest:path}")),
        (
            "federation",
            (
                "/federation_issuers",
                "/federation_issuers/{rest:path}",
                "/federation_rules",
                "/federation_rules/{rest:path}",
            ),
        ),
    ):
        for path in paths:
            found.append(
                Route(prefix + path, _unavailable_endpoint(feature), methods=["GET", "POST", "PUT", "DELETE"])
            )
    return found
