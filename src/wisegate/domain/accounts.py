"""People signing in to the console: passwords, sessions, throttling, invite links and the audit record.

**Passwords** are hashed with argon2id (``argon2-cffi``'s defaults) and never logged or stored
otherwise. A sign-in with an unknown e-mail costs the same hash check as a wrong password and gets
the same answer.

**Sessions** live in a table: the cookie holds a random token, the table its SHA-256. Signing in makes
a new session (a session id held before is ended: no fixation); signing out ends it, a password change
ends every session of the person; an ended or expired session is refused on the next request, wherever
its cookie was copied to.

**Throttling**: failed sign-ins are counted per account (the e-mail typed, known or not) and per client
address. Past ``ACCOUNT_FREE`` (resp. ``ADDRESS_FREE``) failures the subject is blocked for one second,
doubled with each further failure up to ``BLOCK_CAP``; a quiet ``RESET_AFTER`` starts the count again,
and a successful sign-in clears the account's count (not the address's). The same counter slows down
guessing invite links (``LINK_FREE`` links that are not valid per address) and a current password on
*Change password* (``ACCOUNT_FREE`` wrong ones per person). Wisegate has no self-service password
reset (no e-mail is sent), so there is no reset link to throttle.

**Audit**: sign-ins, failures, sign-outs and every change a person makes are recorded (never a password
or a key's secret).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from wisegate.domain.clock import Clock
from wisegate.domain.keys import KeyService
from wisegate.domain.people import PeopleService
from wisegate.domain.roles import ORGANIZATION_ROLES, Access
from wisegate.domain.scope import Scope
from wisegate.domain.secret import digest
from wisegate.domain.sso import Identity, SingleSignOn
from wisegate.domain.storable import storable_name
from wisegate.errors import AuthenticationFailed, InvalidRequest, NotFound, PermissionDenied, RateLimited
from wisegate.protocol.bounds import EMAIL_LENGTH, NAME_LENGTH, echo
from wisegate.protocol.messages import new_id
from wisegate.protocol.numbers import seconds
from wisegate.records.accounts import AuditEvent, ConsoleSession
from wisegate.records.directory import Invite, User
from wisegate.records.tenancy import ApiKey
from wisegate.storage.accounts import AccountRepo
from wisegate.storage.directory import DirectoryRepo
from wisegate.storage.repos import TenancyRepo

ACCOUNT_FREE = 5
ADDRESS_FREE = 30
LINK_FREE = 10  # invite links that are not valid, per client address
BLOCK_BASE_SECONDS = 1.0
BLOCK_CAP = 900.0
RESET_AFTER = timedelta(minutes=15)
TOUCH_EVERY = timedelta(minutes=1)
HASHING_AT_ONCE = 2
PASSWORD_MIN = 10
PASSWORD_MAX = 1024  # bounded before hashing
WRONG = "Email or password is incorrect."


@dataclass(frozen=True, slots=True)
class Client:
    """Where a sign-in comes from (recorded with the session and in the audit record)."""

    ip: str
    user_agent: str


@dataclass(frozen=True, slots=True)
class Viewer:
    """The person (or bootstrap admin key) behind a console session, and what they may do."""

    session: ConsoleSession
    organization_id: str
    access: Access
    user: User | None = None
    admin_key: ApiKey | None = None

    @property
    def actor_type(self) -> str:
        return "user" if self.user else "admin_key"

    @property
    def actor_id(self) -> str:
        if self.user is not None:
            return self.user.id
        assert self.admin_key is not None
        return self.admin_key.id

    @property
    def label(self) -> str:
        if self.user is not None:
            return self.user.name or self.user.email
        assert self.admin_key is not None
        return f"{self.admin_key.name} · {self.admin_key.partial_key_hint}"


def check_password(password: str) -> str:
    """A new password within bounds (400 otherwise)."""
    if len(password) < PASSWORD_MIN:
        raise InvalidRequest(f"Password: at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise InvalidRequest(f"Password: at most {PASSWORD_MAX} characters")
    return password


class AccountService:
    def __init__(
        self,
        repo: AccountRepo,
        directory: DirectoryRepo,
        tenancy: TenancyRepo,
        keys: KeyService,
        people: PeopleService,
        clock: Clock,
        session_seconds: int,
    ) -> None:
        self._people = people
        self._repo = repo
        self._directory = directory
        self._tenancy = tenancy
        self._keys = keys
        self._clock = clock
        self.session_seconds = session_seconds
        self._hasher = PasswordHasher()
        self._dummy: str | None = None
        # argon2id takes ~64 MiB and tens of milliseconds a check: off the event loop, a few at a time.
        self._hashing = asyncio.Semaphore(HASHING_AT_ONCE)
        self.account_free = ACCOUNT_FREE
        self.address_free = ADDRESS_FREE

    async def hash_password(self, password: str) -> str:
        check_password(password)
        async with self._hashing:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def _verify(self, stored: str | None, password: str) -> bool:
        async with self._hashing:
            return await asyncio.to_thread(self._verify_now, stored, password)

    def _verify_now(self, stored: str | None, password: str) -> bool:
        if stored is None:  # spend the same time as a real check, so a missing account does not show
            if self._dummy is None:
                self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
            stored, password = self._dummy, password + "\0"
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    async def audit(
        self,
        organization_id: str,
        actor: Viewer | None,
        action: str,
        *,
        target: str | None = None,
        client: Client | None = None,
        detail: dict[str, str] | None = None,
    ) -> None:
        await self._repo.add_audit(
            AuditEvent(
                organization_id,
                self._clock.now(),
                actor.actor_type if actor else "anonymous",
                actor.actor_id if actor else None,
                action,
                target,
                client.ip if client else None,
                detail,
            )
        )

    async def audit_key(self, key: ApiKey, action: str, *, target: str | None, ip: str | None) -> None:
        """A change made with an admin key through the Admin API."""
        await self._repo.add_audit(
            AuditEvent(
                key.organization_id,
                self._clock.now(),
                "admin_key",
                key.id,
                action,
                target,
                ip,
                None,
            )
        )

    async def change_role(
        self, organization_id: str, actor: Viewer | None, user_id: str, role: str, client: Client | None
    ) -> User:
        """Give a person another organization role — ``admin`` included (the console's Members page and
        ``wisegate users set-role``; ``actor`` None: the command line). The organization's last admin
        keeps the role (400 saying why). Audited as ``user.role_changed`` (from, to); the person's
        sessions see the new role on their next request."""
        if role not in ORGANIZATION_ROLES:
            raise InvalidRequest(f"Role: '{echo(role)}' is not one of {', '.join(ORGANIZATION_ROLES)}")
        user = await self._people.get_user(Scope(organization_id, None), user_id)
        changed = await self._directory.change_role(user.id, role)
        if changed is None:
            raise NotFound(f"user {echo(user_id)} not found")
        if isinstance(changed, str):
            raise InvalidRequest(
                f"{user.email} is the organization's last admin and cannot stop being one: make someone "
                f"else an admin first (Members page, or: wisegate users set-role EMAIL admin)."
            )
        updated, previous = changed
        if previous != role:
            event = AuditEvent(
                organization_id,
                self._clock.now(),
                actor.actor_type if actor else "cli",
                actor.actor_id if actor else None,
                "user.role_changed",
                user.id,
                client.ip if client else None,
                {"email": user.email, "from": previous, "to": role},
            )
            await self._repo.add_audit(event)
        return updated

    async def audit_log(self, organization_id: str, *, actor_id: str | None = None) -> list[AuditEvent]:
        return await self._repo.audit(organization_id, actor_id=actor_id)

    async def _throttled(self, subjects: list[str], what: str = "failed sign-ins") -> None:
        now = self._clock.now()
        for throttle in await self._repo.throttles(subjects):
            if throttle.blocked_until is not None and throttle.blocked_until > now:
                wait = max(1, int((throttle.blocked_until - now).total_seconds() + 0.999))
                raise RateLimited(f"Too many {what}. Try again in {seconds(wait)}.", retry_after=wait)

    async def _count_failure(self, subject: str, free: int) -> None:
        now = self._clock.now()
        await self._repo.record_failure(
            subject,
            now,
            reset_before=now - RESET_AFTER,
            free=free,
            base_seconds=BLOCK_BASE_SECONDS,
            cap=BLOCK_CAP,
        )

    async def invite_for_link(self, token: str, client: Client) -> Invite:
        """The pending invite of an accept link (``PeopleService.invite_for_token``), with links that are
        not valid counted per client address: past ``LINK_FREE`` of them the address is blocked (429) as a
        failed sign-in is — guessing links is slowed down, not only improbable."""
        subject = f"link:{client.ip}"
        await self._throttled([subject], "invite links that are not valid")
        try:
            return await self._people.invite_for_token(token)
        except NotFound:
            await self._count_failure(subject, LINK_FREE)
            raise

    async def _failed(self, organization_id: str, email: str, client: Client, reason: str) -> None:
        now = self._clock.now()
        for subject, free in ((f"email:{email}", self.account_free), (f"ip:{client.ip}", self.address_free)):
            await self._repo.record_failure(
                subject,
                now,
                reset_before=now - RESET_AFTER,
                free=free,
                base_seconds=BLOCK_BASE_SECONDS,
                cap=BLOCK_CAP,
            )
        await self.audit(
            organization_id, None, "sign_in.failed", target=email, client=client, detail={"reason": reason}
        )

    async def sign_in(
        self, organization_id: str, email: str, password: str, client: Client, *, replaces: str | None
    ) -> tuple[str, Viewer]:
        """A new session for the person with that e-mail and password: (cookie token, viewer).

        401 with the same message whether the e-mail is unknown or the password wrong; 429 while
        throttled (before the password is checked)."""
        # An address with a NUL cannot be anyone's (none is stored): U+FFFD keeps it unmatched, and
        # storable for the throttle and the audit trail on PostgreSQL.
        email = email.strip().lower()[:EMAIL_LENGTH].replace("\x00", "\ufffd")
        await self._throttled([f"email:{email}", f"ip:{client.ip}"])
        if len(password) > PASSWORD_MAX:
            password = password[: PASSWORD_MAX + 1]  # still checked (and wrong): bounded work
        found = await self._repo.credentials(organization_id, email)
        stored = found[1] if found else None
        ok = await self._verify(stored, password)
        if not ok or found is None:
            await self._failed(
                organization_id, email, client, "no such account" if found is None else "password"
            )
            raise AuthenticationFailed(WRONG)
        user = found[0]
        await self._repo.clear_throttle(f"email:{email}")
        if stored is not None and self._hasher.check_needs_rehash(stored):
            await self._repo.set_password_hash(user.id, await self.hash_password(password))
        return await self.open_session(user, client, replaces=replaces, method="password")

    async def open_session(
        self, user: User, client: Client, *, replaces: str | None, method: str
    ) -> tuple[str, Viewer]:
        token, record = self._new_session(user.organization_id, client, user_id=user.id)
        await self._repo.add_session(record, replaces=replaces)
        viewer = await self._viewer_of_user(record, user)
        await self.audit(user.organization_id, viewer, "sign_in", client=client, detail={"method": method})
        return token, viewer

    async def open_admin_key_session(
        self, key: ApiKey, client: Client, *, replaces: str | None
    ) -> tuple[str, Viewer]:
        """The bootstrap login: a session of an admin key (acts as an organization admin)."""
        token, record = self._new_session(key.organization_id, client, admin_key_id=key.id)
        await self._repo.add_session(record, replaces=replaces)
        viewer = await self._viewer_of_key(record, key)
        await self.audit(
            key.organization_id, viewer, "sign_in", client=client, detail={"method": "admin_key"}
        )
        return token, viewer

    def _new_session(
        self,
        organization_id: str,
        client: Client,
        *,
        user_id: str | None = None,
        admin_key_id: str | None = None,
    ) -> tuple[str, ConsoleSession]:
        token = secrets.token_urlsafe(32)
        now = self._clock.now()
        record = ConsoleSession(
            digest(token),
            organization_id,
            user_id,
            admin_key_id,
            now,
            now,
            now + timedelta(seconds=self.session_seconds),
            None,
            client.ip,
            client.user_agent,
        )
        return token, record

    async def viewer(self, token: str | None) -> Viewer | None:
        """The viewer of a session cookie, or None when it is unknown, ended or expired (or its person or
        admin key no longer may sign in)."""
        if not token or len(token) > 256:
            return None
        record = await self._repo.get_session(digest(token))
        now = self._clock.now()
        if record is None or record.ended_at is not None or record.expires_at <= now:
            return None
        if now - record.last_seen_at > TOUCH_EVERY:
            await self._repo.touch_session(record.id, now)
        if record.user_id is not None:
            user = await self._directory.get_user(record.user_id)
            if user is None or user.organization_id != record.organization_id:
                return None
            return await self._viewer_of_user(record, user)
        key = await self._keys.get(record.admin_key_id or "")
        if key is None or key.kind != "admin" or key.status != "active":
            return None
        return await self._viewer_of_key(record, key)

    async def _active_workspaces(self, organization_id: str) -> tuple[list[str], str]:
        workspaces = await self._tenancy.list_workspaces(organization_id)
        default = workspaces[0].id if workspaces else ""
        return [w.id for w in workspaces if w.archived_at is None], default

    async def _viewer_of_user(self, record: ConsoleSession, user: User) -> Viewer:
        active, default = await self._active_workspaces(user.organization_id)
        members = {m.workspace_id: m.workspace_role for m in await self._directory.memberships_of(user.id)}
        return Viewer(record, user.organization_id, Access.of(user.role, members, active, default), user=user)

    async def _viewer_of_key(self, record: ConsoleSession, key: ApiKey) -> Viewer:
        active, default = await self._active_workspaces(key.organization_id)
        return Viewer(record, key.organization_id, Access.of("admin", {}, active, default), admin_key=key)

    async def sign_out(self, viewer: Viewer, client: Client) -> None:
        await self._repo.end_sessions(self._clock.now(), session_id=viewer.session.id)
        await self.audit(viewer.organization_id, viewer, "sign_out", client=client)

    async def sessions(self, viewer: Viewer) -> list[ConsoleSession]:
        if viewer.user is None:
            return [viewer.session]
        return await self._repo.open_sessions(viewer.user.id, self._clock.now())

    async def end_session(self, viewer: Viewer, session_id: str, client: Client) -> None:
        """End one of the viewer's own sessions (by its id, as the Sessions list shows it)."""
        mine = {s.id for s in await self.sessions(viewer)}
        if session_id not in mine or session_id == viewer.session.id:
            raise InvalidRequest("That session is not one of your other open sessions.")
        await self._repo.end_sessions(self._clock.now(), session_id=session_id)
        await self.audit(
            viewer.organization_id, viewer, "session.ended", target=session_id[:12], client=client
        )

    async def sign_out_others(self, viewer: Viewer, client: Client) -> int:
        if viewer.user is None:
            return 0
        ended = await self._repo.end_sessions(
            self._clock.now(), user_id=viewer.user.id, keep=viewer.session.id
        )
        await self.audit(
            viewer.organization_id,
            viewer,
            "session.ended_others",
            client=client,
            detail={"ended": str(ended)},
        )
        return ended

    async def change_password(
        self, viewer: Viewer, current: str, new: str, client: Client
    ) -> tuple[str, Viewer]:
        """Check the current password, store the new one and end every session of the person; returns a
        fresh session for this browser."""
        user = self._person(viewer)
        # A session alone (a borrowed or stolen cookie) must not make guessing the password cheap.
        subject = f"password:{user.id}"
        await self._throttled([subject], "wrong current passwords")
        stored = await self._repo.password_hash(user.id)
        if stored is not None and not await self._verify(stored, current[: PASSWORD_MAX + 1]):
            await self._count_failure(subject, ACCOUNT_FREE)
            await self.audit(viewer.organization_id, viewer, "password.change_failed", client=client)
            raise InvalidRequest("Current password: that is not your password.")
        if stored is None and current:
            raise InvalidRequest("Current password: you have none yet (you signed in with single sign-on).")
        await self._repo.set_password_hash(user.id, await self.hash_password(new))
        await self._repo.end_sessions(self._clock.now(), user_id=user.id)
        await self.audit(viewer.organization_id, viewer, "password.changed", client=client)
        return await self.open_session(user, client, replaces=None, method="password_change")

    async def rename(self, viewer: Viewer, name: str, client: Client) -> User:
        user = self._person(viewer)
        name = name.strip()
        if not name or len(name) > NAME_LENGTH:
            raise InvalidRequest(f"Name: between 1 and {NAME_LENGTH} characters")
        storable_name("Name", name, NAME_LENGTH)
        updated = await self._repo.set_name(user.id, name)
        assert updated is not None
        await self.audit(
            viewer.organization_id, viewer, "profile.updated", client=client, detail={"name": name}
        )
        return updated

    def _person(self, viewer: Viewer) -> User:
        if viewer.user is None:
            raise InvalidRequest("An admin key has no account settings; sign in as a person for those.")
        return viewer.user

    async def accept_invite(self, token: str, name: str, password: str, client: Client) -> tuple[str, Viewer]:
        """Accept the invite of an accept link: the person chooses a name and a password, gets the
        invite's role and workspace memberships, and is signed in. The link works once."""
        invite = await self._people.invite_for_token(token)
        name = name.strip()
        if not name or len(name) > NAME_LENGTH:
            raise InvalidRequest(f"Name: between 1 and {NAME_LENGTH} characters")
        storable_name("Name", name, NAME_LENGTH)
        password_hash = await self.hash_password(password)
        user = await self._people.accept_by_token(invite, name, password_hash=password_hash)
        await self.audit(
            user.organization_id,
            None,
            "invite.accepted",
            target=invite.id,
            client=client,
            detail={"user": user.id},
        )
        return await self.open_session(user, client, replaces=None, method="invite")

    async def sign_in_sso(
        self,
        organization_id: str,
        identity: Identity,
        sso: SingleSignOn,
        client: Client,
        *,
        replaces: str | None,
    ) -> tuple[str, Viewer]:
        """Sign in the person the provider vouched for: the user linked to that subject, else the user
        with that e-mail (linked now; one linked to another subject is refused, 403), else a pending
        invite for it (accepted now), else — when the settings say ``create`` — a new user with the
        default role; otherwise 403."""
        user = await self._repo.user_by_sso_subject(organization_id, identity.subject)
        if user is None:
            found = await self._repo.credentials(organization_id, identity.email)
            if found is not None:
                if not await self._repo.link_sso_subject(found[0].id, identity.subject):
                    # Linked to another subject: someone else at the provider now presents this e-mail
                    # (a reassigned address, an unverified claim). Never let them take the account over.
                    await self._refuse_sso(
                        organization_id,
                        identity.email,
                        client,
                        "sso: e-mail linked to another provider subject",
                        f"Single sign-on refused: the account of {identity.email} is linked to another "
                        "identity at the provider. Sign in with that identity, or ask an admin.",
                    )
                user = found[0]
        if user is None:
            invite = await self._people.pending_invite_for(organization_id, identity.email)
            if invite is not None:
                user = await self._people.accept_by_token(
                    invite, identity.name, password_hash=None, sso_subject=identity.subject
                )
                await self.audit(
                    organization_id,
                    None,
                    "invite.accepted",
                    target=invite.id,
                    client=client,
                    detail={"user": user.id, "method": "sso"},
                )
        if user is None and sso.new_users == "create":
            user = User(
                new_id("user"),
                organization_id,
                identity.email,
                identity.name,
                sso.default_role,
                self._clock.now(),
            )
            await self._repo.add_user(user, sso_subject=identity.subject)
            await self.audit(
                organization_id, None, "user.created", target=user.id, client=client, detail={"method": "sso"}
            )
        if user is None:
            await self._refuse_sso(
                organization_id,
                identity.email,
                client,
                "sso: no account or invite",
                f"{identity.email} has no account here yet. "
                "Ask an admin to invite this address, then sign in again.",
            )
        return await self.open_session(user, client, replaces=replaces, method="sso")

    async def _refuse_sso(
        self, organization_id: str, email: str, client: Client, reason: str, message: str
    ) -> NoReturn:
        """Audit a refused single sign-on as a failed sign-in, then refuse it (403)."""
        await self.audit(
            organization_id, None, "sign_in.failed", target=email, client=client, detail={"reason": reason}
        )
        raise PermissionDenied(message)

    async def end_sessions_of_key(self, key_id: str) -> None:
        await self._repo.end_sessions(self._clock.now(), admin_key_id=key_id)

    async def forget_old(self) -> int:
        """Drop sessions over for a week and failure counts quiet for a day (run at start-up)."""
        now = self._clock.now()
        return await self._repo.forget(now - timedelta(days=7), now - timedelta(days=1))
