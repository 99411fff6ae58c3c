"""NUL bytes and over-long strings get the same clean answer on SQLite and PostgreSQL.

PostgreSQL refuses a NUL in text and a string longer than its column; SQLite stores anything. Lengths and
characters come from one place (``protocol/bounds.py``, which the tables use too): an id that cannot
exist is a 404, a bad value a 400 naming the field — never a 500, and never a lost usage row.
"""

from __future__ import annotations

import base64
import contextlib
import html
import re
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.api.files_support import bundle, skill_md
from tests.conftest import SCRIPTED_MODEL, LiveServer, make_key, postgres_database, scripted_settings, serve
from tests.console.support import csrf_of, flash, join, login
from wisegate.backends.scripted import ScriptedBackend
from wisegate.domain.scope import Scope
from wisegate.errors import InvalidRequest
from wisegate.protocol.bounds import KEY_NAME_LENGTH


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with postgres_database() if request.param == "postgres" else contextlib.nullcontext() as url:
        database = {"database_url": url} if url else {}
        settings = scripted_settings(tmp_path_factory.mktemp("storable"), **database)
        yield from serve(settings, backends={"scripted": ScriptedBackend()})


@pytest.fixture(scope="module")
def admin_key(live: LiveServer) -> str:
    return make_key(live.settings, admin=True)


def _error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert body["type"] == "error", body
    return response.status_code, body["error"]["type"], body["error"]["message"]


def _get(live: LiveServer, path: str, key: str | None = None, **params: Any) -> httpx.Response:
    return httpx.get(f"{live.base_url}{path}", params=params, headers={"x-api-key": key or live.key})


def _post(live: LiveServer, path: str, body: Any, key: str | None = None) -> httpx.Response:
    return httpx.post(f"{live.base_url}{path}", json=body, headers={"x-api-key": key or live.key})


def test_ids_that_cannot_exist_are_404(live: LiveServer, admin_key: str) -> None:
    for path in (
        "/v1/files/a%00b",
        "/v1/files/a%00b/content",
        "/v1/messages/batches/msgbatch_%00",
        "/v1/skills/skill_%00x",
        "/v1/models/scripted%00",
        "/v1/files/file_" + "f" * 1000,  # longer than any id column
        "/v1/messages/batches/msgbatch_" + "b" * 1000,
    ):
        assert _error(_get(live, path))[:2] == (404, "not_found_error"), path
    for path in ("/v1/organizations/api_keys/apikey_%00", "/v1/organizations/workspaces/w%00/members"):
        assert _error(_get(live, path, admin_key))[:2] == (404, "not_found_error"), path


def test_bad_query_values_are_400_naming_the_parameter(live: LiveServer, admin_key: str) -> None:
    status, kind, message = _error(_get(live, "/v1/files", after_id="file_\x00"))
    assert (status, kind) == (400, "invalid_request_error") and "'after_id'" in message
    assert _error(_get(live, "/v1/messages/batches", before_id="\x00"))[0] == 400
    assert _error(_get(live, "/v1/files", after_id="file_" + "f" * 1000))[:2] == (
        400,
        "invalid_request_error",
    )
    report = _get(
        live,
        "/v1/organizations/usage_report/messages",
        admin_key,
        starting_at="2025-03-01T00:00:00Z",
        **{"workspace_ids[]": "wrkspc_\x00"},
    )
    assert _error(report)[:2] == (400, "invalid_request_error") and "workspace_ids[]" in _error(report)[2]


def test_admin_values_are_bounded_by_their_columns(live: LiveServer, admin_key: str) -> None:
    workspace_id = _get(live, "/v1/organizations/workspaces", admin_key).json()["data"][0]["id"]
    keys = "/v1/organizations/api_keys"
    long_name = _post(live, keys, {"name": "k" * 500, "workspace_id": workspace_id}, admin_key)
    assert long_name.status_code == 200 and long_name.json()["name"] == "k" * 500  # the Admin API allows 500
    for body, field in (
        ({"name": "k" * 501, "workspace_id": workspace_id}, "name"),
        ({"name": "a\x00b", "workspace_id": workspace_id}, "name"),
        ({"name": "ok", "workspace_id": "wrkspc_\x00"}, "workspace_id"),
    ):
        status, kind, message = _error(_post(live, keys, body, admin_key))
        assert (status, kind) == (400, "invalid_request_error") and message.startswith(f"{field}:"), message
    renamed = _post(live, f"{keys}/{long_name.json()['id']}", {"name": "x\x00"}, admin_key)
    assert _error(renamed)[:2] == (400, "invalid_request_error")
    workspace = _post(live, "/v1/organizations/workspaces", {"name": "w\x00"}, admin_key)
    assert _error(workspace)[2].startswith("name:")
    for email in ("a\x00@example.com", "a" * 310 + "@example.com"):
        invite = _post(live, "/v1/organizations/invites", {"email": email, "role": "user"}, admin_key)
        status, _, message = _error(invite)
        assert status == 400 and message.startswith("email:"), message


