"""The people review of issue #17, over HTTP with console sessions, on SQLite and PostgreSQL: the admin role
granted and taken back (the last admin keeps it; each change audited), the `wisegate users` commands, a
disabled key enabled again only by an admin, the workspace members page, the request log refusing a
workspace one does not see, spend limit requests above the current limit, and the invite-link and
change-password throttles."""

from __future__ import annotations

import contextlib
import html
import os
import re
from collections.abc import Iterator
from contextlib import closing

import anthropic
import httpx
import pytest
from click.testing import CliRunner, Result

from tests.conftest import (
    SCRIPTED_MODEL,
    LiveServer,
    make_key,
    postgres_database,
    scripted_settings,
    serve,
)
from tests.console.support import PASSWORD, csrf_of, flash, join, login, post
from wisegate.backends.scripted import ScriptedBackend
from wisegate.cli import main
from wisegate.domain.accounts import ACCOUNT_FREE, LINK_FREE
from wisegate.domain.scope import Scope
from wisegate.records.directory import User


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with postgres_database() if request.param == "postgres" else contextlib.nullcontext() as url:
        settings = scripted_settings(
            tmp_path_factory.mktemp("people-review"), **({"database_url": url} if url else {})
        )
        yield from serve(settings, backends={"scripted": ScriptedBackend()})


@pytest.fixture(scope="module")
def team(server: LiveServer) -> str:
    with closing(login(server)) as admin:
        done = post(admin, "/console/workspaces", "/console/workspaces", {"name": "Team"})
        match = re.search(r"Workspace “Team” created \((wrkspc_[^)]+)\)", flash(admin, done))
        assert match
        return match.group(1)


def _scope(server: LiveServer) -> Scope:
    assert server.services.organization_id is not None
    return Scope(server.services.organization_id, None)


def _user(server: LiveServer, email: str) -> User:
    found: list[User] = server.run(server.services.people.list_users(_scope(server), email=email))
    assert len(found) == 1, email
    return found[0]


def _admins(server: LiveServer) -> set[str]:
    users: list[User] = server.run(server.services.people.list_users(_scope(server), roles=["admin"]))
    return {u.email for u in users}


def _only_admin(server: LiveServer, email: str) -> None:
    """Make ``email`` the organization's one admin (through the domain, as the console does)."""
    accounts = server.services.accounts
    org = _scope(server).organization_id
    server.run(accounts.change_role(org, None, _user(server, email).id, "admin", None))
    for other in _admins(server) - {email}:
        server.run(accounts.change_role(org, None, _user(server, other).id, "developer", None))
    assert _admins(server) == {email}


def _default(server: LiveServer) -> str:
    workspace_id: str = server.run(server.services.keys.default_workspace(_scope(server).organization_id)).id
    return workspace_id


def _set_role(console: httpx.Client, user_id: str, role: str) -> str:
    done = post(console, "/console/members", f"/console/members/users/{user_id}", {"role": role})
    return html.unescape(flash(console, done))


