"""Accounts on both databases: password sign-in, throttling, server-side sessions, invite links, SSO
linking and the audit record, driven through the services with a manual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import settings_for
from tests.storage.test_repos import database_url  # noqa: F401  (the parametrized fixture)
from wisegate.domain.accounts import ACCOUNT_FREE, RESET_AFTER, WRONG, Client
from wisegate.domain.clock import ManualClock
from wisegate.domain.scope import Scope
from wisegate.domain.secret import digest
from wisegate.domain.sso import Identity, SingleSignOn
from wisegate.errors import AuthenticationFailed, InvalidRequest, NotFound, PermissionDenied, RateLimited
from wisegate.services import Services
from wisegate.storage.db import migrate

HERE = Client("10.0.0.1", "pytest")
PASSWORD = "correct horse battery"


def _run(
    database_url: str,  # noqa: F811
    tmp_path: Path,
    work: Callable[[Services, Scope, ManualClock], Awaitable[None]],
) -> None:
    migrate(database_url)
    clock = ManualClock(datetime(2026, 1, 5, 12, 0, tzinfo=UTC))

    async def run() -> None:
        services = Services.from_settings(
            settings_for(tmp_path, database_url=database_url, console_session_seconds=3600), clock=clock
        )
        try:
            org = await services.keys.bootstrap()
            await work(services, Scope(org.id, None), clock)
        finally:
            await services.db.close()

    asyncio.run(run())


async def _person(services: Services, scope: Scope, email: str, role: str = "developer") -> str:
    """An invited person who accepted their link; returns the link's token (used up)."""
    invite = await services.people.create_invite(scope, email, role)
    token = services.people.link_token(invite)
    assert token is not None
    await services.accounts.accept_invite(token, email.split("@")[0], PASSWORD, HERE)
    return token


def test_password_sign_in_and_throttling(database_url: str, tmp_path: Path) -> None:  # noqa: F811
    async def work(services: Services, scope: Scope, clock: ManualClock) -> None:
        accounts = services.accounts
        org = scope.organization_id
        await _person(services, scope, "ada@example.com")
        token, viewer = await accounts.sign_in(org, " Ada@Example.com ", PASSWORD, HERE, replaces=None)
        assert viewer.user is not None and viewer.user.email == "ada@example.com"
        assert (await accounts.viewer(token)) is not None

        # an unknown e-mail and a wrong password get the same answer, and the same throttle
        answers = set()
        for email, password in (("nobody@example.com", PASSWORD), ("ada@example.com", "wrong password")):
            with pytest.raises(AuthenticationFailed) as caught:
                await accounts.sign_in(org, email, password, HERE, replaces=None)
            answers.add(caught.value.message)
        assert answers == {WRONG}
        for email in ("ada@example.com", "nobody@example.com"):
            for _ in range(ACCOUNT_FREE - 1):  # each had one failure already
                with pytest.raises(AuthenticationFailed):
                    await accounts.sign_in(org, email, "wrong password", HERE, replaces=None)
            # blocked now, even with the right password (and the same way for an unknown e-mail)
            with pytest.raises(RateLimited, match=r"Try again in 1 second\."):
                await accounts.sign_in(org, email, PASSWORD, HERE, replaces=None)
        clock.advance(seconds=1)
        await accounts.sign_in(org, "ada@example.com", PASSWORD, HERE, replaces=None)  # and it clears
        for _ in range(ACCOUNT_FREE):
            with pytest.raises(AuthenticationFailed):
                await accounts.sign_in(org, "ada@example.com", "wrong", HERE, replaces=None)
        clock.advance(seconds=1)
        with pytest.raises(AuthenticationFailed):  # one more failure: the block doubles (from any address)
            await accounts.sign_in(org, "ada@example.com", "wrong", Client("10.0.0.9", "x"), replaces=None)
        with pytest.raises(RateLimited, match="Try again in 2 seconds"):
            await accounts.sign_in(org, "ada@example.com", PASSWORD, Client("10.0.0.9", "x"), replaces=None)
        clock.advance(seconds=RESET_AFTER.total_seconds())
        await accounts.sign_in(org, "ada@example.com", PASSWORD, HERE, replaces=None)

        # per client address: many e-mails from one address (a lower bound than the default 30, to keep
        # the test's password checks few)
        accounts.address_free = 8
        spray = Client("10.9.9.9", "spray")
        with pytest.raises(RateLimited):
            for n in range(200):
                with pytest.raises(AuthenticationFailed):
                    await accounts.sign_in(org, f"u{n}@example.com", "x" * 12, spray, replaces=None)
        assert n == 8
        with pytest.raises(RateLimited):  # the right password does not pass a blocked address
            await accounts.sign_in(org, "ada@example.com", PASSWORD, spray, replaces=None)

        events = await accounts.audit_log(org)
        actions = [e.action for e in events]
        assert "sign_in" in actions and "sign_in.failed" in actions and "invite.accepted" in actions
        failed = next(e for e in events if e.action == "sign_in.failed" and e.target == "nobody@example.com")
        assert failed.detail == {"reason": "no such account"} and failed.ip == "10.0.0.1"
        assert all(PASSWORD not in str(e.detail) for e in events)

    _run(database_url, tmp_path, work)


