"""The Admin API's organization, workspaces, API keys and isolation, through the anthropic 2.10 SDK's
``client.organization`` resources (and raw HTTP for error bodies)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.api.admin_support import AdminServer, admin_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminServer]:
    yield from admin_server(tmp_path_factory.mktemp("admin-tenancy"))


def _error(response: Any) -> tuple[int, str, str]:
    body = response.json()
    assert body["type"] == "error" and body["request_id"] == response.headers["request-id"]
    return response.status_code, body["error"]["type"], body["error"]["message"]


def test_organization_me(server: AdminServer) -> None:
    org = server.admin().organization.retrieve()
    assert org.type == "organization" and org.id == server.organization_id and org.name
    assert _error(server.get("/v1/organizations/me", key="sk-wg-api01-nope"))[:2] == (
        401,
        "authentication_error",
    )


def test_api_keys_are_refused_by_the_admin_api(server: AdminServer) -> None:
    """The Admin API needs an admin key: a valid API key is a 401 on every path, reads included."""
    client = server.client(server.live.key)
    workspace_id = server.admin().organization.workspaces.list().data[0].id
    calls = {
        "me": client.organization.retrieve,
        "api_keys": lambda: client.organization.api_keys.list(),
        "workspaces": lambda: client.organization.workspaces.list(),
        "members": lambda: client.organization.workspaces.members.list(workspace_id),
        "create workspace": lambda: client.organization.workspaces.create(name="nope"),
        "invites": lambda: client.organization.invites.list(),
    }
    for name, call in calls.items():
        with pytest.raises(anthropic.AuthenticationError) as refused:
            call()
        assert refused.value.status_code == 401, name
        assert refused.value.body["error"]["type"] == "authentication_error", name  # type: ignore[index]
        assert "needs an admin key" in refused.value.message, name
    for path in ("/v1/organizations/usage_report/messages", "/v1/organizations/cost_report"):
        report = server.get(path, server.live.key, starting_at="2025-03-01T00:00:00Z")
        assert _error(report)[:2] == (401, "authentication_error")


def test_admin_keys_are_told_to_use_an_api_key(server: AdminServer) -> None:
    """The mirror of the above: an admin key is no inference key, and the 401 says which key to use."""
    admin = server.admin()
    calls = {
        "/v1/messages": lambda: admin.messages.create(
            model="scripted-1", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        ),
        "/v1/messages/count_tokens": lambda: admin.messages.count_tokens(
            model="scripted-1", messages=[{"role": "user", "content": "hi"}]
        ),
        "/v1/models": lambda: admin.models.list(),
        "/v1/files": lambda: admin.beta.files.list(),
    }
    for path, call in calls.items():
        with pytest.raises(anthropic.AuthenticationError) as refused:
            call()
        assert refused.value.body["error"] == {  # type: ignore[index]
            "type": "authentication_error",
            "message": f"This is an Admin API key (sk-wg-admin01-…); {path} needs an API key "
            "(sk-wg-api01-…). "
            "Create one with: wisegate keys create --name NAME",
        }
    chat = httpx.post(
        server.base_url + "/v1/chat/completions",
        json={"model": "scripted-1", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {server.admin_key}"},
    )
    assert (
        chat.status_code == 401 and "/v1/chat/completions needs an API key" in chat.json()["error"]["message"]
    )
    unknown = server.post("/v1/messages", {"model": "scripted-1"}, key="sk-wg-admin01-nope")
    assert _error(unknown)[1:] == ("authentication_error", "invalid x-api-key")


def test_workspace_lifecycle(server: AdminServer) -> None:
    admin = server.admin()
    created = admin.organization.workspaces.create(name="Research", display_color="#123ABC")
    assert created.id.startswith("wrkspc_") and created.type == "workspace"
    assert created.name == "Research" and created.display_color == "#123ABC" and created.archived_at is None
    assert created.data_residency.workspace_geo == "us" and created.tags == {}

    fetched = admin.organization.workspaces.retrieve(created.id)
    assert fetched.id == created.id and fetched.created_at == created.created_at
    renamed = admin.organization.workspaces.update(created.id, name="Research 2")
    assert renamed.name == "Research 2" and renamed.display_color == "#123ABC"

    listed = [w.id for w in admin.organization.workspaces.list(limit=1000)]
    assert created.id in listed
    key_id, secret = server.new_key(created.id)
    assert server.client(secret).models.list().data

    archived = admin.organization.workspaces.archive(created.id)
    assert archived.archived_at is not None
    assert created.id not in [w.id for w in admin.organization.workspaces.list(limit=1000)]
    assert created.id in [w.id for w in admin.organization.workspaces.list(include_archived=True, limit=1000)]
    # Archiving a workspace archives its keys: they stop working at once.
    assert admin.organization.api_keys.retrieve(key_id).status == "archived"
    with pytest.raises(anthropic.AuthenticationError):
        server.client(secret).models.list()
    with pytest.raises(anthropic.BadRequestError, match="archived"):
        admin.organization.workspaces.update(created.id, name="again")


def test_workspace_errors(server: AdminServer) -> None:
    admin = server.admin()
    with pytest.raises(anthropic.NotFoundError):
        admin.organization.workspaces.retrieve("wrkspc_doesnotexist")
    with pytest.raises(anthropic.NotFoundError):
        admin.organization.workspaces.archive("wrkspc_doesnotexist")
    status, kind, message = _error(server.post("/v1/organizations/workspaces", {"name": "x" * 41}))
    assert (status, kind) == (400, "invalid_request_error") and message.startswith("name:")
    status, _, message = _error(server.post("/v1/organizations/workspaces", {"name": "ok", "colour": "red"}))
    assert status == 400 and "colour" in message
    status, _, message = _error(
        server.post("/v1/organizations/workspaces", {"name": "ok", "allowed_models": ["x"]})
    )
    assert status == 400 and "allowed_models: unknown model 'x'" in message
    default = [w for w in admin.organization.workspaces.list(limit=1000) if w.name == "Default"][0]
    with pytest.raises(anthropic.BadRequestError, match="default workspace"):
        admin.organization.workspaces.archive(default.id)
    assert _error(server.get("/v1/organizations/workspaces", limit=0))[0] == 400
    assert _error(server.get("/v1/organizations/workspaces", include_archived="maybe"))[0] == 400


def test_api_keys_list_filter_page_and_update(server: AdminServer) -> None:
    admin = server.admin()
    workspace = admin.organization.workspaces.create(name="Keys")
    made = [server.new_key(workspace.id, f"key-{i}") for i in range(5)]
    ids = [key_id for key_id, _ in made]

    keys = admin.organization.api_keys.list(workspace_id=workspace.id)
    assert [k.id for k in keys.data] == ids[::-1]  # newest first
    first = keys.data[0]
    assert first.type == "api_key" and first.scope.type == "workspace"
    assert first.scope.workspace_id == workspace.id and first.status == "active"
    assert first.partial_key_hint and first.partial_key_hint.startswith("sk-wg-api01-")

    page = admin.organization.api_keys.list(workspace_id=workspace.id, limit=2)
    assert [k.id for k in page.data] == ids[:2:-1][:2] and page.has_more
    assert page.first_id == ids[4] and page.last_id == ids[3]
    # The SDK follows after_id through every page.
    assert [k.id for k in page] == ids[::-1]
    before = admin.organization.api_keys.list(workspace_id=workspace.id, before_id=ids[1], limit=2)
    assert [k.id for k in before.data] == [ids[3], ids[2]] and before.has_more
    assert [k.id for k in before] == [ids[3], ids[2], ids[4]]

    renamed = admin.organization.api_keys.update(ids[0], name="renamed")
    assert renamed.name == "renamed" and renamed.status == "active"
    disabled = admin.organization.api_keys.update(ids[0], status="inactive")
    assert disabled.status == "inactive"
    with pytest.raises(anthropic.AuthenticationError):
        server.client(made[0][1]).models.list()
    listed = admin.organization.api_keys.list(workspace_id=workspace.id, status="inactive")
    assert [k.id for k in listed.data] == [ids[0]]
    assert admin.organization.api_keys.update(ids[0], status="active").status == "active"
    assert server.client(made[0][1]).models.list().data

    admin.organization.api_keys.update(ids[1], status="archived")
    with pytest.raises(anthropic.BadRequestError, match="cannot be reactivated"):
        admin.organization.api_keys.update(ids[1], status="active")

    with pytest.raises(anthropic.NotFoundError):
        admin.organization.api_keys.retrieve("apikey_nope")
    with pytest.raises(anthropic.NotFoundError):
        admin.organization.api_keys.update("apikey_nope", name="x")
    assert _error(server.get("/v1/organizations/api_keys", status="gone"))[0] == 400
    assert _error(server.get("/v1/organizations/api_keys", after_id="apikey_nope"))[0] == 400
    both = _error(server.get("/v1/organizations/api_keys", after_id=ids[0], before_id=ids[1]))
    assert both[0] == 400 and "cannot both be set" in both[2]
    assert _error(server.post(f"/v1/organizations/api_keys/{ids[2]}", {"status": "paused"}))[0] == 400


def test_create_api_key_extension(server: AdminServer) -> None:
    workspace = server.admin().organization.workspaces.create(name="Created keys")
    response = server.post(
        "/v1/organizations/api_keys", {"name": "made by api", "workspace_id": workspace.id}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "api_key" and body["workspace_id"] == workspace.id
    assert body["secret"].startswith("sk-wg-api01-")
    assert server.client(body["secret"]).models.list().data
    missing = server.post("/v1/organizations/api_keys", {"name": "x", "workspace_id": "wrkspc_nope"})
    assert _error(missing)[:2] == (404, "not_found_error")
    api_key = server.post(
        "/v1/organizations/api_keys", {"name": "x", "workspace_id": workspace.id}, server.live.key
    )
    assert _error(api_key)[:2] == (401, "authentication_error")
