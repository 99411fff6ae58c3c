"""The Admin API's organization, workspaces, API keys and workspace members.

Every method takes the caller's :class:`Scope`: admin keys act on the whole organization, API keys
may only read their own workspace (anything else is a 404, as if it did not exist).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from wisegate.domain.catalog import ModelCatalog
from wisegate.domain.keys import KeyService
from wisegate.domain.scope import Scope
from wisegate.domain.storable import storable_name
from wisegate.errors import InvalidRequest, NotFound
from wisegate.protocol.bounds import WORKSPACE_NAME_LENGTH, echo
from wisegate.records.directory import WorkspaceMember, WorkspaceSettings
from wisegate.records.tenancy import ApiKey, Organization, Workspace
from wisegate.storage.directory import DirectoryRepo
from wisegate.storage.repos import TenancyRepo

# Colours the console cycles through for new workspaces (hex, as the Admin API returns them).
PALETTE = ("#6C5BB9", "#4A90D9", "#3FA66B", "#D98A2B", "#C2504A", "#8E6C4A", "#2E9C9C", "#B5478F")
WORKSPACE_ROLES = frozenset(
    {
        "workspace_user",
        "workspace_developer",
        "workspace_restricted_developer",
        "workspace_admin",
        "workspace_billing",
    }
)
KEY_STATUSES = frozenset({"active", "inactive", "archived"})


def key_not_found(key_id: str) -> NotFound:
    """The one answer for a key id that does not exist and for one the asker may not touch (another
    workspace's, another person's): the same 404, so that it tells nothing about keys elsewhere."""
    return NotFound(f"api key {echo(key_id)} not found")


def _check_workspace_role(role: str) -> None:
    """A workspace role one may give (``workspace_billing`` comes with the ``billing`` organization role)."""
    if role == "workspace_billing":
        raise InvalidRequest("workspace_role: workspace_billing cannot be assigned through the API")
    if role not in WORKSPACE_ROLES:
        allowed = ", ".join(sorted(WORKSPACE_ROLES - {"workspace_billing"}))
        raise InvalidRequest(f"workspace_role: '{echo(role)}' is not one of {allowed}")


@dataclass(frozen=True, slots=True)
class WorkspaceView:
    workspace: Workspace
    display_color: str
    allowed_models: tuple[str, ...] | None
    is_default: bool


def default_color(workspace_id: str) -> str:
    return PALETTE[hashlib.sha256(workspace_id.encode()).digest()[0] % len(PALETTE)]


class TenancyService:
    def __init__(
        self,
        repo: TenancyRepo,
        directory: DirectoryRepo,
        keys: KeyService,
        catalog: ModelCatalog,
        *,
        on_archive: Callable[[str], Awaitable[None]] | None = None,
    ):
        self._repo = repo
        self._on_archive = on_archive
        self._directory = directory
        self._keys = keys
        self._catalog = catalog

    async def organization(self, scope: Scope) -> Organization:
        org = await self._repo.first_organization()
        if org is None or org.id != scope.organization_id:
            raise NotFound("organization not found")
        return org

    async def _view(self, workspace: Workspace, default_id: str | None) -> WorkspaceView:
        settings = await self._directory.workspace_settings(workspace.id)
        color = settings.display_color if settings else default_color(workspace.id)
        allowed = settings.allowed_models if settings else None
        return WorkspaceView(workspace, color, allowed, workspace.id == default_id)

    async def _default_id(self, organization_id: str) -> str | None:
        workspaces = await self._repo.list_workspaces(organization_id)
        return workspaces[0].id if workspaces else None

    async def default_workspace_id(self, scope: Scope) -> str:
        default_id = await self._default_id(scope.organization_id)
        if default_id is None:
            raise NotFound("organization has no workspace")
        return default_id

    async def list_workspaces(self, scope: Scope, *, include_archived: bool = False) -> list[WorkspaceView]:
        """Visible workspaces, newest first."""
        workspaces = await self._repo.list_workspaces(scope.organization_id)
        default_id = workspaces[0].id if workspaces else None
        settings = await self._directory.all_workspace_settings([w.id for w in workspaces])
        views = []
        for w in workspaces:
            if not scope.sees(w.organization_id, w.id) or (w.archived_at and not include_archived):
                continue
            s = settings.get(w.id)
            views.append(
                WorkspaceView(
                    w,
                    s.display_color if s else default_color(w.id),
                    s.allowed_models if s else None,
                    w.id == default_id,
                )
            )
        return sorted(views, key=lambda v: (v.workspace.created_at, v.workspace.id), reverse=True)

    async def get_workspace(self, scope: Scope, workspace_id: str) -> WorkspaceView:
        workspace = await self._repo.get_workspace(workspace_id)
        missing = f"workspace {echo(workspace_id)} not found"
        if workspace is None:
            raise NotFound(missing)
        scope.require(workspace.organization_id, workspace.id, missing)
        return await self._view(workspace, await self._default_id(workspace.organization_id))

    async def create_workspace(
        self,
        scope: Scope,
        name: str,
        *,
        display_color: str | None = None,
        allowed_models: Sequence[str] | None = None,
    ) -> WorkspaceView:
        scope.require_admin()
        allowed = self._check_models(allowed_models)
        workspace = await self._keys.create_workspace(scope.organization_id, name)
        color = display_color or default_color(workspace.id)
        await self._directory.save_workspace_settings(WorkspaceSettings(workspace.id, color, allowed))
        return WorkspaceView(workspace, color, allowed, False)

    async def update_workspace(
        self,
        scope: Scope,
        workspace_id: str,
        *,
        name: str | None = None,
        display_color: str | None = None,
        allowed_models: Sequence[str] | None = None,
        clear_allowed_models: bool = False,
    ) -> WorkspaceView:
        """Rename, recolour or change the model allow-list (``clear_allowed_models``: allow every model)."""
        scope.require_admin()
        view = await self.get_workspace(scope, workspace_id)
        if view.workspace.archived_at is not None:
            raise InvalidRequest(f"workspace {workspace_id} is archived and cannot be changed")
        allowed = view.allowed_models
        if clear_allowed_models:
            allowed = None
        elif allowed_models is not None:
            allowed = self._check_models(allowed_models)
        workspace = view.workspace
        if name is not None:
            storable_name("name", name, WORKSPACE_NAME_LENGTH)
            updated = await self._repo.update_workspace(workspace_id, name=name)
            assert updated is not None
            workspace = updated
        color = display_color or view.display_color
        await self._directory.save_workspace_settings(WorkspaceSettings(workspace_id, color, allowed))
        self._catalog.forget(workspace_id)
        return WorkspaceView(workspace, color, allowed, view.is_default)

    async def archive_workspace(self, scope: Scope, workspace_id: str) -> WorkspaceView:
        """Archive a workspace and every key in it (their requests get 401 from then on)."""
        scope.require_admin()
        view = await self.get_workspace(scope, workspace_id)
        if view.is_default:
            raise InvalidRequest("The default workspace cannot be archived.")
        if view.workspace.archived_at is not None:
            return view
        for key in await self._repo.list_keys(scope.organization_id):
            if key.workspace_id == workspace_id and key.status != "archived":
                await self._repo.update_key(key.id, name=None, status="archived")
        updated = await self._repo.update_workspace(workspace_id, archived_at=datetime.now(UTC))
        assert updated is not None
        self._keys.forget_cached()
        if self._on_archive is not None:  # what the workspace held for its requests (thread state)
            await self._on_archive(workspace_id)
        return WorkspaceView(updated, view.display_color, view.allowed_models, False)

    def _check_models(self, models: Sequence[str] | None) -> tuple[str, ...] | None:
        if models is None:
            return None
        served = {m.config.id for m in self._catalog.served}
        unknown = [m for m in models if m not in served]
        if unknown:
            raise InvalidRequest(
                f"allowed_models: unknown model '{echo(unknown[0])}' (served: {', '.join(sorted(served))})"
            )
        return tuple(dict.fromkeys(models))

    async def list_keys(
        self,
        scope: Scope,
        *,
        workspace_id: str | None = None,
        status: str | None = None,
        created_by_user_id: str | None = None,
    ) -> list[ApiKey]:
        """Visible API keys, newest first (admin keys are not listed: the Admin API lists API keys)."""
        keys = [
            k
            for k in await self._repo.list_keys(scope.organization_id)
            if k.kind == "api"
            and scope.sees(k.organization_id, k.workspace_id)
            and (workspace_id is None or k.workspace_id == workspace_id)
            and (status is None or k.status == status)
            and (created_by_user_id is None or k.created_by_user_id == created_by_user_id)
        ]
        return sorted(keys, key=lambda k: (k.created_at, k.id), reverse=True)

    async def get_key(self, scope: Scope, key_id: str) -> ApiKey:
        key = await self._repo.get_key(key_id)
        missing = key_not_found(key_id)
        if key is None or key.kind != "api":
            raise missing
        scope.require(key.organization_id, key.workspace_id, str(missing))
        return key

    async def update_key(self, scope: Scope, key_id: str, *, name: str | None, status: str | None) -> ApiKey:
        scope.require_admin()
        key = await self.get_key(scope, key_id)
        if key.status == "archived" and status not in (None, "archived"):
            raise InvalidRequest(f"api key {key_id} is archived; an archived key cannot be reactivated")
        return await self._keys.update(key_id, name=name, status=status)

    async def create_key(
        self,
        scope: Scope,
        workspace_id: str,
        name: str,
        *,
        created_by_user_id: str | None = None,
        service_account_id: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Wisegate extension: a new API key in a workspace, and its secret (shown once);
        ``created_by_user_id``: the console user making it (their key, in Account Settings);
        ``service_account_id``: the service account that will hold it (checked by the caller)."""
        scope.require_admin()
        view = await self.get_workspace(scope, workspace_id)
        if view.workspace.archived_at is not None:
            raise InvalidRequest(f"workspace {workspace_id} is archived")
        return await self._keys.create_key(
            workspace_id, name, created_by_user_id=created_by_user_id, service_account_id=service_account_id
        )

    async def archive_keys(
        self,
        scope: Scope,
        *,
        service_account_id: str | None = None,
        user_id: str | None = None,
        workspace_id: str | None = None,
    ) -> int:
        """Archive the keys of a service account, or those a person made in the console (in one
        workspace, or everywhere): a leaver's keys stop with their access. How many."""
        scope.require_admin()
        assert (service_account_id is None) != (user_id is None)
        archived = 0
        for key in await self._repo.list_keys(scope.organization_id):
            owner = key.service_account_id if service_account_id is not None else key.created_by_user_id
            if owner != (service_account_id or user_id) or key.status == "archived":
                continue
            if workspace_id is None or key.workspace_id == workspace_id:
                await self._repo.update_key(key.id, name=None, status="archived")
                archived += 1
        self._keys.forget_cached()
        return archived

    async def list_members(self, scope: Scope, workspace_id: str) -> list[WorkspaceMember]:
        await self.get_workspace(scope, workspace_id)
        members = await self._directory.list_members(workspace_id)
        return sorted(members, key=lambda m: (m.added_at, m.user_id))

    async def get_member(self, scope: Scope, workspace_id: str, user_id: str) -> WorkspaceMember:
        await self.get_workspace(scope, workspace_id)
        member = await self._directory.get_member(workspace_id, user_id)
        if member is None:
            raise NotFound(f"user {echo(user_id)} is not a member of workspace {echo(workspace_id)}")
        return member

    async def add_member(self, scope: Scope, workspace_id: str, user_id: str, role: str) -> WorkspaceMember:
        scope.require_admin()
        view = await self.get_workspace(scope, workspace_id)
        if view.workspace.archived_at is not None:
            raise InvalidRequest(f"workspace {workspace_id} is archived")
        _check_workspace_role(role)
        user = await self._directory.get_user(user_id)
        if user is None or user.organization_id != scope.organization_id:
            raise NotFound(f"user {echo(user_id)} not found")
        if await self._directory.get_member(workspace_id, user_id) is not None:
            raise InvalidRequest(
                f"user {echo(user_id)} is already a member of workspace {echo(workspace_id)}"
            )
        member = WorkspaceMember(workspace_id, user_id, role, datetime.now(UTC))
        await self._directory.add_member(member)
        return member

    async def _last_workspace_admin(self, workspace_id: str, user_id: str) -> InvalidRequest:
        user = await self._directory.get_user(user_id)
        who = user.email if user is not None else user_id
        return InvalidRequest(
            f"{who} is the last workspace admin of workspace {workspace_id} and cannot stop being one: "
            "make another member its workspace admin first."
        )

    async def update_member(
        self, scope: Scope, workspace_id: str, user_id: str, role: str
    ) -> WorkspaceMember:
        """Change a member's workspace role; the workspace's last workspace admin keeps theirs (400
        saying why), as the organization's last admin does."""
        scope.require_admin()
        _check_workspace_role(role)
        await self.get_member(scope, workspace_id, user_id)
        member = await self._directory.set_member_role(workspace_id, user_id, role)
        if isinstance(member, str):
            raise await self._last_workspace_admin(workspace_id, user_id)
        assert member is not None
        return member

    async def remove_member(self, scope: Scope, workspace_id: str, user_id: str) -> None:
        """Also archives the keys the person made in that workspace, unless they keep access to it (an
        organization admin's, or the default workspace's implicit one). The workspace's last workspace
        admin stays (400 saying why)."""
        scope.require_admin()
        await self.get_member(scope, workspace_id, user_id)
        if await self._directory.remove_member(workspace_id, user_id) == "last_admin":
            raise await self._last_workspace_admin(workspace_id, user_id)
        user = await self._directory.get_user(user_id)
        keeps_access = user is not None and user.role == "admin"
        if not keeps_access and workspace_id != await self._default_id(scope.organization_id):
            await self.archive_keys(scope, user_id=user_id, workspace_id=workspace_id)
