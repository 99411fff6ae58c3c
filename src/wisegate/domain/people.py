"""Users and invites of the organization, stored as the Admin API shapes them.

An invite is a record with an accept link, ``/console/invite/<token>``: the token is the HMAC of the
invite id and a random nonce under the console secret, so the Members page can show the link again,
while the database keeps only the token's SHA-256 (and the nonce, useless without the secret). Opening
the link lets the person choose a name and a password (``AccountService.accept_invite``); the link works
once and expires with the invite (21 days). ``wisegate invites accept INVITE_ID --name NAME`` still
accepts one for someone who will only use single sign-on.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from wisegate.domain.roles import WORKSPACE_ROLES
from wisegate.domain.scope import Scope
from wisegate.domain.secret import ConsoleSecret, digest
from wisegate.domain.storable import storable_name
from wisegate.errors import InvalidRequest, NotFound
from wisegate.protocol.bounds import EMAIL_LENGTH, NAME_LENGTH, echo
from wisegate.protocol.messages import new_id
from wisegate.records.directory import Invite, User
from wisegate.storage.directory import DirectoryRepo
from wisegate.storage.repos import TenancyRepo

INVITE_LIFETIME = timedelta(days=21)
ROLES = frozenset({"user", "developer", "billing", "admin", "claude_code_user"})
ASSIGNABLE_ROLES = frozenset({"user", "developer", "billing", "claude_code_user"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _now() -> datetime:
    return datetime.now(UTC)


def normalize_email(email: str) -> str:
    email = storable_name("email", email.strip().lower(), EMAIL_LENGTH)
    if not _EMAIL.match(email):
        raise InvalidRequest(f"email: '{echo(email)}' is not a valid email address")
    return email


INVALID_LINK = (
    "This invite link is not valid: it was already used, deleted, replaced or has expired. "
    "Ask an admin for a new one."
)


class PeopleService:
    def __init__(self, directory: DirectoryRepo, tenancy: TenancyRepo, secret: ConsoleSecret) -> None:
        self._directory = directory
        self._tenancy = tenancy
        self._secret = secret

    def link_token(self, invite: Invite) -> str | None:
        """The token of a pending invite's accept link (None for one that is not pending)."""
        if invite.status != "pending" or invite.token_nonce is None:
            return None
        return self._secret.mac("invite", f"{invite.id}|{invite.token_nonce}")

    def _new_nonce(self, invite_id: str) -> tuple[str, str]:
        nonce = secrets.token_hex(16)
        return nonce, digest(self._secret.mac("invite", f"{invite_id}|{nonce}"))

    async def new_link(self, scope: Scope, invite_id: str) -> Invite:
        """Replace a pending invite's accept link (the old one stops working)."""
        scope.require_admin()
        invite = await self.get_invite(scope, invite_id)
        if invite.status != "pending":
            raise InvalidRequest(f"invite {invite_id} is {invite.status}, not pending")
        nonce, token_hash = self._new_nonce(invite_id)
        updated = await self._directory.set_invite_token(invite_id, nonce, token_hash)
        assert updated is not None
        return updated

    async def invite_for_token(self, token: str) -> Invite:
        """The pending invite of an accept link; 404 for a link that is unknown, used or expired."""
        if not token or len(token) > 128:
            raise NotFound(INVALID_LINK)
        invite = await self._directory.invite_by_token_hash(digest(token))
        if invite is None or self._current(invite).status != "pending":
            raise NotFound(INVALID_LINK)
        return invite

    async def pending_invite_for(self, organization_id: str, email: str) -> Invite | None:
        for invite in await self._directory.list_invites(organization_id):
            if invite.email == email and self._current(invite).status == "pending":
                return invite
        return None

    async def accept_by_token(
        self, invite: Invite, name: str, *, password_hash: str | None, sso_subject: str | None = None
    ) -> User:
        user = User(new_id("user"), invite.organization_id, invite.email, name, invite.role, _now())
        live = [
            w.id for w in await self._tenancy.list_workspaces(invite.organization_id) if w.archived_at is None
        ]
        grants = tuple(g for g in invite.workspace_grants if g[0] in live)
        if grants != invite.workspace_grants:
            await self._directory.set_invite_grants(invite.id, grants)
        accepted = await self._directory.accept_invite(
            invite.id, user, password_hash=password_hash, sso_subject=sso_subject
        )
        if accepted is None:
            raise NotFound(INVALID_LINK)
        return user

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
            raise NotFound(f"user {echo(user_id)} not found")
        return user

    async def update_user(self, scope: Scope, user_id: str, role: str) -> User:
        """The Admin API's role change: neither to nor from ``admin`` (as at Anthropic) — that is the
        console's Members page or ``wisegate users set-role`` (``AccountService.change_role``)."""
        scope.require_admin()
        user = await self.get_user(scope, user_id)
        if user.role == "admin" and role != "admin":
            raise InvalidRequest(
                f"user {user_id} is an admin; an admin's role cannot be changed through the API. Use the "
                "console's Members page or: wisegate users set-role EMAIL ROLE"
            )
        updated = await self._directory.set_user_role(user_id, role)
        assert updated is not None
        return updated

    async def remove_user(self, scope: Scope, user_id: str) -> None:
        """Remove a person from the organization. Not an admin (as at Anthropic), nor a workspace's last
        workspace admin (400 naming the workspace), as ``TenancyService.remove_member`` refuses."""
        scope.require_admin()
        user = await self.get_user(scope, user_id)
        if user.role == "admin":
            raise InvalidRequest(f"user {user_id} is an admin; admins cannot be removed through the API")
        removed = await self._directory.remove_user(user_id)
        if isinstance(removed, str):
            raise InvalidRequest(
                f"{user.email} is the last workspace admin of workspace {removed} and cannot leave the "
                "organization: make another member its workspace admin first (or archive the workspace)."
            )

    def _current(self, invite: Invite) -> Invite:
        if invite.status == "pending" and invite.expires_at <= _now():
            return replace(invite, status="expired")
        return invite

    async def _check_grants(
        self, scope: Scope, grants: Sequence[tuple[str, str]]
    ) -> tuple[tuple[str, str], ...]:
        checked: dict[str, str] = {}
        for workspace_id, workspace_role in grants:
            if workspace_role not in WORKSPACE_ROLES or workspace_role == "workspace_billing":
                allowed = ", ".join(r for r in WORKSPACE_ROLES if r != "workspace_billing")
                raise InvalidRequest(f"workspace_role: '{echo(workspace_role)}' is not one of {allowed}")
            workspace = await self._tenancy.get_workspace(workspace_id)
            if workspace is None or workspace.organization_id != scope.organization_id:
                raise NotFound(f"workspace {echo(workspace_id)} not found")
            if workspace.archived_at is not None:
                raise InvalidRequest(f"workspace {workspace_id} is archived")
            checked[workspace_id] = workspace_role
        return tuple(checked.items())

    async def create_invite(
        self, scope: Scope, email: str, role: str, workspace_grants: Sequence[tuple[str, str]] = ()
    ) -> Invite:
        """A pending invite (with its accept link); ``workspace_grants``: (workspace id, workspace role)
        memberships the person gets on accepting."""
        scope.require_admin()
        if role not in ASSIGNABLE_ROLES:
            raise InvalidRequest(f"role: '{echo(role)}' is not one of {', '.join(sorted(ASSIGNABLE_ROLES))}")
        grants = await self._check_grants(scope, workspace_grants)
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
        invite_id = new_id("invite")
        nonce, token_hash = self._new_nonce(invite_id)
        invite = Invite(
            id=invite_id,
            organization_id=scope.organization_id,
            email=email,
            role=role,
            status="pending",
            invited_at=now,
            expires_at=now + INVITE_LIFETIME,
            accepted_at=None,
            workspace_grants=grants,
            token_nonce=nonce,
        )
        await self._directory.add_invite(invite, token_hash)
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
            raise NotFound(f"invite {echo(invite_id)} not found")
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
        storable_name("name", name.strip(), NAME_LENGTH)
        user = User(new_id("user"), scope.organization_id, invite.email, name.strip(), invite.role, _now())
        accepted = await self._directory.accept_invite(invite_id, user)
        if accepted is None:
            raise InvalidRequest(f"invite {invite_id} was accepted meanwhile")
        return accepted, user
