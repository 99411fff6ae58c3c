"""A workspace's model allow-list: other models look unknown on /v1/models, /v1/messages and count_tokens."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.api.admin_support import AdminServer, admin_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminServer]:
    yield from admin_server(tmp_path_factory.mktemp("admin-models"))


def test_allow_list_narrows_every_model_endpoint(server: AdminServer) -> None:
    admin = server.admin()
    created = server.post(
        "/v1/organizations/workspaces", {"name": "Only two", "allowed_models": ["scripted-2"]}
    )
    assert created.status_code == 200 and created.json()["allowed_models"] == ["scripted-2"]
    workspace_id = created.json()["id"]
    _, secret = server.new_key(workspace_id)
    client = server.client(secret)

    assert [m.id for m in client.models.list()] == ["scripted-2"]
    assert client.models.retrieve("scripted-2").id == "scripted-2"
    for model in ("scripted-1", "scripted-latest"):  # the alias of a disallowed model is disallowed too
        with pytest.raises(anthropic.NotFoundError) as missing:
            client.models.retrieve(model)
        assert missing.value.body["error"]["message"] == f"model: {model}"  # type: ignore[index]
        with pytest.raises(anthropic.NotFoundError) as refused:
            client.messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        assert refused.value.body["error"]["message"] == f"model: {model}"  # type: ignore[index]
        with pytest.raises(anthropic.NotFoundError):
            client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(anthropic.NotFoundError):
            with client.messages.stream(
                model=model, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            ):
                pass
    ok = client.messages.create(
        model="scripted-2", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    )
    assert ok.model == "scripted-2"
    counted = client.messages.count_tokens(model="scripted-2", messages=[{"role": "user", "content": "hi"}])
    assert counted.input_tokens == 1  # the scripted backend counts one token per word

    # Keys of other workspaces are unaffected, and lifting the list takes effect at once.
    assert [m.id for m in server.client(server.live.key).models.list()] == ["scripted-2", "scripted-1"]
    lifted = server.post(f"/v1/organizations/workspaces/{workspace_id}", {"allowed_models": None})
    assert lifted.json()["allowed_models"] is None
    assert sorted(m.id for m in client.models.list()) == ["scripted-1", "scripted-2"]
    narrowed = server.post(f"/v1/organizations/workspaces/{workspace_id}", {"allowed_models": ["scripted-1"]})
    assert narrowed.json()["allowed_models"] == ["scripted-1"]
    assert [m.id for m in client.models.list()] == ["scripted-1"]
    assert admin.organization.workspaces.retrieve(workspace_id).name == "Only two"


def test_openai_model_lists_respect_the_allow_list(server: AdminServer) -> None:
    created = server.post(
        "/v1/organizations/workspaces", {"name": "OpenAI two", "allowed_models": ["scripted-2"]}
    )
    _, secret = server.new_key(created.json()["id"])
    client = openai.OpenAI(base_url=f"{server.base_url}/openai/v1", api_key=secret, max_retries=0)
    assert [m.id for m in client.models.list()] == ["scripted-2"]
    assert client.models.retrieve("scripted-2").id == "scripted-2"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("scripted-1")

    # /v1/models with Bearer (no anthropic-version) is the OpenAI shape: narrowed the same way.
    bearer = {"authorization": f"Bearer {secret}"}
    listed = httpx.get(f"{server.base_url}/v1/models", headers=bearer)
    assert listed.status_code == 200 and listed.json()["object"] == "list"
    assert [m["id"] for m in listed.json()["data"]] == ["scripted-2"]
    refused = httpx.get(f"{server.base_url}/v1/models/scripted-1", headers=bearer)
    assert refused.status_code == 404
    assert refused.json()["error"]["message"] == "model: scripted-1"
    # A key of a workspace without an allow-list still sees every model.
    everything = httpx.get(
        f"{server.base_url}/v1/models", headers={"authorization": f"Bearer {server.live.key}"}
    )
    assert sorted(m["id"] for m in everything.json()["data"]) == ["scripted-1", "scripted-2"]