def test_file_and_skill_values_are_bounded(live: LiveServer) -> None:
    client = live.client()
    with pytest.raises(anthropic.BadRequestError) as mime:
        client.beta.files.upload(file=("a.txt", b"x", "text/" + "x" * 300))
    assert "Content-Type" in mime.value.message and "at most 256" in mime.value.message
    with pytest.raises(anthropic.BadRequestError) as nul:
        client.beta.skills.create(files=[("greeter/SKILL.md", skill_md(body="a\x00b"), "text/markdown")])
    assert "SKILL.md" in nul.value.message and "NUL" in nul.value.message
    with pytest.raises(anthropic.BadRequestError) as folder:
        client.beta.skills.create(files=bundle("d" * 300))
    assert "directory" in folder.value.message and "at most 256" in folder.value.message
    with pytest.raises(anthropic.BadRequestError):
        client.beta.skills.list(page="page_" + "AAA")  # a cursor that decodes to NUL bytes


def test_a_nul_in_model_is_400_and_loses_no_usage_row(live: LiveServer) -> None:
    client = live.client()
    before = len(live.run(live.services.usage.recent(limit=10_000)))
    for model in (SCRIPTED_MODEL + "\x00", "m" * 257):
        with pytest.raises(anthropic.BadRequestError) as refused:
            client.messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        message = refused.value.body["error"]["message"]  # type: ignore[index]
        assert message.startswith("model:"), message
    ok = client.messages.create(
        model=SCRIPTED_MODEL, max_tokens=5, messages=[{"role": "user", "content": "a\x00b"}]
    )
    assert ok.content[0].text == "a\x00b"  # NUL in message text is legitimate content
    records = live.run(live.services.usage.recent(limit=10_000))
    assert len(records) == before + 1 and records[0].model == SCRIPTED_MODEL
    journal = Path(live.settings.data_dir) / "ledger-journal" / "rejected.jsonl"
    assert not journal.exists()


def _raw(live: LiveServer, path: str, body: bytes, key: str | None = None) -> httpx.Response:
    headers = {"x-api-key": key or live.key, "content-type": "application/json"}
    return httpx.post(f"{live.base_url}{path}", content=body, headers=headers, timeout=30)


UNPAIRED = "is an unpaired UTF-16 surrogate"
NO_LOW = f"The request body is not valid JSON: no low surrogate in string (\\ud800 {UNPAIRED})"
NO_HIGH = f"The request body is not valid JSON: no high surrogate in string (\\udc00 {UNPAIRED})"
MESSAGE = b'{"model": "scripted-1", "max_tokens": 5, "messages": [{"role": "user", "content": %s}]}'


