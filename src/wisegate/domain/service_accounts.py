"""Service accounts: named non-human principals that hold API keys in the workspaces they belong to.

Every service account is an implicit ``workspace_user`` of the default workspace; other workspaces
need a membership (``workspace_user``, ``workspace_developer``, ``workspace_restricted_developer`` or
``workspace_admin``). Its keys are made with ``POST /v1/organizations/api_keys`` (``service_account_id``)
or ``wisegate service-accounts key``, only in workspaces it belongs to. Removing it from a workspace
archives its keys there; archiving it archives all of them. Its keys call the API as any key of their
workspace does.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from wisegate.domain.scope import Scope
from wisegate.domain.storable import storable_name
from wisegate.domain.tenancy import TenancyService
from wisegate.errors import InvalidRequest, NotFound
from wisegate.protocol.bounds import ID_LENGTH, echo
from wisegate.protocol.messages import new_id
from wisegate.records.principals import ServiceAccount, ServiceAccountMember
from wisegate.records.tenancy import ApiKey
from wisegate.storage.principals import ServiceAccountRepo

ASSIGNABLE = ("workspace_user", "workspace_developer", "workspace_restricted_developer", "workspace_admin")


class ServiceAccountService:
    def __init__(self, repo: ServiceAccountRepo, tenancy: TenancyService) -> None:
        self._repo = repo
        self._tenancy = tenancy

    async def create(
        self,
        scope: Scope,
        name: str,
        *,
        description: str | None,
        organization_role: str,
        actor_id: str | None,
    ) -> ServiceAccount:
        scope.require_admin()
        storable_name("name", name, ID_LENGTH)
        if await self._repo.by_name(scope.organization_id, name) is not None:
            raise InvalidRequest(f"name: a service account named '{echo(name)}' already exists")
        now = datetime.now(UTC)
        account = ServiceAccount(
            new_id("svac"),
            scope.organization_id,
            name,
            description or "",
            organization_role,
            now,
            actor_id,
            now,
            actor_id,
        )
        await self._repo.add(account)
        return account

    async def list_accounts(self, scope: Scope, *, include_archived: bool = False) -> list[ServiceAccount]:
        """Newest first."""
        scope.require_admin()
        accounts = [
            a
            for a in await self._repo.list_accounts(scope.organization_id)
            if include_archived or a.archived_at is None
        ]
        return sorted(accounts, key=lambda a: (a.created_at, a.id), reverse=True)

    async def get(self, scope: Scope, account_id: str) -> ServiceAccount:
        scope.require_admin()
        account = await self._repo.get(account_id)
        if account is None or account.organization_id != scope.organization_id:
            raise NotFound(f"service account {echo(account_id)} not found")
        return account

    async def _active(self, scope: Scope, account_id: str) -> ServiceAccount:
        account = await self.get(scope, account_id)
        if account.archived_at is not None:
            raise InvalidRequest(f"service account {account_id} is archived")
        return account

    async def update(
        self,
        scope: Scope,
        account_id: str,
        *,
        description: str | None,
        clear_description: bool,
        organization_role: str | None,
        actor_id: str | None,
    ) -> ServiceAccount:
        await self._active(scope, account_id)
        values: dict[str, object] = {"updated_at": datetime.now(UTC), "updated_by_actor_id": actor_id}
        if description is not None or clear_description:
            values["description"] = description or ""
        if organization_role is not None:
            values["organization_role"] = organization_role
        updated = await self._repo.update(account_id, **values)
        assert updated is not None
        return updated

    async def archive(self, scope: Scope, account_id: str, *, actor_id: str | None) -> ServiceAccount:
        """Idempotent; archives every key of the service account."""
        account = await self.get(scope, account_id)
        if account.archived_at is not None:
            return account
        await self._tenancy.archive_keys(scope, service_account_id=account_id)
        now = datetime.now(UTC)
        updated = await self._repo.update(
            account_id, archived_at=now, archived_by_actor_id=actor_id, updated_at=now
        )
        assert updated is not None
        return updated

    async def _workspace(self, scope: Scope, workspace_id: str) -> str:
        view = await self._tenancy.get_workspace(scope, workspace_id)
        if view.workspace.archived_at is not None:
            raise InvalidRequest(f"workspace {workspace_id} is archived")
        return await self._tenancy.default_workspace_id(scope)

    def _implicit(self, account: ServiceAccount, default_id: str) -> ServiceAccountMember:
        return ServiceAccountMember(
            default_id, account.id, "workspace_user", account.created_at, None, implicit=True
        )

    async def memberships(self, scope: Scope, account_id: str) -> list[ServiceAccountMember]:
        """The workspaces it belongs to: the implicit default-workspace one first (unless explicit)."""
        account = await self.get(scope, account_id)
        if account.archived_at is not None:
            return []
        default_id = await self._tenancy.default_workspace_id(scope)
        explicit = sorted(
            await self._repo.members(service_account_id=account_id),
            key=lambda m: (m.created_at, m.workspace_id),
        )
        if any(m.workspace_id == default_id for m in explicit):
            return explicit
        return [self._implicit(account, default_id), *explicit]

    async def members_of_workspace(self, scope: Scope, workspace_id: str) -> list[ServiceAccountMember]:
        """Explicit memberships of active service accounts (the implicit ones are not listed)."""
        scope.require_admin()
        await self._workspace(scope, workspace_id)
        active = {
            a.id for a in await self._repo.list_accounts(scope.organization_id) if a.archived_at is None
        }
        members = await self._repo.members(workspace_id=workspace_id)
        return sorted(
            (m for m in members if m.service_account_id in active),
            key=lambda m: (m.created_at, m.service_account_id),
        )

    async def membership(self, scope: Scope, workspace_id: str, account_id: str) -> ServiceAccountMember:
        default_id = await self._workspace(scope, workspace_id)
        account = await self.get(scope, account_id)
        if account.archived_at is not None:
            raise NotFound(f"service account {echo(account_id)} not found")
        for member in await self._repo.members(workspace_id=workspace_id, service_account_id=account_id):
            return member
        if workspace_id == default_id:
            return self._implicit(account, default_id)
        raise NotFound(
            f"service account {echo(account_id)} is not a member of workspace {echo(workspace_id)}"
        )

    async def add(
        self, scope: Scope, workspace_id: str, account_id: str, role: str, *, actor_id: str | None
    ) -> ServiceAccountMember:
        """Add it to a workspace, or replace its role there."""
        await self._workspace(scope, workspace_id)
        await self._active(scope, account_id)
        if role not in ASSIGNABLE:
            raise InvalidRequest(f"workspace_role: must be one of {', '.join(ASSIGNABLE)}")
        member = ServiceAccountMember(workspace_id, account_id, role, datetime.now(UTC), actor_id)
        return await self._repo.put_member(member)

    async def set_role(
        self, scope: Scope, workspace_id: str, account_id: str, role: str, *, actor_id: str | None
    ) -> ServiceAccountMember:
        current = await self.membership(scope, workspace_id, account_id)
        await self._active(scope, account_id)
        if current.implicit:
            raise InvalidRequest(
                "the default workspace's implicit membership cannot be updated; add the service account "
                "to it explicitly instead"
            )
        return await self._repo.put_member(replace(current, workspace_role=role))

    async def remove(self, scope: Scope, workspace_id: str, account_id: str) -> None:
        """Idempotent; archives its keys in that workspace (unless the implicit membership remains)."""
        default_id = await self._workspace(scope, workspace_id)
        await self.get(scope, account_id)
        await self._repo.remove_member(workspace_id, account_id)
        if workspace_id != default_id:
            await self._tenancy.archive_keys(scope, service_account_id=account_id, workspace_id=workspace_id)

    async def create_key(
        self, scope: Scope, account_id: str, workspace_id: str, name: str
    ) -> tuple[ApiKey, str]:
        """A key of the service account in a workspace it belongs to; its secret is shown once."""
        await self._active(scope, account_id)
        default_id = await self._workspace(scope, workspace_id)
        members = await self._repo.members(workspace_id=workspace_id, service_account_id=account_id)
        if not members and workspace_id != default_id:
            raise InvalidRequest(
                f"service account {echo(account_id)} is not a member of workspace {echo(workspace_id)}; "
                "add it first "
                f"(POST /v1/organizations/service_accounts/{echo(account_id)}/workspaces)"
            )
        return await self._tenancy.create_key(scope, workspace_id, name, service_account_id=account_id)
