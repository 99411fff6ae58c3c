"""Users and invites of the organization, stored as the Admin API shapes them.

Wisegate has no sign-in of its own (no SSO, no e-mail): an invite is a record. It is accepted with
``wisegate invites accept INVITE_ID --name NAME``, which creates the user with the invite's e-mail and
role. Users matter for workspace membership records; keys do not depend on them.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from wisegate.domain.scope import Scope
from wisegate.errors import InvalidRequest, NotFound
from wisegate.protocol.messages import new_id
from wisegate.storage.directory import DirectoryRepo, Invite, User

INVITE_LIFETIME = timedelta(days=21)
ROLES = frozenset({"user", "developer", "billing", "admin", "claude_code_user"})
ASSIGNABLE_ROLES = frozenset({"user", "developer", "billing", "claude_code_user"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _now() -> datetime:
    return datetime.now(UTC)


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise InvalidRequest(f"email: '{email}' is not a valid email address")
    return email


class PeopleService:
    def __init__(self, directory: DirectoryRepo) -> None:
        self._directory = directory

    async def list_users(
        self, scope: Scope, *, email: str | None = None, roles: list[str] | None = None
    ) -> list[User]:
        users = await self._directory.list_users(scope.organization_id)
        if email:
            users = [u for u in users if u.email == email.strip().lower()]
        if roles:
            users = [u for u in users if u.role in roles]
        return sorted(users, key=lambda u: (u.added_at, u.id), reverse=True)

    async def get_user(self, scope: Scope, user_id: str) -> User:
        user = await self._directory.get_user(user_id)
        if user is None or user.organization_id != scope.organization_id:
            raise NotFound(f"user {user_id} not found")
        return user

    async def update_user(self, scope: Scope, user_id: str, role: str) -> User:
        scope.require_admin()
        await self.get_user(scope, user_id)
        updated = await self._directory.set_user_role(user_id, role)
        assert updated is not None
        return updated

    async def remove_user(self, scope: Scope, user_id: str) -> None:
        scope.require_admin()
        user = await self.get_user(scope, user_id)
        if user.role == "admin":
            raise InvalidRequest(f"user {user_id} is an admin; admins cannot be removed through the API")
        await self._directory.remove_user(user_id)

    def _current(self, invite: Invite) -> Invite:
        if invite.status == "pending" and invite.expires_at <= _now():
            return replace(invite, status="expired")
        return invite

    async def create_invite(self, scope: Scope, email: str, role: str) -> Invite:
        scope.require_admin()
        email = normalize_email(email)
        if await self._directory.user_by_email(scope.organization_id, email) is not None:
            raise InvalidRequest(f"email: {email} is already a member of the organization")
        for invite in await self.list_invites(scope):
            if invite.email == email and invite.status == "pending":
                raise InvalidRequest(
                    f"A pending invite already exists for {email}: {invite.id}",
                    details={"error_code": "invite_already_exists"},
                )
        now = _now()
        invite = Invite(
            id=new_id("invite"),
            organization_id=scope.organization_id,
            email=email,
            role=role,
            status="pending",
            invited_at=now,
            expires_at=now + INVITE_LIFETIME,
            accepted_at=None,
        )
        await self._directory.add_invite(invite)
        return invite

    async def list_invites(
        self,
        scope: Scope,
        *,
        email: str | None = None,
        roles: list[str] | None = None,
        statuses: list[str] | None = None,
    ) -> list[Invite]:
        """Pending, accepted and expired invites (deleted ones are gone), newest first."""
        invites = [
            self._current(i)
            for i in await self._directory.list_invites(scope.organization_id)
            if i.status != "deleted"
        ]
        if email:
            invites = [i for i in invites if i.email == email.strip().lower()]
        if roles:
            invites = [i for i in invites if i.role in roles]
        if statuses:
            invites = [i for i in invites if i.status in statuses]
        return sorted(invites, key=lambda i: (i.invited_at, i.id), reverse=True)

    async def get_invite(self, scope: Scope, invite_id: str) -> Invite:
        invite = await self._directory.get_invite(invite_id)
        if invite is None or invite.organization_id != scope.organization_id or invite.status == "deleted":
            raise NotFound(f"invite {invite_id} not found")
        return self._current(invite)

    async def delete_invite(self, scope: Scope, invite_id: str) -> None:
        scope.require_admin()
        invite = await self.get_invite(scope, invite_id)
        if invite.status == "accepted":
            raise InvalidRequest(f"invite {invite_id} was already accepted")
        await self._directory.set_invite_status(invite_id, "deleted")

    async def accept_invite(self, scope: Scope, invite_id: str, name: str) -> tuple[Invite, User]:
        """Accept a pending invite: the user is created with the invite's e-mail and role."""
        scope.require_admin()
        invite = await self.get_invite(scope, invite_id)
        if invite.status != "pending":
            raise InvalidRequest(f"invite {invite_id} is {invite.status}, not pending")
        if not name.strip():
            raise InvalidRequest("name: must not be empty")
        user = User(new_id("user"), scope.organization_id, invite.email, name.strip(), invite.role, _now())
        accepted = await self._directory.accept_invite(invite_id, user)
        return accepted, user