def test_the_admin_role_is_granted_and_the_last_admin_keeps_it(server: LiveServer) -> None:
    with (
        closing(join(server, "ann@example.com", "developer")) as ann,
        closing(join(server, "bob@example.com", "developer")) as bob,
        closing(login(server)) as key_session,
    ):
        ann_id, bob_id = _user(server, "ann@example.com").id, _user(server, "bob@example.com").id
        assert ann.get("/console/members").status_code == 403
        members = key_session.get("/console/members").text
        assert re.search(
            r'aria-label="Role of ann@example.com">.*?<option value="admin">Admin</option>', members
        )
        assert _set_role(key_session, ann_id, "admin") == "ann@example.com is now Admin."
        assert ann.get("/console/members").status_code == 200  # on her next click
        _only_admin(server, "ann@example.com")

        # The last admin cannot step down — not by herself, not by an admin key's session.
        for console in (ann, key_session):
            refused = _set_role(console, ann_id, "developer")
            assert refused.startswith("ann@example.com is the organization's last admin"), refused
            assert "make someone else an admin first" in refused
        assert _admins(server) == {"ann@example.com"}

        assert _set_role(ann, bob_id, "admin") == "bob@example.com is now Admin."
        assert _set_role(ann, ann_id, "billing") == "ann@example.com is now Billing."
        assert (
            ann.get("/console/members").status_code == 403 and ann.get("/console/limits").status_code == 200
        )
        assert "last admin" in _set_role(bob, bob_id, "user")
        assert _set_role(bob, bob_id, "admin") == "bob@example.com is now Admin."  # no change, no event
        unknown = _set_role(bob, ann_id, "owner")
        assert "Role: 'owner' is not one of user, claude_code_user, developer, billing, admin" in unknown

    # The Admin API (Anthropic's shape) neither gives nor takes the admin role.
    org = server.client(api_key=make_key(server.settings, admin=True)).organization
    with pytest.raises(anthropic.BadRequestError, match="an admin's role cannot be changed through the API"):
        org.users.update(bob_id, role="developer")
    assert _user(server, "bob@example.com").role == "admin"

    events = server.run(server.services.accounts.audit_log(_scope(server).organization_id))
    changes = [(e.actor_id, e.target, e.detail) for e in events if e.action == "user.role_changed"]
    assert (ann_id, ann_id, {"email": "ann@example.com", "from": "admin", "to": "billing"}) in changes
    assert (ann_id, bob_id, {"email": "bob@example.com", "from": "developer", "to": "admin"}) in changes
    assert not [c for c in changes if c[1] == bob_id and c[2] and c[2]["from"] == c[2]["to"]]


