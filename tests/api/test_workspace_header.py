"""``anthropic-workspace-id`` (the SDKs' workspace option): a key acts in its own workspace only.

The key's own workspace is fine (also as ``default`` for a key of the default workspace), another
(existing or not) is a 403 naming the key's workspace, an id that cannot be a workspace's is a 400.
"""

from __future__ import annotations

from pathlib import Path

import anthropic
import httpx
import pytest

from tests.conftest import (
    SCRIPTED_MODEL,
    LiveServer,
    make_key,
    postgres_database,
    scripted_settings,
    serve,
)
from wisegate.backends.scripted import ScriptedBackend


def _workspaces(server: LiveServer) -> tuple[str, str, str]:
    """The default workspace's id, a second workspace's id, and an API key of the second."""

    async def run() -> tuple[str, str, str]:
        keys = server.services.keys
        principal = await keys.authenticate(server.key, kind="api", header="x-api-key")
        other = await keys.create_workspace(principal.organization_id, "workspace-header-test")
        _, secret = await keys.create_key(other.id, "other")
        return principal.workspace_id, other.id, secret

    result: tuple[str, str, str] = server.run(run())
    return result


def _ask(server: LiveServer, key: str, workspace: str) -> anthropic.types.Message:
    client = server.client(api_key=key, default_headers={"anthropic-workspace-id": workspace})
    return client.messages.create(
        model=SCRIPTED_MODEL, max_tokens=10, messages=[{"role": "user", "content": "in my workspace"}]
    )


def test_the_keys_own_workspace_is_accepted(scripted_server: LiveServer) -> None:
    own, other, other_key = _workspaces(scripted_server)
    assert _ask(scripted_server, scripted_server.key, own).content[0].type == "text"
    assert _ask(scripted_server, scripted_server.key, "default").content[0].type == "text"
    assert _ask(scripted_server, other_key, other).content[0].type == "text"
    with pytest.raises(anthropic.PermissionDeniedError, match="another workspace"):
        _ask(scripted_server, other_key, "default")  # "default" names the default workspace, not its own


@pytest.mark.parametrize("which", ["other", "unknown"])
def test_another_workspace_is_403_naming_the_keys_own(scripted_server: LiveServer, which: str) -> None:
    own, other, _ = _workspaces(scripted_server)
    claimed = other if which == "other" else "wrkspc_01NoSuchWorkspace"
    with pytest.raises(anthropic.PermissionDeniedError) as raised:
        _ask(scripted_server, scripted_server.key, claimed)
    body = raised.value.body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "permission_error"
    message = body["error"]["message"]
    assert "anthropic-workspace-id" in message and "another workspace" in message
    assert own in message and claimed in message


MALFORMED = ["Default", "wrkspc_", "wrkspc_01a-b", "wrkspc_" + "a" * 65, "", "apikey_01abc"]


@pytest.mark.parametrize("value", MALFORMED)
def test_a_malformed_workspace_id_is_400(scripted_server: LiveServer, value: str) -> None:
    response = httpx.post(
        scripted_server.base_url + "/v1/messages",
        headers={"x-api-key": scripted_server.key, "anthropic-workspace-id": value},
        json={"model": SCRIPTED_MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("anthropic-workspace-id:") and "not a workspace id" in error["message"]


def test_every_api_route_checks_it(scripted_server: LiveServer) -> None:
    _, other, _ = _workspaces(scripted_server)
    headers = {"x-api-key": scripted_server.key, "anthropic-workspace-id": other}
    for method, path in [("GET", "/v1/models"), ("GET", "/v1/messages/batches"), ("GET", "/v1/files")]:
        response = httpx.request(method, scripted_server.base_url + path, headers=headers)
        assert response.status_code == 403, path
        assert response.json()["error"]["type"] == "permission_error"
    count = httpx.post(
        scripted_server.base_url + "/v1/messages/count_tokens",
        headers=headers,
        json={"model": SCRIPTED_MODEL, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert count.status_code == 403


def test_an_admin_key_is_checked_for_the_form_only(scripted_server: LiveServer) -> None:
    _, other, _ = _workspaces(scripted_server)
    admin = make_key(scripted_server.settings, admin=True)
    url = scripted_server.base_url + "/v1/organizations/workspaces"
    for value, status in [(other, 200), ("default", 200), ("not-a-workspace", 400)]:
        response = httpx.get(url, headers={"x-api-key": admin, "anthropic-workspace-id": value})
        assert response.status_code == status, (value, response.text)


def test_on_postgres(tmp_path: Path) -> None:
    with postgres_database() as url:
        settings = scripted_settings(tmp_path, database_url=url)
        for server in serve(settings, backends={"scripted": ScriptedBackend()}):
            test_the_keys_own_workspace_is_accepted(server)
            test_another_workspace_is_403_naming_the_keys_own(server, "other")
            test_a_malformed_workspace_id_is_400(server, "wrkspc_%00")