def test_a_lone_surrogate_is_400_naming_the_field(live: LiveServer, admin_key: str) -> None:
    """``"\\ud800"`` is JSON syntax but no text: never a 500 nor a replacement character, on any endpoint."""
    cases = [
        (
            "/v1/messages",
            MESSAGE % b'"hi \\ud800"',
            None,
            f"messages.0.content: {NO_LOW}: line 1 column 87 (char 86)",
        ),
        (
            "/v1/messages/count_tokens",
            b'{"model": "scripted-1", "messages": [{"role": "user", "content": [{"type": "text", '
            b'"text": "\\udc00 \\u00e9"}]}]}',
            None,
            f"messages.0.content.0.text: {NO_HIGH}",
        ),
        (
            "/v1/messages",
            b'{"model": "scripted-1\\ud800x", "max_tokens": 5, "messages": []}',
            None,
            f"model: {NO_LOW}",
        ),
        ("/v1/organizations/workspaces", b'{"name": "w\\ud800"}', admin_key, f"name: {NO_LOW}"),
        (
            "/v1/organizations/invites",
            b'{"email": "a\\udc00@example.com", "role": "user"}',
            admin_key,
            f"email: {NO_HIGH}",
        ),
        (
            "/v1/organizations/workspaces",
            b'{"n\\ud800": 1}',
            admin_key,
            f"{NO_LOW}: line 1 column 4 (char 3)",
        ),
    ]
    for path, body, key, message in cases:
        status, kind, said = _error(_raw(live, path, body, key))
        assert (status, kind) == (400, "invalid_request_error") and said.startswith(message), (path, said)
    chat = _raw(
        live,
        "/v1/chat/completions",
        b'{"model": "scripted-1", "messages": [{"role": "user", "content": "\\ud800"}]}',
    )
    assert chat.status_code == 400 and chat.json()["error"]["message"].startswith(
        f"messages.0.content: {NO_LOW}"
    )
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": "\\ud800"}'}}
    turns = [{"role": "user", "content": "go"}, {"role": "assistant", "tool_calls": [call]}]
    arguments = _post(live, "/v1/chat/completions", {"model": SCRIPTED_MODEL, "messages": turns})
    assert arguments.status_code == 400, arguments.text
    assert arguments.json()["error"]["message"] == (
        "messages.1.tool_calls.0.function.arguments: it is not valid JSON: no low surrogate in string "
        "(\\ud800 is an unpaired UTF-16 surrogate)"
    )
    # A surrogate pair is one character, as it should be.
    paired = _raw(live, "/v1/messages", MESSAGE % b'"\\ud83d\\ude00"')
    assert paired.status_code == 200 and paired.json()["content"][0]["text"] == "\U0001f600"


def test_a_lone_surrogate_in_a_batch_is_400_naming_the_request_and_field(live: LiveServer) -> None:
    params = (
        b'{"model": "scripted-1", "max_tokens": 5, "messages": [{"role": "user", "content": '
        b'[{"type": "text", "text": "ok"}, "x\\ud800"]}]}'
    )
    ok = b'{"custom_id": "a", "params": {"model": "scripted-1", "max_tokens": 5, "messages": []}}'
    for body, message in (
        (
            b'{"requests": [' + ok + b', {"custom_id": "b", "params": ' + params + b"}]}",
            f"requests.1.params.messages.0.content.1: {NO_LOW}",
        ),
        (b'{"requests": [' + ok + b', {"custom_id": "\\udc00"}]}', f"requests.1.custom_id: {NO_HIGH}"),
        (b'{"requests": [{"custom_id": "c", "p\\ud800": 1}]}', f"requests.0: {NO_LOW}"),
        (b'{"requ\\udc00ests": []}', NO_HIGH),
        (b'{"requests": [{"custom_id": "d", "params": {"x": "\\ud800"', f"requests.0.params.x: {NO_LOW}"),
    ):
        status, kind, said = _error(_raw(live, "/v1/messages/batches", body))
        assert (status, kind) == (400, "invalid_request_error") and said.startswith(message), said
    not_utf8 = _raw(live, "/v1/messages/batches", b'{"requests": [{"custom_id": "\xff"}]}')
    assert _error(not_utf8)[:2] == (400, "invalid_request_error")


def test_a_form_field_that_is_not_utf8_is_named(live: LiveServer) -> None:
    files = [("files[]", ("greeter/SKILL.md", skill_md(), "text/markdown"))]
    cesu = httpx.post(  # a surrogate written as UTF-8 bytes is no UTF-8
        f"{live.base_url}/v1/skills",
        headers={"x-api-key": live.key, "anthropic-beta": "skills-2025-10-02"},
        files=[*files, ("display_name", (None, b"a\xed\xa0\x80b"))],
    )
    assert _error(cesu) == (400, "invalid_request_error", "display_name: the form field is not valid UTF-8")


def test_names_refuse_control_characters(live: LiveServer, admin_key: str) -> None:
    """Names people see in pages, CSV and the Admin API take no control character (\\x00-\\x1f, \\x7f)."""
    control = "must not contain control characters"
    workspace_id = _get(live, "/v1/organizations/workspaces", admin_key).json()["data"][0]["id"]
    for path, body, field in (
        ("/v1/organizations/workspaces", {"name": "a\x01b"}, "name"),
        ("/v1/organizations/workspaces", {"name": "\x1b[31mred"}, "name"),
        ("/v1/organizations/api_keys", {"name": "k\x7f", "workspace_id": workspace_id}, "name"),
        (f"/v1/organizations/workspaces/{workspace_id}", {"name": "tab\there"}, "name"),
        ("/v1/organizations/invites", {"email": "a\x07@example.com", "role": "user"}, "email"),
    ):
        status, kind, message = _error(_post(live, path, body, admin_key))
        assert (status, kind) == (400, "invalid_request_error") and message.startswith(
            f"{field}: {control}"
        ), message
    client = live.client()
    for title in ("a\x01b", "bell\x07", "del\x7f"):
        with pytest.raises(anthropic.BadRequestError) as refused:
            client.beta.skills.create(display_name=title, files=bundle("greeter"))
        said = refused.value.body["error"]["message"]  # type: ignore[index]
        assert said == f"display_name: {control} (\\u0000-\\u001f, \\u007f-\\u009f)", said
    assert (
        client.beta.skills.create(display_name="Grüße ✓", files=bundle("greeter")).display_title == "Grüße ✓"
    )


