"""What a key may see: admin keys the whole organization, API keys only their own workspace.

Every workspace-owned resource (keys, workspaces, members, usage; later batches and files) is looked
up through :meth:`Scope.require`, so a resource of another workspace is a 404 exactly like one that
does not exist — never a 403 that would confirm it exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from wisegate.domain.keys import Principal
from wisegate.errors import NotFound, PermissionDenied


@dataclass(frozen=True, slots=True)
class Scope:
    organization_id: str
    workspace_id: str | None  # None: organization-wide (an admin key)

    @classmethod
    def of(cls, principal: Principal) -> Scope:
        admin = principal.key.kind == "admin"
        return cls(principal.organization_id, None if admin else principal.workspace_id)

    @property
    def is_admin(self) -> bool:
        return self.workspace_id is None

    def sees(self, organization_id: str, workspace_id: str | None) -> bool:
        if organization_id != self.organization_id:
            return False
        return self.workspace_id is None or workspace_id == self.workspace_id

    def require(self, organization_id: str, workspace_id: str | None, not_found: str) -> None:
        """404 ``not_found`` unless the resource is visible in this scope."""
        if not self.sees(organization_id, workspace_id):
            raise NotFound(not_found)

    def require_admin(self) -> None:
        """Changes to the organization need an admin key; an API key gets 403 ``permission_error``."""
        if not self.is_admin:
            raise PermissionDenied(
                "This endpoint needs an admin key (sk-wg-admin01-…); an API key may only read its own "
                "workspace. Create one with: wisegate keys create --admin --name NAME",
                details={"error_code": "api_key_scope_missing"},
            )