def test_sessions_end_on_sign_out_password_change_and_expiry(database_url: str, tmp_path: Path) -> None:  # noqa: F811
    async def work(services: Services, scope: Scope, clock: ManualClock) -> None:
        accounts = services.accounts
        org = scope.organization_id
        await _person(services, scope, "bo@example.com")
        first, viewer = await accounts.sign_in(org, "bo@example.com", PASSWORD, HERE, replaces=None)
        second, _ = await accounts.sign_in(org, "bo@example.com", PASSWORD, HERE, replaces=None)
        # signing in again from the browser that held `second` ends it (a new id, no fixation)
        third, third_viewer = await accounts.sign_in(
            org, "bo@example.com", PASSWORD, HERE, replaces=digest(second)
        )
        assert third != second and await accounts.viewer(second) is None
        open_ids = {s.id for s in await accounts.sessions(third_viewer)}
        assert {digest(first), digest(third)} <= open_ids and digest(second) not in open_ids

        await accounts.sign_out(viewer, HERE)
        assert await accounts.viewer(first) is None and await accounts.viewer(third) is not None

        fourth, _ = await accounts.sign_in(org, "bo@example.com", PASSWORD, HERE, replaces=None)
        with pytest.raises(InvalidRequest, match="not your password"):
            await accounts.change_password(third_viewer, "wrong", "a new password!", HERE)
        with pytest.raises(InvalidRequest, match="at least 10"):
            await accounts.change_password(third_viewer, PASSWORD, "short", HERE)
        fresh, _ = await accounts.change_password(third_viewer, PASSWORD, "a new password!", HERE)
        assert await accounts.viewer(third) is None and await accounts.viewer(fourth) is None
        assert await accounts.viewer(fresh) is not None
        with pytest.raises(AuthenticationFailed):
            await accounts.sign_in(org, "bo@example.com", PASSWORD, HERE, replaces=None)
        other, _ = await accounts.sign_in(org, "bo@example.com", "a new password!", HERE, replaces=None)

        fresh_viewer = await accounts.viewer(fresh)
        assert fresh_viewer is not None
        assert await accounts.sign_out_others(fresh_viewer, HERE) == 1  # `other`; the rest ended already
        assert await accounts.viewer(other) is None

        clock.advance(seconds=3599)
        assert await accounts.viewer(fresh) is not None
        clock.advance(seconds=1)
        assert await accounts.viewer(fresh) is None  # expired

        # nothing secret is stored: the session table holds hashes, the users table argon2id hashes
        async with services.db.read() as session:
            ids = (await session.execute(text("select id from console_sessions"))).scalars().all()
            hashes = (await session.execute(text("select password_hash from users"))).scalars().all()
        assert fresh not in ids and digest(fresh) in ids
        assert all(h.startswith("$argon2id$") for h in hashes)

        clock.advance(days=8)  # housekeeping at start-up drops sessions over for a week
        assert await accounts.forget_old() >= len(ids)
        async with services.db.read() as session:
            assert (await session.execute(text("select count(*) from console_sessions"))).scalar_one() == 0

    _run(database_url, tmp_path, work)