def test_an_invite_name_with_nul_or_control_characters_is_refused(live: LiveServer) -> None:
    async def invite_and_accept(email: str, name: str) -> str:
        services = live.services
        assert services.organization_id is not None
        scope = Scope(services.organization_id, None)
        made = await services.people.create_invite(scope, email, "user", [])
        try:
            await services.people.accept_invite(scope, made.id, name)
        except InvalidRequest as exc:
            return exc.message
        return "accepted"

    assert live.run(invite_and_accept("nul@example.com", "a\x00b")).startswith("name: must not contain NUL")
    assert live.run(invite_and_accept("ctl@example.com", "a\x01b")).startswith(
        "name: must not contain control"
    )
    assert live.run(invite_and_accept("ok@example.com", "Zoë")) == "accepted"


def test_skill_front_matter_escapes_are_checked_like_any_stored_text(live: LiveServer) -> None:
    """YAML escapes make characters the UTF-8 text of SKILL.md cannot hold: a lone surrogate, a NUL."""
    client = live.client()
    for field, front, problem in (
        ("description", 'description: "hi \\ud800"', "lone UTF-16 surrogates"),
        ("description", 'description: "a\\0b"', "NUL"),
        ("name", 'name: "g\\udc00"', "lone UTF-16 surrogates"),
        ("name", 'name: "greeter\\n"', "lowercase letters"),
    ):
        text = (
            skill_md()
            .decode()
            .replace("description: Greets people" if field == "description" else "name: greeter", front)
        )
        with pytest.raises(anthropic.BadRequestError) as refused:
            client.beta.skills.create(files=[("greeter/SKILL.md", text.encode(), "text/markdown")])
        said = refused.value.body["error"]["message"]  # type: ignore[index]
        assert said.startswith("SKILL.md: ") and field in said and problem in said, said