def _wisegate(server: LiveServer, *args: str) -> Result:
    """``wisegate ARGS`` against the server's database, run in this process (click's CliRunner: the
    command's code, options and exit codes, without a new interpreter's start-up each time); an
    exception the command does not turn into a one-line error fails the test with its traceback."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("WISEGATE_")}
    env["WISEGATE_DATA_DIR"] = str(server.settings.data_dir)
    if server.settings.database_url:
        env["WISEGATE_DATABASE_URL"] = server.settings.database_url
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_wisegate_users_list_and_set_role(server: LiveServer) -> None:
    join(server, "cli-carl@example.com", "user").close()
    join(server, "cli-dora@example.com", "developer").close()
    carl = _user(server, "cli-carl@example.com")

    made = _wisegate(server, "users", "set-role", "cli-carl@example.com", "admin")
    assert made.exit_code == 0, made.stderr
    assert made.stdout.strip() == f"{carl.id}\tcli-carl@example.com\tadmin"
    listed = _wisegate(server, "users", "list")
    assert listed.exit_code == 0, listed.stderr
    rows = {line.split("\t")[1]: line.split("\t") for line in listed.stdout.strip().splitlines()}
    assert rows["cli-carl@example.com"][:3] == [carl.id, "cli-carl@example.com", "admin"]
    assert rows["cli-dora@example.com"][2] == "developer"

    _only_admin(server, "cli-carl@example.com")
    refused = _wisegate(server, "users", "set-role", "cli-carl@example.com", "developer")
    assert (
        refused.exit_code == 1 and "cli-carl@example.com is the organization's last admin" in refused.stderr
    )
    assert _user(server, "cli-carl@example.com").role == "admin"
    missing = _wisegate(server, "users", "set-role", "nobody@example.com", "admin")
    assert missing.exit_code == 1 and "no person with the e-mail nobody@example.com" in missing.stderr
    bad = _wisegate(server, "users", "set-role", "cli-dora@example.com", "owner")
    assert bad.exit_code == 2 and "'owner' is not one of" in bad.stderr

    events = server.run(server.services.accounts.audit_log(_scope(server).organization_id))
    assert any(
        e.action == "user.role_changed" and e.actor_type == "cli" and e.target == carl.id for e in events
    )


def test_a_disabled_key_is_enabled_again_only_by_an_admin(server: LiveServer) -> None:
    default = _default(server)
    with (
        closing(join(server, "keyowner@example.com", "developer")) as owner,
        closing(join(server, "wsadmin@example.com", "user", [(default, "workspace_admin")])) as ws_admin,
    ):
        made = post(
            owner,
            "/console/account",
            "/console/account/keys",
            {"name": "laptop", "workspace_id": default},
        )
        assert made.status_code == 200
        secret = re.search(r'id="new-key-secret"[^>]*>([^<]+)<', made.text)
        assert secret
        key_id = re.search(r'action="/console/account/keys/(apikey_[^"]+)"', made.text)
        assert key_id
        path = f"/console/account/keys/{key_id.group(1)}"
        sdk = server.client(api_key=secret.group(1))
        hello: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hi"}]

        assert "is now inactive" in flash(
            owner, post(owner, "/console/account", path, {"status": "inactive"})
        )
        with pytest.raises(anthropic.AuthenticationError):
            sdk.messages.create(model=SCRIPTED_MODEL, max_tokens=5, messages=hello)
        account = owner.get("/console/account").text
        assert "a workspace admin can enable it" in account and 'value="active">Enable' not in account

        refused = post(owner, "/console/account", path, {"status": "active"})
        assert refused.status_code == 403
        assert "only an admin of its workspace (or of the organization) can enable it again" in refused.text
        assert (
            server.run(server.services.tenancy.get_key(_scope(server), key_id.group(1))).status == "inactive"
        )

        back = post(ws_admin, "/console/keys", f"/console/keys/{key_id.group(1)}", {"status": "active"})
        assert "is now active" in flash(ws_admin, back)
        message = sdk.messages.create(model=SCRIPTED_MODEL, max_tokens=5, messages=hello)
        assert message.usage.output_tokens > 0
        # Renaming and disabling stay the owner's.
        assert "renamed to" in flash(owner, post(owner, "/console/account", path, {"name": "laptop 2"}))
        assert "is now inactive" in flash(
            owner, post(owner, "/console/account", path, {"status": "inactive"})
        )


def test_workspace_members_are_managed_by_that_workspaces_admins(server: LiveServer, team: str) -> None:
    page = f"/console/workspaces/{team}/members"
    with (
        closing(join(server, "lead@example.com", "developer", [(team, "workspace_admin")])) as lead,
        closing(join(server, "newbie@example.com", "developer")) as newbie,
        closing(login(server)) as org_admin,
    ):
        newbie_id = _user(server, "newbie@example.com").id
        for path in (
            page,
            f"/console/workspaces/{_default(server)}/members",
            "/console/workspaces/wrkspc_nope/members",
        ):
            refused = newbie.get(path)
            assert refused.status_code == 403 and "Your role does not allow this" in refused.text, path
        token = csrf_of(newbie.get("/console/account").text)
        sneaky = newbie.post(
            page, data={"csrf_token": token, "user_id": newbie_id, "workspace_role": "workspace_admin"}
        )
        assert sneaky.status_code == 403
        assert lead.get(f"/console/workspaces/{_default(server)}/members").status_code == 403
        assert f'href="{page}"' in lead.get("/console/account").text

        assert newbie.get(f"/console/batches?workspace_id={team}").status_code == 403
        added = post(lead, page, page, {"user_id": newbie_id, "workspace_role": "workspace_developer"})
        assert (
            html.unescape(flash(lead, added)) == "newbie@example.com is now a member (Workspace developer)."
        )
        assert newbie.get(f"/console/batches?workspace_id={team}").status_code == 200
        listed = lead.get(page).text
        assert 'aria-label="Workspace role of newbie@example.com"' in listed

        member = f"{page}/{newbie_id}"
        billing = post(lead, page, member, {"workspace_role": "workspace_billing"})
        assert "workspace_billing cannot be assigned" in html.unescape(flash(lead, billing))
        changed = post(lead, page, member, {"workspace_role": "workspace_user"})
        assert html.unescape(flash(lead, changed)) == "newbie@example.com is now Workspace user here."
        assert newbie.get(f"/console/batches?workspace_id={team}").status_code == 403
        assert newbie.get(f"/console/requests?workspace_id={team}").status_code == 200

        assert org_admin.get(page).status_code == 200
        removed = post(org_admin, page, f"{member}/remove", {})
        assert (
            html.unescape(flash(org_admin, removed))
            == "newbie@example.com is no longer a member of this workspace."
        )
        members = server.run(server.services.tenancy.list_members(_scope(server), team))
        assert newbie_id not in {m.user_id for m in members}
        assert newbie.get(f"/console/requests?workspace_id={team}").status_code == 403


def test_the_request_log_of_a_workspace_one_does_not_see_is_refused(server: LiveServer, team: str) -> None:
    with (
        closing(join(server, "looker@example.com", "developer")) as looker,
        closing(join(server, "payer@example.com", "billing")) as payer,
    ):
        assert looker.get(f"/console/requests?workspace_id={_default(server)}").status_code == 200
        for path in ("/console/requests", "/console/requests.csv"):
            for workspace in (team, "wrkspc_does_not_exist"):
                refused = looker.get(f"{path}?workspace_id={workspace}")
                assert refused.status_code == 403, (path, workspace)
                assert "You do not see the usage of workspace" in refused.text
            assert payer.get(f"{path}?workspace_id={team}").status_code == 200


def test_a_spend_limit_request_asks_for_more_than_the_current_limit(server: LiveServer, team: str) -> None:
    with (
        closing(join(server, "asker@example.com", "developer", [(team, "workspace_developer")])) as asker,
        closing(login(server)) as admin,
    ):
        set_limit = post(
            admin, "/console/limits", "/console/limits/spend", {"usd": "100", "workspace_id": team}
        )
        assert "$100" in flash(admin, set_limit)

        def ask(workspace: str, usd: str) -> str:
            done = post(
                asker,
                "/console/account",
                "/console/account/spend-request",
                {"workspace_id": workspace, "usd": usd, "reason": "more"},
            )
            return html.unescape(flash(asker, done))

        for usd in ("50", "100"):
            assert ask(team, usd) == (
                "Amount: ask for more than the current monthly spend limit (the workspace's: $100.000000); "
                "approving it would not raise the limit."
            )
        assert "Asked for a higher spend limit" in ask(team, "100.01")

        # Without a limit of its own, the workspace is held by the organization's.
        # (an amount under any tier's cap, so it is the organization's own limit that holds)
        org_limit = post(admin, "/console/limits", "/console/limits/spend", {"usd": "5"})
        assert "$5" in flash(admin, org_limit)
        try:
            assert "(the organization's: $5.000000)" in ask(_default(server), "4")
            assert "Asked for a higher spend limit" in ask(_default(server), "6")
        finally:
            post(admin, "/console/limits", "/console/limits/spend", {"usd": ""})


@pytest.fixture(scope="module")
def quiet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Its own server: the link throttle blocks this client address for everyone on it (so that test
    comes last)."""
    settings = scripted_settings(tmp_path_factory.mktemp("people-throttles"))
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


