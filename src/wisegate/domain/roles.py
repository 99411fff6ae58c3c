"""Who may see and do what: Anthropic's organization and workspace roles, in one table.

Each role is a set of :class:`Permission` actions. An organization role's permissions hold across the
organization; a workspace role's hold in the workspace where a person has it. An organization role
also implies a workspace role — in every workspace (``admin`` → ``workspace_admin``, ``billing`` →
``workspace_billing``, as Anthropic does) or in the default workspace only (everyone else, so a new
developer can make a key before anyone adds them to a workspace). In any other workspace a person
needs a membership (``/v1/organizations/workspaces/{id}/members``).

The table is data on purpose: a role is an id, a display name and its permissions, which is what the
Admin API's ``rbac_roles`` (``RBACRole`` + ``RBACRolePermission``: an ``action`` on a resource) lists,
and ``rbac_groups`` are sets of people holding roles — so it can be served there as it is.

The console draws its navigation from :func:`Access.allows` and refuses (403) what a role lacks on
the server, whatever the page showed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal


class Permission(StrEnum):
    """One action. ``organization`` actions concern the whole organization, the rest one workspace."""

    # Organization-wide
    MANAGE_WORKSPACES = "organization:workspaces:manage"  # create, rename, allow-list, archive
    MANAGE_MEMBERS = "organization:members:manage"  # invites, organization roles, removal
    READ_BILLING = "organization:billing:read"  # tier, credits, spend and spend limit
    MANAGE_BILLING = "organization:billing:manage"  # add credits, pin a tier, set the spend limit
    READ_AUDIT = "organization:audit:read"  # the sign-in and change record of everyone
    # In a workspace
    USE_PLAYGROUND = "workspace:playground:use"
    CREATE_OWN_KEYS = "workspace:keys:own"  # create, rename and disable one's own keys
    READ_KEYS = "workspace:keys:read"  # every key of the workspace
    MANAGE_KEYS = "workspace:keys:manage"  # create, rename, disable and archive any key there
    READ_USAGE = "workspace:usage:read"
    READ_LIMITS = "workspace:limits:read"
    MANAGE_LIMITS = "workspace:limits:manage"  # the workspace's spend limit and rate limits
    READ_BATCHES = "workspace:batches:read"
    MANAGE_BATCHES = "workspace:batches:manage"  # cancel
    READ_FILES = "workspace:files:read"
    MANAGE_FILES = "workspace:files:manage"  # delete
    MANAGE_WORKSPACE_MEMBERS = "workspace:members:manage"  # add and remove members, set their roles

    @property
    def organization_wide(self) -> bool:
        return self.value.startswith("organization:")


P = Permission
OrganizationRole = Literal["user", "developer", "billing", "admin", "claude_code_user"]
WorkspaceRole = Literal[
    "workspace_user",
    "workspace_developer",
    "workspace_restricted_developer",
    "workspace_admin",
    "workspace_billing",
]


@dataclass(frozen=True, slots=True)
class Role:
    id: str
    level: Literal["organization", "workspace"]
    display_name: str
    description: str
    permissions: frozenset[Permission]
    # Organization roles only: the workspace role held in every workspace, or in the default one.
    every_workspace: str | None = None
    default_workspace: str | None = None


_WORKSPACE_USER = frozenset({P.USE_PLAYGROUND, P.READ_USAGE})
_WORKSPACE_DEVELOPER = _WORKSPACE_USER | {P.CREATE_OWN_KEYS, P.READ_BATCHES, P.READ_FILES}
_WORKSPACE_ADMIN = frozenset(p for p in Permission if not p.organization_wide)
_WORKSPACE_BILLING = frozenset({P.READ_USAGE, P.READ_LIMITS})

ROLES: Mapping[str, Role] = {
    role.id: role
    for role in (
        Role(
            "user",
            "organization",
            "User",
            "Uses the playground in the default workspace and the workspaces they are members of.",
            frozenset(),
            default_workspace="workspace_user",
        ),
        Role(
            "claude_code_user",
            "organization",
            "Claude Code user",
            "A user who makes their own API keys (for Claude Code) where they may.",
            frozenset(),
            default_workspace="workspace_developer",
        ),
        Role(
            "developer",
            "organization",
            "Developer",
            "Makes and manages their own API keys; sees their workspaces' usage, batches and files.",
            frozenset(),
            default_workspace="workspace_developer",
        ),
        Role(
            "billing",
            "organization",
            "Billing",
            "Sees usage, cost, credits and limits everywhere; adds credits and sets spend limits.",
            frozenset({P.READ_BILLING, P.MANAGE_BILLING}),
            every_workspace="workspace_billing",
        ),
        Role(
            "admin",
            "organization",
            "Admin",
            "Everything: members and invites, workspaces, every key, billing and limits.",
            frozenset(p for p in Permission if p.organization_wide),
            every_workspace="workspace_admin",
        ),
        Role(
            "workspace_user",
            "workspace",
            "Workspace user",
            "Uses the playground and sees the workspace's usage.",
            _WORKSPACE_USER,
        ),
        Role(
            "workspace_developer",
            "workspace",
            "Workspace developer",
            "A workspace user who makes their own API keys and sees batches and files.",
            _WORKSPACE_DEVELOPER,
        ),
        Role(
            "workspace_restricted_developer",
            "workspace",
            "Workspace restricted developer",
            "Makes and manages their own API keys there, and nothing else.",
            frozenset({P.CREATE_OWN_KEYS}),
        ),
        Role(
            "workspace_admin",
            "workspace",
            "Workspace admin",
            "Everything in the workspace: every key, batches, files, usage and its limits.",
            _WORKSPACE_ADMIN,
        ),
        Role(
            "workspace_billing",
            "workspace",
            "Workspace billing",
            "Sees the workspace's usage, cost and limits.",
            _WORKSPACE_BILLING,
        ),
    )
}
ORGANIZATION_ROLES = tuple(r.id for r in ROLES.values() if r.level == "organization")
WORKSPACE_ROLES = tuple(r.id for r in ROLES.values() if r.level == "workspace")


def role(role_id: str) -> Role:
    """The role of that id (KeyError for an id that is not in the table)."""
    return ROLES[role_id]


@dataclass(frozen=True, slots=True)
class Access:
    """What one person may do: their organization role, and the workspace roles they hold in each workspace.

    ``workspace_roles`` already includes what the organization role implies; permissions in a workspace
    are the union of the roles held there.
    """

    organization_role: str
    workspace_roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(
        cls, organization_role: str, memberships: Mapping[str, str], workspaces: Iterable[str], default: str
    ) -> Access:
        """``memberships``: workspace id → workspace role; ``workspaces``: every active workspace id."""
        org = role(organization_role)
        roles: dict[str, tuple[str, ...]] = {}
        for workspace_id in workspaces:
            held = [memberships.get(workspace_id), org.every_workspace]
            if workspace_id == default:
                held.append(org.default_workspace)
            names = tuple(dict.fromkeys(r for r in held if r))
            if names:
                roles[workspace_id] = names
        return cls(organization_role, roles)

    @property
    def organization_permissions(self) -> frozenset[Permission]:
        return role(self.organization_role).permissions

    def permissions_in(self, workspace_id: str) -> frozenset[Permission]:
        granted: set[Permission] = set()
        for name in self.workspace_roles.get(workspace_id, ()):
            granted |= role(name).permissions
        return frozenset(granted)

    def allows(self, permission: Permission, workspace_id: str | None = None) -> bool:
        """An organization permission; a workspace one in ``workspace_id`` (without one: anywhere)."""
        if permission.organization_wide:
            return permission in self.organization_permissions
        if workspace_id is None:
            return bool(self.workspaces_allowing(permission))
        return permission in self.permissions_in(workspace_id)

    def workspaces_allowing(self, *permissions: Permission) -> list[str]:
        """The workspaces where any of ``permissions`` holds."""
        return [w for w in self.workspace_roles if self.permissions_in(w) & set(permissions)]
