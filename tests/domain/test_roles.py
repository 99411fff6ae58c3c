"""The role table: what Anthropic's roles imply, and that docs/roles.md names every role and permission."""

from __future__ import annotations

from pathlib import Path

from wisegate.domain.roles import ORGANIZATION_ROLES, ROLES, WORKSPACE_ROLES, Access, Permission

P = Permission
WORKSPACES = ["wrkspc_default", "wrkspc_team", "wrkspc_other"]


def _access(role: str, memberships: dict[str, str] | None = None) -> Access:
    return Access.of(role, memberships or {}, WORKSPACES, "wrkspc_default")


def test_roles_are_anthropics() -> None:
    assert set(ORGANIZATION_ROLES) == {"user", "developer", "billing", "admin", "claude_code_user"}
    assert set(WORKSPACE_ROLES) == {
        "workspace_user",
        "workspace_developer",
        "workspace_restricted_developer",
        "workspace_admin",
        "workspace_billing",
    }


def test_organization_roles_imply_workspace_roles() -> None:
    admin = _access("admin")
    assert all(admin.allows(p, w) for p in Permission for w in WORKSPACES)
    billing = _access("billing")
    assert billing.allows(P.MANAGE_BILLING) and not billing.allows(P.MANAGE_MEMBERS)
    assert all(billing.allows(P.READ_LIMITS, w) for w in WORKSPACES)
    assert not billing.allows(P.CREATE_OWN_KEYS) and not billing.allows(P.USE_PLAYGROUND)
    developer = _access("developer")
    assert developer.allows(P.CREATE_OWN_KEYS, "wrkspc_default")
    assert not developer.allows(P.CREATE_OWN_KEYS, "wrkspc_team")  # needs a membership there
    assert not developer.allows(P.READ_KEYS) and not developer.allows(P.MANAGE_WORKSPACES)
    user = _access("user")
    assert user.allows(P.USE_PLAYGROUND, "wrkspc_default") and not user.allows(P.CREATE_OWN_KEYS)
    assert user.workspaces_allowing(P.USE_PLAYGROUND) == ["wrkspc_default"]


def test_memberships_add_up() -> None:
    member = _access(
        "developer", {"wrkspc_team": "workspace_admin", "wrkspc_other": "workspace_restricted_developer"}
    )
    assert member.allows(P.MANAGE_KEYS, "wrkspc_team") and not member.allows(P.MANAGE_KEYS, "wrkspc_default")
    assert member.allows(P.CREATE_OWN_KEYS, "wrkspc_other") and not member.allows(
        P.USE_PLAYGROUND, "wrkspc_other"
    )
    assert set(member.workspaces_allowing(P.CREATE_OWN_KEYS)) == set(WORKSPACES)
    both = _access("billing", {"wrkspc_team": "workspace_developer"})
    assert both.permissions_in("wrkspc_team") >= {P.READ_LIMITS, P.CREATE_OWN_KEYS, P.USE_PLAYGROUND}
    assert both.workspace_roles["wrkspc_team"] == ("workspace_developer", "workspace_billing")
    # an archived workspace is not in the list: nothing is allowed there
    assert not _access("admin").allows(P.READ_USAGE, "wrkspc_archived")


def test_the_roles_page_names_every_role_and_permission() -> None:
    page = (Path(__file__).parents[2] / "docs" / "roles.md").read_text()
    for role in ROLES:
        assert f"| `{role}` |" in page, role
    for permission in Permission:
        assert f"| `{permission.value}` |" in page, permission