def test_wrong_current_passwords_are_throttled(quiet_server: LiveServer) -> None:
    with closing(join(quiet_server, "forgetful@example.com", "user")) as person:

        def change(current: str) -> str:
            data = {"current_password": current, "new_password": "another long password"}
            done = post(
                person,
                "/console/account",
                "/console/account/password",
                data | {"confirm_password": data["new_password"]},
            )
            return html.unescape(flash(person, done))

        for _ in range(ACCOUNT_FREE):
            assert change("not my password") == "Current password: that is not your password."
        blocked = change(PASSWORD)  # even the right one, while blocked
        assert blocked.startswith("Too many wrong current passwords. Try again in"), blocked


def test_invite_links_that_are_not_valid_are_throttled(quiet_server: LiveServer) -> None:
    with httpx.Client(base_url=quiet_server.base_url, timeout=30) as guesser:
        for attempt in range(LINK_FREE):
            wrong = guesser.get(f"/console/invite/{attempt:064x}")
            assert wrong.status_code == 404 and "This invite link is not valid" in wrong.text
        blocked = guesser.get("/console/invite/" + "f" * 64)
        assert blocked.status_code == 429
        assert "Too many invite links that are not valid. Try again in" in blocked.text
        assert 1 <= int(blocked.headers["retry-after"]) <= 2
        assert guesser.post("/console/invite/" + "e" * 64, data={"name": "x"}).status_code == 429