def _token(text: str, prefix: str = "") -> str:
    return prefix + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_forged_page_cursors_are_400(live: LiveServer, admin_key: str) -> None:
    """A page token is the client's to send back: whatever it decodes to, a bad one is a 400 naming
    ``page`` — an id past 64 bits, other scripts' digits, a moment out of range — never a 500."""
    client = live.client()
    client.messages.create(model=SCRIPTED_MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    client.messages.create(model=SCRIPTED_MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    deadline = time.monotonic() + 10  # usage is settled just after the response is sent
    while not (first := _get(live, "/v1/organizations/request_log", admin_key, limit=1).json())["next_page"]:
        assert time.monotonic() < deadline, first
        time.sleep(0.05)
    moment = base64.urlsafe_b64decode(first["next_page"] + "==").decode().split("|")[0]
    second = _get(live, "/v1/organizations/request_log", admin_key, limit=1, page=first["next_page"])
    assert second.status_code == 200 and second.json()["data"][0]["id"] != first["data"][0]["id"]
    console = login(live, admin_key)
    log_tokens = [
        _token(f"{moment}|{2**63}"),
        _token(f"{moment}|{10**30}"),
        _token(f"{moment}|١٢"),
        _token(f"{moment}|1_000"),
        _token("9999-12-31T23:59:59-23:59|1"),
        _token("|1"),
        "x" * 30_000,
    ]
    for token in log_tokens:
        status, kind, message = _error(_get(live, "/v1/organizations/request_log", admin_key, page=token))
        assert (status, kind) == (400, "invalid_request_error"), message
        assert message.startswith("page: invalid page cursor") and len(message) < 200, message
        for path in ("/console/requests", "/console/requests.csv"):
            page = console.get(path, params={"page": token})
            assert page.status_code == 400 and "invalid page cursor" in page.text, (path, page.text[:300])
    for token in (_token(f"{moment}|x"), _token(f"0001-01-01T00:00:00+23:59|{'f' * 10}", "page_")):
        files = _get(live, "/v1/files", page=token)
        assert _error(files)[:2] == (400, "invalid_request_error"), files.text
    for token in ("page_" + "9" * 30, "page_²", "page_" + "x" * 30_000):
        listed = _get(live, "/v1/organizations/rate_limits", admin_key, page=token)
        status, kind, message = _error(listed)
        assert (status, kind) == (400, "invalid_request_error") and len(message) < 200, message


def test_long_values_are_not_echoed_whole(live: LiveServer, admin_key: str) -> None:
    """A 30 KB page token or filter value is named in the 400 by its first 64 characters, not sent back
    (and logged) whole."""
    long = "z" * 30_000
    for path, params in (
        ("/v1/organizations/usage_report/messages", {"starting_at": "2025-03-01T00:00:00Z", "page": long}),
        ("/v1/organizations/cost_report", {"starting_at": "2025-03-01T00:00:00Z", "page": long}),
        ("/v1/organizations/spend_limit_increase_requests", {"status[]": long}),
        ("/v1/organizations/spend_limits/effective", {"period[]": long}),
        ("/v1/organizations/invites", {"statuses[]": long}),
    ):
        status, kind, message = _error(_get(live, path, admin_key, **params))
        assert (status, kind) == (400, "invalid_request_error"), message
        assert "z" * 64 + "…" in message and len(message) < 300, (path, message[:300])
    listed = _get(live, "/v1/messages/batches", after_id="msgbatch_" + long)
    assert "z" * 55 + "…" in _error(listed)[2] and len(_error(listed)[2]) < 300
    for path, body in (
        ("/v1/messages", {"model": SCRIPTED_MODEL, "max_tokens": 5, "messages": [], long: 1}),
        ("/v1/messages/batches", {long: []}),
        (
            "/v1/messages/count_tokens",
            {"model": SCRIPTED_MODEL, "messages": [{"role": "user", "content": [{"type": long}]}]},
        ),
    ):
        status, kind, message = _error(_post(live, path, body))
        assert (status, kind) == (400, "invalid_request_error"), message
        assert "z" * 64 + "…" in message and len(message) < 300, (path, message[:300])


def test_names_refuse_bidi_overrides_c1_controls_and_blanks(live: LiveServer, admin_key: str) -> None:
    """What hides or forges the text people read (``U+202E`` shows ``exe.txt`` as ``txt.exe``, C1
    controls are terminal escapes) and a name of only spaces are refused wherever a name is taken."""
    workspace_id = _get(live, "/v1/organizations/workspaces", admin_key).json()["data"][0]["id"]
    for name, problem in (
        ("invoice\u202etxt.exe", "bidirectional"),
        ("a\u2066b", "bidirectional"),
        ("a\u009bb", "control characters"),
        ("a\x85b", "control characters"),
        ("   ", "empty or only whitespace"),
        ("\t", "empty or only whitespace"),
    ):
        for path, body in (
            ("/v1/organizations/workspaces", {"name": name}),
            (f"/v1/organizations/workspaces/{workspace_id}", {"name": name}),
            ("/v1/organizations/api_keys", {"name": name, "workspace_id": workspace_id}),
        ):
            status, kind, message = _error(_post(live, path, body, admin_key))
            assert (status, kind) == (400, "invalid_request_error"), message
            assert message.startswith("name: ") and problem in message, (path, message)
    with pytest.raises(anthropic.BadRequestError) as refused:
        live.client().beta.skills.create(display_name="a\u202eb", files=bundle("greeter"))
    assert "bidirectional" in refused.value.body["error"]["message"]  # type: ignore[index]
    kept = _post(live, "/v1/organizations/workspaces", {"name": "Équipe ✓ 日本"}, admin_key)
    assert kept.status_code == 200 and kept.json()["name"] == "Équipe ✓ 日本"


def test_console_key_names_take_the_api_bound(live: LiveServer) -> None:
    """A person's own key in Account Settings takes a name as long as the Admin API takes (500), no
    more, refused alike; the form's maxlength says the same."""
    with closing(join(live, "keys-bound@example.com", "developer")) as person:
        page = person.get("/console/account").text
        assert f'maxlength="{KEY_NAME_LENGTH}"' in page
        workspace = re.search(r'<option value="(wrkspc_[^"]+)">', page)
        assert workspace is not None
        for name, said in (
            ("k" * 300, None),
            ("k" * 501, "name: must be at most 500 characters long, got 501"),
            ("a\u202eb", "name: must not contain bidirectional formatting characters"),
        ):
            data = {"csrf_token": csrf_of(page), "name": name, "workspace_id": workspace.group(1)}
            made = person.post("/console/account/keys", data={**data, "back": "/console/account"})
            if said is None:
                assert made.status_code == 200 and 'data-copy="new-key-secret"' in made.text
            else:
                shown = html.unescape(flash(person, made))
                assert shown.startswith(said), shown


def test_a_spend_request_reason_is_refused_whole_not_cut(live: LiveServer, admin_key: str) -> None:
    """The reason is shown to billing (console) and by ``wisegate spend-requests list``: past 1024
    characters or with a control character (an ESC would drive the terminal) it is refused, not cut
    or stored as sent; the form's maxlength is the same bound."""
    workspace_id = _get(live, "/v1/organizations/workspaces", admin_key).json()["data"][0]["id"]
    grants = [(workspace_id, "workspace_developer")]
    with closing(join(live, "asks-more@example.com", "developer", grants)) as person:
        page = person.get("/console/account").text
        assert 'name="reason" required maxlength="1024"' in page
        for reason, said in (
            ("r" * 1025, "Reason: must be at most 1024 characters long, got 1025"),
            ("load \x1b]0;owned\x07test", "Reason: must not contain control characters"),
        ):
            data = {"csrf_token": csrf_of(page), "back": "/console/account", "workspace_id": workspace_id}
            asked = person.post("/console/account/spend-request", data={**data, "reason": reason, "usd": "5"})
            shown = html.unescape(flash(person, asked))
            assert shown.startswith(said), shown
        listed = _get(live, "/v1/organizations/spend_limit_increase_requests", admin_key).json()["data"]
        assert listed == []
        data = {"csrf_token": csrf_of(page), "back": "/console/account", "workspace_id": workspace_id}
        asked = person.post("/console/account/spend-request", data={**data, "reason": "r" * 1024, "usd": "5"})
        assert "Asked for a higher spend limit" in html.unescape(flash(person, asked))


def test_a_bad_model_on_chat_completions_is_400_and_loses_no_usage_row(live: LiveServer) -> None:
    """The OpenAI-format paths validate ``model`` as /v1/messages does: a NUL (PostgreSQL cannot store
    it with the usage row), a control or bidirectional character (echoed to logs and pages) is a 400
    naming the field in OpenAI's shape — not a 404 whose usage row the database refuses."""
    before = len(live.run(live.services.usage.recent(limit=10_000)))
    bearer = {"authorization": f"Bearer {live.key}"}
    for path in ("/v1/chat/completions", "/openai/v1/chat/completions"):
        for model in (SCRIPTED_MODEL + "\x00", SCRIPTED_MODEL + "\x1b[31m", "\u202e" + SCRIPTED_MODEL):
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            response = httpx.post(f"{live.base_url}{path}", json=body, headers=bearer, timeout=30)
            assert response.status_code == 400, (path, repr(model), response.text)
            error = response.json()["error"]
            assert error["type"] == "invalid_request_error" and error["message"].startswith("model: "), error
    for model in (SCRIPTED_MODEL + "\x1b", SCRIPTED_MODEL + "\u2066"):
        status, kind, message = _error(
            _post(
                live,
                "/v1/messages",
                {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
            )
        )
        assert (status, kind) == (400, "invalid_request_error") and message.startswith("model:"), message
    assert len(live.run(live.services.usage.recent(limit=10_000))) == before
    assert not (Path(live.settings.data_dir) / "ledger-journal" / "rejected.jsonl").exists()


def test_a_page_token_is_good_only_for_its_own_list(live: LiveServer) -> None:
    """Files and skills list newest first from a position token: one built by hand with an id that is
    not of that list (or no id we could issue) is a 400, not a silently wrong page."""
    moment = "2026-01-01T00:00:00+00:00"
    tail = "_01" + "A" * 22
    for path, own, other in (("/v1/files", "file", "skill"), ("/v1/skills", "skill", "file")):
        for item in (other + tail, "anything", own + "_01", own + tail + "'; --"):
            status, kind, message = _error(_get(live, path, page=_token(f"{moment}|{item}", "page_")))
            assert (status, kind) == (400, "invalid_request_error"), (path, item, message)
            assert message.startswith("page: invalid page cursor"), message
        assert _get(live, path, page=_token(f"{moment}|{own}{tail}", "page_")).status_code == 200, path
