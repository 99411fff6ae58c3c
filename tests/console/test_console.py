"""The web console over HTTP: login, sessions, CSRF, keys, workspaces, limits, usage, batches, files and
the playground, against a live server on the scripted backend, checked with the official SDK."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from contextlib import closing

import anthropic
import httpx
import pytest

from tests.conftest import SCRIPTED_MODEL, LiveServer, make_key, scripted_settings, serve
from tests.console.support import csrf_of, flash, login, post
from wisegate.backends.scripted import ScriptedBackend
from wisegate.console.session import COOKIE


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = scripted_settings(tmp_path_factory.mktemp("console"))
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


@pytest.fixture
def console(server: LiveServer) -> Iterator[httpx.Client]:
    with closing(login(server)) as client:
        yield client


def _default_workspace(console: httpx.Client) -> str:
    match = re.search(r'<option value="(wrkspc_[^"]+)"[^>]*>Default', console.get("/console/playground").text)
    assert match
    return match.group(1)


def test_every_page_needs_a_session(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url) as anonymous:
        for path in (
            "/console",
            "/console/keys",
            "/console/workspaces",
            "/console/limits",
            "/console/batches",
            "/console/files",
            "/console/playground",
        ):
            response = anonymous.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/console/login?next=")
        posted = anonymous.post("/console/keys", data={"name": "x", "workspace_id": "wrkspc_x"})
        assert posted.status_code == 303 and posted.headers["location"].startswith("/console/login")
        anonymous.cookies.set(COOKIE, "eyJrZXkiOiJ4In0.forged", path="/console")
        assert anonymous.get("/console").status_code == 303


def test_login_refuses_bad_keys_and_sets_a_strict_cookie(server: LiveServer) -> None:
    with httpx.Client(base_url=server.base_url) as client:
        token = re.search(r'name="login_token" value="([^"]+)"', client.get("/console/login").text)
        assert token
        for key in ("sk-wg-admin01-nope", server.key):  # an unknown key, then an API (not admin) key
            refused = client.post("/console/login", data={"key": key, "login_token": token.group(1)})
            assert refused.status_code == 401
            assert "not an active admin key" in refused.text
            assert not any(c.startswith(COOKIE + "=") for c in refused.headers.get_list("set-cookie"))
            token = re.search(r'name="login_token" value="([^"]+)"', refused.text)
            assert token
        no_token = httpx.post(
            f"{server.base_url}/console/login", data={"key": make_key(server.settings, admin=True)}
        )
        assert no_token.status_code == 403
        admin = make_key(server.settings, admin=True)
        ok = client.post(
            "/console/login", data={"key": admin, "login_token": token.group(1), "next": "/console/limits"}
        )
        assert ok.status_code == 303 and ok.headers["location"] == "/console/limits"
        cookie = next(c for c in ok.headers.get_list("set-cookie") if c.startswith(COOKIE + "="))
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
        assert "Max-Age=28800" in cookie and admin not in cookie
        assert client.get("/console/limits").status_code == 200
        copied = client.cookies[COOKIE]
        with httpx.Client(base_url=server.base_url, cookies={COOKIE: copied}) as thief:
            assert thief.get("/console/limits").status_code == 200
            logout = post(client, "/console", "/console/logout", {})
            assert logout.status_code == 303 and logout.headers["location"] == "/console/login"
            assert client.get("/console").status_code == 303
            # the session ended on the server: the copied cookie stops working at once
            assert thief.get("/console/limits").status_code == 303


def test_a_disabled_admin_key_ends_its_sessions(server: LiveServer) -> None:
    admin = make_key(server.settings, admin=True)
    with closing(login(server, admin)) as client:
        assert client.get("/console").status_code == 200
        principal = server.run(server.services.keys.authenticate(admin, kind="admin"))
        server.run(server.services.keys.set_status(principal.key.id, "inactive"))
        assert client.get("/console").status_code == 303


def test_forms_without_the_session_csrf_token_are_refused(server: LiveServer, console: httpx.Client) -> None:
    workspace = _default_workspace(console)
    before = console.get("/console/keys").text.count("data-key-id=")
    for token in ("", "forged", "ünïcode"):
        refused = console.post(
            "/console/keys", data={"csrf_token": token, "name": "csrf", "workspace_id": workspace}
        )
        assert refused.status_code == 403 and "did not come from this console" in refused.text
    with closing(login(server)) as other:  # another session's token does not work in this one
        foreign = csrf_of(other.get("/console/keys").text)
    refused = console.post(
        "/console/keys", data={"csrf_token": foreign, "name": "csrf", "workspace_id": workspace}
    )
    assert refused.status_code == 403
    assert console.get("/console/keys").text.count("data-key-id=") == before


def test_create_key_shows_the_secret_once_and_disabling_it_locks_the_sdk_out(
    server: LiveServer, console: httpx.Client
) -> None:
    workspace = _default_workspace(console)
    created = post(
        console, "/console/keys", "/console/keys", {"name": "from console", "workspace_id": workspace}
    )
    assert created.status_code == 200
    secret = re.search(r'id="new-key-secret"[^>]*>(sk-wg-api01-[^<]+)<', created.text)
    assert secret
    key = secret.group(1)
    assert created.headers["cache-control"] == "no-store"
    assert key not in console.get("/console/keys").text

    client = anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0)
    message = client.messages.create(
        model=SCRIPTED_MODEL, max_tokens=20, messages=[{"role": "user", "content": "hello console"}]
    )
    assert message.content[0].type == "text" and message.content[0].text == "hello console"

    key_id = re.search(
        r'data-key-id="(apikey_[^"]+)">\s*<td>from console</td>', console.get("/console/keys").text
    )
    assert key_id
    renamed = post(console, "/console/keys", f"/console/keys/{key_id.group(1)}", {"name": "renamed"})
    assert "renamed to “renamed”" in flash(console, renamed)
    disabled = post(console, "/console/keys", f"/console/keys/{key_id.group(1)}", {"status": "inactive"})
    assert "now inactive" in flash(console, disabled)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(
            model=SCRIPTED_MODEL, max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )
    archived = post(console, "/console/keys", f"/console/keys/{key_id.group(1)}", {"status": "archived"})
    assert "now archived" in flash(console, archived)
    again = post(console, "/console/keys", f"/console/keys/{key_id.group(1)}", {"status": "active"})
    assert "cannot be reactivated" in flash(console, again)


def test_bad_form_input_is_a_message_on_the_page(console: httpx.Client) -> None:
    cases = [
        ("/console/limits/credits", {"usd": "ten dollars"}, "is not an amount in USD"),
        ("/console/limits/credits", {"usd": "0.0000000000001"}, "more than 12 decimals"),
        ("/console/limits/spend", {"usd": "-5"}, "must not be negative"),
        ("/console/limits/credits", {"usd": "10000000"}, "out of range: an amount may be at most $1,000,000"),
        ("/console/limits/spend", {"usd": "10,000,000"}, "out of range"),
        ("/console/workspaces", {"name": "a\x00b"}, "Name: must not contain NUL"),
        ("/console/limits/rates", {"workspace_id": "wrkspc_nope", "model_class": "other"}, "not found"),
        ("/console/limits/tier", {"tier": "Tier 99"}, "unknown tier"),
        ("/console/keys", {"name": "", "workspace_id": "x"}, "Name: this field is required"),
        ("/console/workspaces", {"name": "x" * 41}, "at most 40 characters"),
    ]
    for action, data, expected in cases:
        response = post(console, "/console/limits", action, data)
        assert expected in html.unescape(flash(console, response)), action
    missing = console.get("/console/batches?workspace_id=wrkspc_missing")
    assert missing.status_code == 404 and "not found" in missing.text


def test_workspaces_and_limits(server: LiveServer, console: httpx.Client) -> None:
    created = post(
        console,
        "/console/workspaces",
        "/console/workspaces",
        {"name": "Team A", "allowed_models": SCRIPTED_MODEL},
    )
    assert "Workspace “Team A” created" in flash(console, created)
    page = console.get("/console/workspaces").text
    workspace = re.search(r'data-workspace-id="(wrkspc_[^"]+)">(?:(?!</tr>).)*?value="Team A"', page, re.S)
    assert workspace
    ws = workspace.group(1)
    view = server.run(server.services.tenancy.get_workspace(_admin_scope(server), ws))
    assert view.allowed_models == (SCRIPTED_MODEL,)

    assert "balance $25.000000" in flash(
        console, post(console, "/console/limits", "/console/limits/credits", {"usd": "25"})
    )
    assert "$10.000000" in flash(
        console, post(console, "/console/limits", "/console/limits/spend", {"usd": "10"})
    )
    rate = post(
        console,
        "/console/limits",
        "/console/limits/rates",
        {"workspace_id": ws, "model_class": "other", "rpm": "7"},
    )
    assert "saved" in flash(console, rate)
    limits = server.run(server.services.limits.billing.workspace_limits(ws))
    assert limits.rate_limits == {"other": {"rpm": 7, "itpm": 10**12, "otpm": 10**12}}
    account = server.run(server.services.limits.billing.account(server.services.organization_id))
    assert account.credit_balance_pico == 25 * 10**12 and account.spend_limit_pico == 10 * 10**12
    page = console.get("/console/limits").text
    assert 'id="credit-balance">$25.000000' in page and "rpm 7" in page

    key = make_key(server.settings, workspace=ws)
    client = anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0)
    for _ in range(7):
        client.messages.create(
            model=SCRIPTED_MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.RateLimitError):  # the workspace's lower limit, set in the console
        client.messages.create(
            model=SCRIPTED_MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    removed = post(
        console, "/console/limits", "/console/limits/rates", {"workspace_id": ws, "model_class": "other"}
    )
    assert "saved" in flash(console, removed)
    post(console, "/console/limits", "/console/limits/spend", {"usd": ""})
    archived = post(console, "/console/workspaces", f"/console/workspaces/{ws}/archive", {})
    assert "archived" in flash(console, archived)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(
            model=SCRIPTED_MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )


def _admin_scope(server: LiveServer) -> object:
    from wisegate.domain.scope import Scope

    return Scope(server.services.organization_id, None)


def _total_requests(page: str) -> int:
    match = re.search(r'id="total-requests">([\d,]+)<', page)
    assert match
    return int(match.group(1).replace(",", ""))


def test_usage_chart_shows_requests(server: LiveServer, console: httpx.Client) -> None:
    workspace = _default_workspace(console)
    key = make_key(server.settings, workspace=workspace)
    client = anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0)
    count = _total_requests(console.get(f"/console?workspace_id={workspace}").text)
    for text in ("one two three", "four five"):
        client.messages.create(
            model=SCRIPTED_MODEL, max_tokens=20, messages=[{"role": "user", "content": text}]
        )
    page = console.get(f"/console?workspace_id={workspace}&days=7").text
    assert _total_requests(page) == count + 2
    chart = re.search(r'id="tokens-chart".*?</figure>', page, re.S)
    assert chart and '<rect class="bar"' in chart.group(0) and SCRIPTED_MODEL in chart.group(0)
    assert re.search(rf"<td>{SCRIPTED_MODEL}</td><td class=\"num\">\d", page)


def test_playground_streams_and_is_billed_to_a_console_key(server: LiveServer, console: httpx.Client) -> None:
    workspace = _default_workspace(console)
    token = csrf_of(console.get("/console/playground").text)
    form = {
        "csrf_token": token,
        "workspace_id": workspace,
        "model": SCRIPTED_MODEL,
        "max_tokens": "50",
        "system": "be brief",
        "message": "streamed through the console",
    }
    with console.stream(
        "POST", "/console/playground", data=form, headers={"accept": "text/event-stream"}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == "streamed through the console"
    assert events[-1]["type"] == "message_stop"
    assert server.backend.calls[-1].system == "be brief"
    keys = console.get(f"/console/keys?workspace_id={workspace}").text
    assert keys.count("<td>Console playground</td>") == 1

    rendered = console.post("/console/playground", data={**form, "message": "without script"})
    assert rendered.status_code == 200 and "without script</pre>" in rendered.text
    assert (
        console.get(f"/console/keys?workspace_id={workspace}").text.count("<td>Console playground</td>") == 1
    )

    bad = console.post(
        "/console/playground",
        data={**form, "model": "no-such-model"},
        headers={"accept": "text/event-stream"},
    )
    assert '"type":"not_found_error"' in bad.text.replace(" ", "")


def test_batches_and_files_made_with_the_sdk_are_listed(server: LiveServer, console: httpx.Client) -> None:
    workspace = _default_workspace(console)
    client = server.client()
    uploaded = client.beta.files.upload(file=("notes.txt", b"hello files", "text/plain"))
    batch = client.messages.batches.create(
        requests=[
            {
                "custom_id": "a",
                "params": {
                    "model": SCRIPTED_MODEL,
                    "max_tokens": 5,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            }
        ]
    )
    files_page = console.get(f"/console/files?workspace_id={workspace}").text
    assert uploaded.id in files_page and "notes.txt" in files_page
    batches_page = console.get(f"/console/batches?workspace_id={workspace}").text
    assert batch.id in batches_page
    deleted = post(
        console,
        f"/console/files?workspace_id={workspace}",
        f"/console/files/{uploaded.id}/delete",
        {"workspace_id": workspace},
    )
    assert "deleted" in flash(console, deleted)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.retrieve_metadata(uploaded.id)


def test_cancel_a_batch(server: LiveServer, console: httpx.Client) -> None:
    workspace = _default_workspace(console)
    server.backend.delay = 2.0  # keep the batch in progress while the console cancels it
    try:
        params = {"model": SCRIPTED_MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
        batch = server.client().messages.batches.create(
            requests=[{"custom_id": f"r{i}", "params": params} for i in range(3)]
        )
        page = f"/console/batches?workspace_id={workspace}"
        assert f'action="/console/batches/{batch.id}/cancel"' in console.get(page).text
        canceled = post(console, page, f"/console/batches/{batch.id}/cancel", {"workspace_id": workspace})
        assert f"Batch {batch.id} is" in flash(console, canceled)
        status = server.client().messages.batches.retrieve(batch.id).processing_status
        assert status in ("canceling", "ended")
        assert f'action="/console/batches/{batch.id}/cancel"' not in console.get(page).text
    finally:
        server.backend.delay = 0.0


def test_the_favicon_is_served_and_linked(server: LiveServer, console: httpx.Client) -> None:
    """Browsers ask for /favicon.ico on every page: it answers the console's icon, which the pages link."""
    with httpx.Client(base_url=server.base_url) as anonymous:
        icon = anonymous.get("/favicon.ico")
        login_page = anonymous.get("/console/login").text
    assert icon.status_code == 200, icon.status_code
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content.startswith(b"<svg") and b"</svg>" in icon.content
    for page in (login_page, console.get("/console/keys").text):
        linked = re.search(r'<link rel="icon" href="([^"]+)"', page)
        assert linked, page[:500]
        same = console.get(linked.group(1))
        assert same.status_code == 200 and same.content == icon.content