def test_a_refused_back_lands_on_the_forms_page_and_get_code_is_per_workspace(
    server: LiveServer, team: str
) -> None:
    """A form whose ``back`` is another site goes back to the page the form belongs to (its own path
    answers only POST), and Get code is refused where the person may not send."""
    with closing(join(server, "coder@example.com", "developer")) as coder:
        token = csrf_of(coder.get("/console/account").text)
        for back in ("//evil.com", "https://evil.com", "/\\evil.com"):
            done = coder.post(
                "/console/account/profile", data={"csrf_token": token, "back": back, "name": "Cody"}
            )
            assert done.status_code == 303 and done.headers["location"].startswith("/console/account"), back
            assert coder.get(done.headers["location"]).status_code == 200
        form = {
            "csrf_token": csrf_of(coder.get("/console/playground").text),
            "model": "scripted-1",
            "message": "hi",
        }
        assert (
            coder.post(
                "/console/playground/code", data={**form, "workspace_id": _default(server)}
            ).status_code
            == 200
        )
        refused = coder.post("/console/playground/code", data={**form, "workspace_id": team})
        assert refused.status_code == 403, refused.text


def test_the_last_workspace_admin_keeps_the_role(server: LiveServer) -> None:
    """A workspace admin cannot step down (nor be removed) when that would leave the workspace without a
    workspace admin — as the organization's last admin keeps theirs; with a second one they can."""
    with closing(login(server)) as admin:
        done = post(admin, "/console/workspaces", "/console/workspaces", {"name": "Kept"})
        match = re.search(r"Workspace “Kept” created \((wrkspc_[^)]+)\)", flash(admin, done))
        assert match
        kept = match.group(1)
    page = f"/console/workspaces/{kept}/members"
    with (
        closing(join(server, "keeper@example.com", "developer", [(kept, "workspace_admin")])) as keeper,
        closing(join(server, "second@example.com", "developer", [(kept, "workspace_developer")])),
        closing(login(server)) as org_admin,
    ):
        keeper_id = _user(server, "keeper@example.com").id
        second_id = _user(server, "second@example.com").id
        refusal = (
            f"keeper@example.com is the last workspace admin of workspace {kept} and cannot stop being one: "
            "make another member its workspace admin first."
        )
        stepped_down = post(keeper, page, f"{page}/{keeper_id}", {"workspace_role": "workspace_developer"})
        assert html.unescape(flash(keeper, stepped_down)) == refusal
        removed = post(org_admin, page, f"{page}/{keeper_id}/remove", {})
        assert html.unescape(flash(org_admin, removed)) == refusal
        roles = {
            m.user_id: m.workspace_role
            for m in server.run(server.services.tenancy.list_members(_scope(server), kept))
        }
        assert roles[keeper_id] == "workspace_admin"

        promoted = post(keeper, page, f"{page}/{second_id}", {"workspace_role": "workspace_admin"})
        assert "second@example.com is now Workspace admin here." in html.unescape(flash(keeper, promoted))
        stepped_down = post(keeper, page, f"{page}/{keeper_id}", {"workspace_role": "workspace_developer"})
        assert stepped_down.status_code == 303
        members = server.run(server.services.tenancy.list_members(_scope(server), kept))
        assert {m.user_id: m.workspace_role for m in members} == {
            keeper_id: "workspace_developer",
            second_id: "workspace_admin",
        }
        assert keeper.get(page).status_code == 403  # no longer an admin of it
