"""People in the console over HTTP: each role sees only its pages and is refused (403) every other page
and form on the server; sign-in answers; invite links; Account Settings keys with the official SDK."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing

import anthropic
import httpx
import pytest

from tests.conftest import SCRIPTED_MODEL, LiveServer, scripted_settings, serve
from tests.console.support import PASSWORD, csrf_of, flash, invite, join, login, sign_in
from wisegate.backends.scripted import ScriptedBackend
from wisegate.console.session import COOKIE
from wisegate.domain.accounts import ACCOUNT_FREE
from wisegate.domain.scope import Scope

PAGES = {
    "usage": "/console",
    "requests": "/console/requests",
    "keys": "/console/keys",
    "workspaces": "/console/workspaces",
    "members": "/console/members",
    "limits": "/console/limits",
    "batches": "/console/batches",
    "files": "/console/files",
    "playground": "/console/playground",
    "account": "/console/account",
}
# What each kind of person may open: the spec of docs/roles.md, written out independently of the code.
EXPECTED = {
    "user": {"usage", "requests", "playground", "account"},
    "claude_code_user": {"usage", "requests", "batches", "files", "playground", "account"},
    "developer": {"usage", "requests", "batches", "files", "playground", "account"},
    "billing": {"usage", "requests", "limits", "account"},
    "admin": set(PAGES),
    "team_admin": {"usage", "requests", "keys", "limits", "batches", "files", "playground", "account"},
    "restricted": {"usage", "requests", "playground", "account"},
}
# Forms (by name) each kind of person may submit; every other one must be refused with 403.
ALLOWED_FORMS = {
    "user": set(),
    "claude_code_user": set(),
    "developer": set(),
    "billing": {"credits", "tier", "org_spend", "team_spend", "team_rates", "default_spend", "spend_approve"},
    "admin": {"all"},
    "team_admin": {
        "team_key",
        "team_spend",
        "team_rates",
        "team_batch",
        "team_file",
        "team_playground",
        "spend_approve",
    },
    "restricted": set(),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = scripted_settings(tmp_path_factory.mktemp("console-people"))
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


@pytest.fixture(scope="module")
def team(server: LiveServer) -> str:
    with closing(login(server)) as admin:
        done = admin.post(
            "/console/workspaces",
            data={"csrf_token": csrf_of(admin.get("/console/workspaces").text), "name": "Team"},
        )
        assert done.status_code == 303
        match = re.search(r"Workspace “Team” created \((wrkspc_[^)]+)\)", flash(admin, done))
        assert match
        return match.group(1)


@pytest.fixture(scope="module")
def people(server: LiveServer, team: str) -> Iterator[dict[str, httpx.Client]]:
    clients = {
        "user": join(server, "user@example.com", "user"),
        "claude_code_user": join(server, "cc@example.com", "claude_code_user"),
        "developer": join(server, "dev@example.com", "developer"),
        "billing": join(server, "billing@example.com", "billing"),
        "admin": join(server, "admin@example.com", "developer"),
        "team_admin": join(server, "teamadmin@example.com", "developer", [(team, "workspace_admin")]),
        "restricted": join(
            server, "restricted@example.com", "user", [(team, "workspace_restricted_developer")]
        ),
    }

    async def promote() -> None:
        services = server.services
        assert services.organization_id is not None
        scope = Scope(services.organization_id, None)
        user = next(u for u in await services.people.list_users(scope) if u.email == "admin@example.com")
        await services.people.update_user(scope, user.id, "admin")

    server.run(promote())
    yield clients
    for client in clients.values():
        client.close()


def _default(server: LiveServer) -> str:
    async def find() -> str:
        assert server.services.organization_id is not None
        return (await server.services.keys.default_workspace(server.services.organization_id)).id

    workspace: str = server.run(find())
    return workspace


def _forms(server: LiveServer, team: str) -> dict[str, tuple[str, dict[str, str]]]:
    default = _default(server)
    key_id = server.run(server.services.keys.authenticate(server.key)).key.id
    return {
        "default_key": ("/console/keys", {"name": "x", "workspace_id": default}),
        "team_key": ("/console/keys", {"name": "team key", "workspace_id": team}),
        "change_key": (f"/console/keys/{key_id}", {"name": "renamed by a stranger"}),
        "workspace": ("/console/workspaces", {"name": "Nope"}),
        "rename_workspace": (f"/console/workspaces/{team}", {"name": "Renamed"}),
        "archive": (f"/console/workspaces/{team}/archive", {}),
        "credits": ("/console/limits/credits", {"usd": "0.01", "note": "role test"}),
        "tier": ("/console/limits/tier", {"tier": ""}),
        "org_spend": ("/console/limits/spend", {"usd": ""}),
        "team_spend": ("/console/limits/spend", {"usd": "", "workspace_id": team}),
        "team_rates": ("/console/limits/rates", {"workspace_id": team, "model_class": "haiku"}),
        "default_spend": ("/console/limits/spend", {"usd": "5", "workspace_id": default}),
        "spend_approve": ("/console/limits/requests/slir_nope/approve", {"usd": "5"}),
        "invite": ("/console/members/invites", {"email": "sneaky@example.com", "role": "developer"}),
        "role": ("/console/members/users/user_nope", {"role": "developer"}),
        "default_batch": ("/console/batches/msgbatch_nope/cancel", {"workspace_id": default}),
        "default_file": ("/console/files/file_nope/delete", {"workspace_id": default}),
        "team_batch": ("/console/batches/msgbatch_nope/cancel", {"workspace_id": team}),
        "team_file": ("/console/files/file_nope/delete", {"workspace_id": team}),
        "team_playground": (
            "/console/playground",
            {"workspace_id": team, "model": SCRIPTED_MODEL, "message": "hi"},
        ),
    }


@pytest.mark.parametrize("who", list(EXPECTED))
def test_each_role_sees_its_pages_and_is_refused_the_rest(
    server: LiveServer, team: str, people: dict[str, httpx.Client], who: str
) -> None:
    client = people[who]
    for name, path in PAGES.items():
        page = client.get(path, follow_redirects=True)
        if name in EXPECTED[who]:
            assert page.status_code == 200, (who, name, page.text[:300])
        else:
            assert page.status_code == 403 and "Your role does not allow this" in page.text, (who, name)
    nav = client.get("/console/account").text.split("<main>")[0]
    shown = {name for name, path in PAGES.items() if f'href="{path}"' in nav}
    assert shown == EXPECTED[who], who

    token = csrf_of(client.get("/console/account").text)
    allowed = ALLOWED_FORMS[who]
    for name, (action, data) in _forms(server, team).items():
        if "all" in allowed or name in allowed:
            continue
        refused = client.post(action, data={"csrf_token": token, **data})
        if (who, name) == ("team_admin", "change_key"):
            # A workspace admin may change keys, but not that one: answered as a key that does not exist.
            assert flash(client, refused) == f"api key {action.rsplit('/', 1)[1]} not found"
            continue
        assert refused.status_code == 403, (who, name, refused.status_code, refused.text[:300])
    # nothing a refused form asked for happened
    with closing(login(server)) as admin:
        assert "Nope" not in admin.get("/console/workspaces").text
        assert "sneaky@example.com" not in admin.get("/console/members").text
        assert "renamed by a stranger" not in admin.get("/console/keys").text


def test_a_workspace_admin_manages_that_workspace_only(
    server: LiveServer, team: str, people: dict[str, httpx.Client]
) -> None:
    client = people["team_admin"]
    token = csrf_of(client.get("/console/keys").text)
    created = client.post(
        "/console/keys", data={"csrf_token": token, "name": "team key", "workspace_id": team}
    )
    assert created.status_code == 200
    secret = re.search(r'id="new-key-secret"[^>]*>([^<]+)<', created.text)
    assert secret
    listed = client.get("/console/keys").text
    assert "team key" in listed and "Console playground" not in listed  # no key of the default workspace
    rates = client.post(
        "/console/limits/rates",
        data={
            "csrf_token": token,
            "workspace_id": team,
            "model_class": "haiku",
            "rpm": "7",
            "back": "/console/limits",
        },
    )
    assert flash(client, rates) == "Rate limits of workspace “Team” for haiku saved."
    limits = client.get("/console/limits").text
    assert 'id="organization-limits"' not in limits and f'data-workspace-id="{team}"' in limits
    assert f'data-workspace-id="{_default(server)}"' not in limits


def test_developer_keys_in_account_settings_work_with_the_sdk(
    server: LiveServer, people: dict[str, httpx.Client]
) -> None:
    client = people["developer"]
    page = client.get("/console/account").text
    default = _default(server)
    assert f'<option value="{default}">' in page
    created = client.post(
        "/console/account/keys",
        data={"csrf_token": csrf_of(page), "name": "my laptop", "workspace_id": default},
    )
    assert created.status_code == 200 and 'data-copy="new-key-secret"' in created.text
    secret = re.search(r'id="new-key-secret"[^>]*>([^<]+)<', created.text)
    assert secret and secret.group(1).startswith("sk-wg-api01-")
    sdk = server.client(api_key=secret.group(1))
    message = sdk.messages.create(
        model=SCRIPTED_MODEL, max_tokens=5, messages=[{"role": "user", "content": "hello"}]
    )
    assert message.content
    uploaded = sdk.beta.files.upload(file=("dev.txt", b"a developer's file", "text/plain"))
    files = client.get("/console/files").text
    assert f'data-file-id="{uploaded.id}"' in files and "Delete" not in files  # read, not manage
    key_id = re.search(r'data-key-id="(apikey_[^"]+)"', created.text)
    assert key_id
    made = server.client(api_key=_admin_key(server)).organization.api_keys.retrieve(key_id.group(1))
    assert made.created_by is not None and made.created_by.type == "user"
    assert made.created_by.id.startswith("user_")

    token = csrf_of(client.get("/console/account").text)
    renamed = client.post(
        f"/console/account/keys/{key_id.group(1)}",
        data={"csrf_token": token, "name": "laptop", "back": "/console/account"},
    )
    assert "renamed to “laptop”" in flash(client, renamed)
    disabled = client.post(
        f"/console/account/keys/{key_id.group(1)}",
        data={"csrf_token": token, "status": "inactive", "back": "/console/account"},
    )
    assert "now inactive" in flash(client, disabled)
    with pytest.raises(anthropic.AuthenticationError):
        sdk.messages.create(model=SCRIPTED_MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    # someone else's key cannot be changed from one's account, nor can a key go to a workspace one may not use
    other = people["claude_code_user"]
    other_token = csrf_of(other.get("/console/account").text)
    stolen = other.post(
        f"/console/account/keys/{key_id.group(1)}",
        data={"csrf_token": other_token, "status": "active", "back": "/console/account"},
    )
    assert flash(other, stolen) == f"api key {key_id.group(1)} not found"  # as if there were none
    user = people["user"]
    refused = user.post(
        "/console/account/keys",
        data={"csrf_token": csrf_of(user.get("/console/account").text), "name": "x", "workspace_id": default},
    )
    assert refused.status_code == 403


def _admin_key(server: LiveServer) -> str:
    async def create() -> str:
        keys = server.services.keys
        assert server.services.organization_id is not None
        workspace = await keys.default_workspace(server.services.organization_id)
        _, secret = await keys.create_key(workspace.id, "people admin", admin=True)
        return secret

    secret: str = server.run(create())
    return secret


def test_sign_in_answers_alike_and_a_copied_cookie_dies_with_logout(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    join(server, "eve@example.com", "developer").close()
    wrong_client, wrong = sign_in(server, "eve@example.com", "not her password")
    unknown_client, unknown = sign_in(server, "nobody@example.com", "not her password")
    for client, answer in ((wrong_client, wrong), (unknown_client, unknown)):
        assert answer.status_code == 401 and "Email or password is incorrect." in answer.text
        assert COOKIE not in client.cookies
        client.close()
    client, ok = sign_in(server, "eve@example.com")
    assert ok.status_code == 303 and ok.headers["location"] == "/console"
    cookie = next(c for c in ok.headers.get_list("set-cookie") if c.startswith(COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and PASSWORD not in cookie
    with httpx.Client(base_url=server.base_url, cookies={COOKIE: client.cookies[COOKIE]}) as copy:
        assert copy.get("/console/account").status_code == 200
        token = csrf_of(client.get("/console/account").text)
        assert client.post("/console/logout", data={"csrf_token": token}).status_code == 303
        assert copy.get("/console/account").status_code == 303  # at once: the session ended on the server
    client.close()
    assert caplog.records and PASSWORD not in caplog.text and "not her password" not in caplog.text


def test_a_throttled_sign_in_says_when_to_retry(server: LiveServer) -> None:
    for _ in range(ACCOUNT_FREE):
        client, wrong = sign_in(server, "mallory@example.com", "a guess")
        client.close()
        assert wrong.status_code == 401
    client, throttled = sign_in(server, "mallory@example.com", "a guess")
    client.close()
    assert throttled.status_code == 429 and "Too many failed sign-ins. Try again in" in throttled.text
    assert 1 <= int(throttled.headers["retry-after"]) <= 2


def test_password_change_ends_every_session(server: LiveServer) -> None:
    first = join(server, "pat@example.com", "user")
    second, _ = sign_in(server, "pat@example.com")
    page = first.get("/console/account").text
    assert page.count('data-session="other"') == 1
    changed = first.post(
        "/console/account/password",
        data={
            "csrf_token": csrf_of(page),
            "current_password": PASSWORD,
            "new_password": "another long password",
            "confirm_password": "another long password",
            "back": "/console/account",
        },
    )
    assert "Every other session of yours has been signed out" in flash(first, changed)
    assert first.get("/console/account").status_code == 200  # this browser got a new session
    assert second.get("/console/account").status_code == 303
    assert sign_in(server, "pat@example.com")[1].status_code == 401
    assert sign_in(server, "pat@example.com", "another long password")[1].status_code == 303
    first.close()
    second.close()


def test_invite_links_work_once(server: LiveServer) -> None:
    link = invite(server, "once@example.com", "developer")
    with httpx.Client(base_url=server.base_url) as client:
        form = client.get(link)
        assert "once@example.com" in form.text and "developer" in form.text
        token = re.search(r'name="login_token" value="([^"]+)"', form.text)
        assert token
        short = client.post(link, data={"login_token": token.group(1), "name": "O", "password": "short"})
        assert short.status_code == 400 and "at least 10" in short.text
        token = re.search(r'name="login_token" value="([^"]+)"', short.text)
        assert token
        ok = client.post(link, data={"login_token": token.group(1), "name": "O", "password": PASSWORD})
        assert ok.status_code == 303
        again = client.get(link)
        assert again.status_code == 404 and "not valid" in again.text
        assert client.get(link.replace("/invite/", "/invite/x")).status_code == 404
    with closing(login(server)) as admin:
        members = admin.get("/console/members").text
        assert 'data-user-email="once@example.com"' in members
        made = admin.post(
            "/console/members/invites",
            data={
                "csrf_token": csrf_of(members),
                "email": "linky@example.com",
                "role": "user",
                "back": "/console/members",
            },
        )
        assert "copy its link" in flash(admin, made)
        shown = re.search(r'id="link-invite_[^"]+">([^<]+)<', admin.get("/console/members").text)
        assert shown and shown.group(1).startswith(server.base_url + "/console/invite/")
        assert admin.get(shown.group(1).removeprefix(server.base_url)).status_code == 200
        # an invite made through the Admin API (Anthropic's shape, no link in it) has its link there too
        made_by_api = server.client(api_key=_admin_key(server)).organization.invites.create(
            email="api@example.com", role="claude_code_user"
        )
        assert made_by_api.type == "invite" and made_by_api.status == "pending"
        assert "link" not in made_by_api.model_dump() and "token" not in str(made_by_api.model_dump())
        api_link = re.search(rf'id="link-{made_by_api.id}">([^<]+)<', admin.get("/console/members").text)
        assert api_link
        form = admin.get(api_link.group(1).removeprefix(server.base_url))
        assert form.status_code == 200 and "api@example.com" in form.text


def test_a_role_change_applies_on_the_next_click(server: LiveServer) -> None:
    person = join(server, "rita@example.com", "user")
    assert person.get("/console/limits").status_code == 403
    with closing(login(server)) as admin:
        members = admin.get("/console/members").text
        user_id = re.search(
            r'action="/console/members/users/(user_[^"]+)"[^<]*<input[^>]*>\s*<input[^>]*>\s*'
            r'<select name="role" aria-label="Role of rita@example.com"',
            members,
        )
        assert user_id, members[:3000]
        changed = admin.post(
            f"/console/members/users/{user_id.group(1)}",
            data={"csrf_token": csrf_of(members), "role": "billing", "back": "/console/members"},
        )
        assert flash(admin, changed) == "rita@example.com is now Billing."
    assert person.get("/console/limits").status_code == 200
    person.close()


def test_a_key_elsewhere_is_answered_as_no_such_key(
    server: LiveServer, team: str, people: dict[str, httpx.Client]
) -> None:
    """Renaming a key of a workspace one does not manage (Keys page) or someone else's key (Account) is
    answered as a key id that does not exist (404's message, on the form's page): the forms tell
    nothing about keys elsewhere."""
    elsewhere = server.run(server.services.keys.authenticate(server.key)).key.id  # the default workspace's
    for who, page, path in (
        ("team_admin", "/console/keys", "/console/keys/{}"),
        ("developer", "/console/account", "/console/account/keys/{}"),
        ("team_admin", "/console/account", "/console/account/keys/{}"),
    ):
        client = people[who]
        token = csrf_of(client.get(page).text)
        for key_id in (elsewhere, "apikey_01nosuchkey"):
            answer = client.post(
                path.format(key_id), data={"csrf_token": token, "name": "probe", "back": page}
            )
            assert flash(client, answer) == f"api key {key_id} not found", (who, path)
    with closing(login(server)) as admin:
        assert "probe" not in admin.get("/console/keys").text


def test_the_key_filter_names_only_the_workspaces_one_sees(
    server: LiveServer, team: str, people: dict[str, httpx.Client]
) -> None:
    """A workspace admin's Keys page offers (and names) only the workspaces whose keys they see; an
    organization admin's offers every one."""

    def filter_options(client: httpx.Client, query: str = "") -> set[str]:
        page = client.get(f"/console/keys{query}").text
        form = re.search(r'<form method="get" action="/console/keys".*?</form>', page, re.S)
        assert form, page[:500]
        return set(re.findall(r'<option value="(wrkspc_[^"]*)"', form.group(0)))

    default = _default(server)
    assert filter_options(people["team_admin"]) == {team}
    shown = people["team_admin"].get(f"/console/keys?workspace_id={default}").text
    assert filter_options(people["team_admin"], f"?workspace_id={default}") == {team}
    assert ">Default<" not in shown.replace(" selected", "")
    assert {team, default} <= filter_options(people["admin"])
