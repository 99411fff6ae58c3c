"""The role table of ``roles.py`` served as the Admin API's RBAC roles and groups.

``rbac_roles`` are the rows of ``ROLES`` (organization and workspace roles; id = the role's name, source
``built_in``), their permissions the table's actions on the organization. ``rbac_groups`` are the
organization roles as groups of people: group ``rbacgrp_<role>`` holds the role ``<role>`` and its
members are exactly the people with that organization role. Adding a person to a group gives them that
role (a person holds one organization role, so they leave their previous group); removing them from a
group would leave them with no role and is refused — add them to another group instead. Groups are not
created, renamed or deleted: they are the role table.
"""

from __future__ import annotations

from typing import NoReturn

from wisegate.domain.people import PeopleService
from wisegate.domain.roles import ORGANIZATION_ROLES, ROLES, Permission, Role
from wisegate.domain.scope import Scope
from wisegate.errors import InvalidRequest, NotFound
from wisegate.protocol.bounds import echo
from wisegate.records.directory import User

GROUP_PREFIX = "rbacgrp_"
UNAVAILABLE_GROUPS = (
    "Wisegate's RBAC groups are its organization roles (one group per role, see "
    "/v1/organizations/rbac_roles); groups cannot be created, renamed or deleted. Change a person's role by "
    "adding them to another group."
)


def group_id(role_id: str) -> str:
    return GROUP_PREFIX + role_id


class RbacService:
    def __init__(self, people: PeopleService) -> None:
        self._people = people

    def roles(self, scope: Scope) -> list[Role]:
        scope.require_admin()
        return list(ROLES.values())

    def role(self, scope: Scope, role_id: str) -> Role:
        scope.require_admin()
        found = ROLES.get(role_id)
        if found is None:
            raise NotFound(f"rbac role {echo(role_id)} not found")
        return found

    def permissions(self, scope: Scope, role_id: str) -> list[Permission]:
        return sorted(self.role(scope, role_id).permissions, key=list(Permission).index)

    def groups(self, scope: Scope) -> list[Role]:
        """The organization roles, one group each."""
        scope.require_admin()
        return [ROLES[r] for r in ORGANIZATION_ROLES]

    def group(self, scope: Scope, rbac_group_id: str) -> Role:
        scope.require_admin()
        role_id = rbac_group_id.removeprefix(GROUP_PREFIX)
        if not rbac_group_id.startswith(GROUP_PREFIX) or role_id not in ORGANIZATION_ROLES:
            raise NotFound(f"rbac group {echo(rbac_group_id)} not found")
        return ROLES[role_id]

    async def members(self, scope: Scope, rbac_group_id: str) -> list[User]:
        role = self.group(scope, rbac_group_id)
        return sorted(await self._people.list_users(scope, roles=[role.id]), key=lambda u: (u.added_at, u.id))

    async def add_member(self, scope: Scope, rbac_group_id: str, user_id: str) -> User:
        """Give the person the group's organization role."""
        role = self.group(scope, rbac_group_id)
        user = await self._people.get_user(scope, user_id)
        if role.id == "admin" and user.role != "admin":
            raise InvalidRequest(
                "the admin role cannot be given through the API; use the console's Members page"
            )
        if user.role == "admin" and role.id != "admin":
            raise InvalidRequest(
                f"user {user_id} is an admin; an admin's role cannot be changed through the API"
            )
        if user.role == role.id:
            return user
        return await self._people.update_user(scope, user_id, role.id)

    async def refuse_removal(self, scope: Scope, rbac_group_id: str, user_id: str) -> NoReturn:
        """A person cannot leave their role's group without joining another: 404 or 400, always."""
        role = self.group(scope, rbac_group_id)
        user = await self._people.get_user(scope, user_id)
        if user.role != role.id:
            raise NotFound(f"user {echo(user_id)} is not a member of rbac group {echo(rbac_group_id)}")
        raise InvalidRequest(
            f"every person holds one organization role: add user {user_id} to another group (their role "
            f"changes to that group's) instead of removing them from {rbac_group_id}"
        )