def test_invite_links(database_url: str, tmp_path: Path) -> None:  # noqa: F811
    async def work(services: Services, scope: Scope, clock: ManualClock) -> None:
        people, accounts = services.people, services.accounts
        team = await services.tenancy.create_workspace(scope, "Team")
        invite = await people.create_invite(
            scope, "cy@example.com", "developer", [(team.workspace.id, "workspace_admin")]
        )
        token = people.link_token(invite)
        assert token and people.link_token(await people.get_invite(scope, invite.id)) == token
        async with services.db.read() as session:
            stored = (await session.execute(text("select token_hash from invites"))).scalar_one()
        assert stored == digest(token) and token not in stored

        with pytest.raises(NotFound, match="not valid"):
            await people.invite_for_token(token[:-1] + ("0" if token[-1] != "0" else "1"))
        with pytest.raises(InvalidRequest, match="at least 10"):
            await accounts.accept_invite(token, "Cy", "short", HERE)
        session_token, viewer = await accounts.accept_invite(token, "Cy", PASSWORD, HERE)
        assert viewer.user is not None and viewer.user.role == "developer"
        assert viewer.access.workspace_roles[team.workspace.id] == ("workspace_admin",)
        with pytest.raises(NotFound, match="not valid"):  # single use
            await accounts.accept_invite(token, "Cy again", PASSWORD, HERE)
        assert (await people.get_invite(scope, invite.id)).status == "accepted"

        # a new link replaces the old one; an expired invite's link is dead
        second = await people.create_invite(scope, "di@example.com", "user")
        old = people.link_token(second)
        renewed = await people.new_link(scope, second.id)
        new = people.link_token(renewed)
        assert old and new and old != new
        with pytest.raises(NotFound):
            await people.invite_for_token(old)
        assert (await people.invite_for_token(new)).id == second.id
        with pytest.raises(InvalidRequest, match="workspace_role"):
            await people.create_invite(
                scope, "x@example.com", "user", [(team.workspace.id, "workspace_billing")]
            )
        async with services.db.write() as session:
            await session.execute(
                text("update invites set expires_at = :t where id = :id"),
                {"t": datetime.now(UTC) - timedelta(seconds=1), "id": second.id},
            )
        with pytest.raises(NotFound, match="expired"):
            await people.invite_for_token(new)

    _run(database_url, tmp_path, work)


def test_single_sign_on_links_invites_or_creates(database_url: str, tmp_path: Path) -> None:  # noqa: F811
    async def work(services: Services, scope: Scope, clock: ManualClock) -> None:
        accounts, org = services.accounts, scope.organization_id
        sso = SingleSignOn(
            "https://idp.example",
            "c",
            "s",
            services.secret,
            allowed_domains=[],
            new_users="invite",
            default_role="user",
        )
        stranger = Identity("eve@example.com", "https://idp.example 1", "Eve")
        with pytest.raises(PermissionDenied, match="no account here yet"):
            await accounts.sign_in_sso(org, stranger, sso, HERE, replaces=None)
        await services.people.create_invite(scope, "eve@example.com", "billing")
        _, viewer = await accounts.sign_in_sso(org, stranger, sso, HERE, replaces=None)
        assert viewer.user is not None and viewer.user.role == "billing" and viewer.user.name == "Eve"
        # the same subject later, with a changed e-mail, is the same person
        moved = Identity("eve@new.example", "https://idp.example 1", "Eve")
        _, again = await accounts.sign_in_sso(org, moved, sso, HERE, replaces=None)
        assert again.user is not None and again.user.id == viewer.user.id
        # an existing password user is linked by e-mail
        await _person(services, scope, "fay@example.com")
        _, fay = await accounts.sign_in_sso(
            org, Identity("fay@example.com", "https://idp.example 2", "F"), sso, HERE, replaces=None
        )
        assert fay.user is not None and fay.user.email == "fay@example.com" and fay.user.role == "developer"
        sso.new_users = "create"
        _, new = await accounts.sign_in_sso(
            org, Identity("gus@example.com", "https://idp.example 3", "Gus"), sso, HERE, replaces=None
        )
        assert new.user is not None and new.user.role == "user"

    _run(database_url, tmp_path, work)
