"""NUL bytes and over-long strings get the same clean answer on SQLite and PostgreSQL.

PostgreSQL refuses a NUL in text and a string longer than its column; SQLite stores anything. Lengths and
characters come from one place (``protocol/bounds.py``, which the tables use too): an id that cannot
exist is a 404, a bad value a 400 naming the field — never a 500, and never a lost usage row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.api.files_support import bundle, skill_md
from tests.conftest import SCRIPTED_MODEL, LiveServer, make_key, postgres_database, scripted_settings, serve
from wisegate.backends.scripted import ScriptedBackend
from wisegate.domain.scope import Scope
from wisegate.errors import InvalidRequest


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
        assert said == f"display_name: {control} (\\u0000-\\u001f, \\u007f)", said
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
