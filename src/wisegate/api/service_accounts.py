"""``/v1/organizations/service_accounts…`` and ``/v1/organizations/workspaces/{id}/service_accounts…``:
service accounts, their workspace memberships (both ways round) — on ``ServiceAccountService``, like
``wisegate service-accounts``. Their keys are made with ``POST /v1/organizations/api_keys``
(``service_account_id``, see ``admin.py``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wisegate.api.admin import ADMIN_BODY_BYTES, _scope
from wisegate.api.body import parse
from wisegate.api.cursor import cursor_page
from wisegate.api.paging import query_bool
from wisegate.api.render import json_response
from wisegate.protocol.organization import (
    AddServiceAccountToWorkspaceBody,
    AddWorkspaceServiceAccountBody,
    CreateServiceAccountBody,
    ServiceAccountMemberDeleted,
    ServiceAccountMemberOut,
    ServiceAccountOut,
    UpdateServiceAccountBody,
    UpdateServiceAccountRoleBody,
)
from wisegate.protocol.resources import rfc3339
from wisegate.records.principals import ServiceAccount, ServiceAccountMember


def _account_out(account: ServiceAccount) -> ServiceAccountOut:
    return ServiceAccountOut(
        id=account.id,
        name=account.name,
        description=account.description,
        organization_role=account.organization_role,
        created_at=rfc3339(account.created_at),
        created_by_actor_id=account.created_by_actor_id,
        updated_at=rfc3339(account.updated_at),
        updated_by_actor_id=account.updated_by_actor_id,
        archived_at=rfc3339(account.archived_at) if account.archived_at else None,
        archived_by_actor_id=account.archived_by_actor_id,
    )


def _sa_member_out(member: ServiceAccountMember) -> ServiceAccountMemberOut:
    return ServiceAccountMemberOut(
        service_account_id=member.service_account_id,
        workspace_id=member.workspace_id,
        workspace_role=member.workspace_role,
        created_by_actor_id=member.created_by_actor_id,
        implicit=member.implicit,
    )


def _actor_id(request: Request) -> str:
    key_id: str = request.state.principal.key.id
    return key_id


async def create_service_account(request: Request) -> Response:
    services, scope = await _scope(request)
    body = await parse(request, CreateServiceAccountBody, ADMIN_BODY_BYTES)
    account = await services.service_accounts.create(
        scope,
        body.name,
        description=body.description,
        organization_role=body.organization_role,
        actor_id=_actor_id(request),
    )
    return json_response(_account_out(account))


async def list_service_accounts(request: Request) -> Response:
    services, scope = await _scope(request)
    accounts = await services.service_accounts.list_accounts(
        scope, include_archived=query_bool(request, "include_archived")
    )
    return cursor_page(request, accounts, _account_out, default=20)


async def get_service_account(request: Request) -> Response:
    services, scope = await _scope(request)
    return json_response(
        _account_out(await services.service_accounts.get(scope, request.path_params["account_id"]))
    )


async def update_service_account(request: Request) -> Response:
    services, scope = await _scope(request)
    body = await parse(request, UpdateServiceAccountBody, ADMIN_BODY_BYTES)
    account = await services.service_accounts.update(
        scope,
        request.path_params["account_id"],
        description=body.description,
        clear_description="description" in body.model_fields_set and body.description is None,
        organization_role=body.organization_role,
        actor_id=_actor_id(request),
    )
    return json_response(_account_out(account))


async def archive_service_account(request: Request) -> Response:
    services, scope = await _scope(request)
    account = await services.service_accounts.archive(
        scope, request.path_params["account_id"], actor_id=_actor_id(request)
    )
    return json_response(_account_out(account))


async def list_account_workspaces(request: Request) -> Response:
    services, scope = await _scope(request)
    members = await services.service_accounts.memberships(scope, request.path_params["account_id"])
    return cursor_page(request, members, _sa_member_out, default=20)


async def add_account_workspace(request: Request) -> Response:
    services, scope = await _scope(request)
    body = await parse(request, AddServiceAccountToWorkspaceBody, ADMIN_BODY_BYTES)
    member = await services.service_accounts.add(
        scope,
        body.workspace_id,
        request.path_params["account_id"],
        body.workspace_role,
        actor_id=_actor_id(request),
    )
    return json_response(_sa_member_out(member))


async def remove_account_workspace(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    params = request.path_params
    await services.service_accounts.remove(scope, params["workspace_id"], params["account_id"])
    return json_response(
        ServiceAccountMemberDeleted(
            service_account_id=params["account_id"], workspace_id=params["workspace_id"]
        )
    )


async def list_workspace_accounts(request: Request) -> Response:
    services, scope = await _scope(request)
    members = await services.service_accounts.members_of_workspace(scope, request.path_params["workspace_id"])
    return cursor_page(request, members, _sa_member_out, default=20)


async def add_workspace_account(request: Request) -> Response:
    services, scope = await _scope(request)
    body = await parse(request, AddWorkspaceServiceAccountBody, ADMIN_BODY_BYTES)
    member = await services.service_accounts.add(
        scope,
        request.path_params["workspace_id"],
        body.service_account_id,
        body.workspace_role,
        actor_id=_actor_id(request),
    )
    return json_response(_sa_member_out(member))


async def get_workspace_account(request: Request) -> Response:
    services, scope = await _scope(request)
    scope.require_admin()
    params = request.path_params
    member = await services.service_accounts.membership(scope, params["workspace_id"], params["account_id"])
    return json_response(_sa_member_out(member))


async def update_workspace_account(request: Request) -> Response:
    services, scope = await _scope(request)
    body = await parse(request, UpdateServiceAccountRoleBody, ADMIN_BODY_BYTES)
    params = request.path_params
    member = await services.service_accounts.set_role(
        scope, params["workspace_id"], params["account_id"], body.workspace_role, actor_id=_actor_id(request)
    )
    return json_response(_sa_member_out(member))


async def remove_workspace_account(request: Request) -> Response:
    return await remove_account_workspace(request)


def routes() -> list[Route]:
    prefix = "/v1/organizations"
    ws = f"{prefix}/workspaces/{{workspace_id}}"
    sa = f"{prefix}/service_accounts/{{account_id}}"
    return [
        Route(f"{prefix}/service_accounts", list_service_accounts, methods=["GET"]),
        Route(f"{prefix}/service_accounts", create_service_account, methods=["POST"]),
        Route(sa, get_service_account, methods=["GET"]),
        Route(sa, update_service_account, methods=["POST"]),
        Route(f"{sa}/archive", archive_service_account, methods=["POST"]),
        Route(f"{sa}/workspaces", list_account_workspaces, methods=["GET"]),
        Route(f"{sa}/workspaces", add_account_workspace, methods=["POST"]),
        Route(f"{sa}/workspaces/{{workspace_id}}", remove_account_workspace, methods=["DELETE"]),
        Route(f"{ws}/service_accounts", list_workspace_accounts, methods=["GET"]),
        Route(f"{ws}/service_accounts", add_workspace_account, methods=["POST"]),
        Route(f"{ws}/service_accounts/{{account_id}}", get_workspace_account, methods=["GET"]),
        Route(f"{ws}/service_accounts/{{account_id}}", update_workspace_account, methods=["POST"]),
        Route(f"{ws}/service_accounts/{{account_id}}", remove_workspace_account, methods=["DELETE"]),
    ]
