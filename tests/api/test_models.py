"""GET /v1/models and /v1/models/{id} through the official SDK: paging, aliases, errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.conftest import LiveServer, serve, settings_for
from wisegate.backends.scripted import ScriptedBackend
from wisegate.settings import BackendConfig, ModelConfig

# Relative to the day the suite runs: a fixed date would retire the model once that day has passed.
RETIRES = (datetime.now(UTC) + timedelta(days=400)).replace(microsecond=0)
MODELS = [
    ModelConfig(id="old-1", backend="s", created_at="2024-01-01T00:00:00Z", display_name="Old"),
    ModelConfig(
        id="mid-20250929",
        backend="s",
        created_at="2025-09-29T00:00:00Z",
        aliases=["mid-latest"],
        line="sonnet",
        max_input_tokens=1000,
        max_output_tokens=100,
    ),
    ModelConfig(id="new-1", backend="s", created_at="2026-02-01T00:00:00+00:00"),
    ModelConfig(
        id="gone-1",
        backend="s",
        created_at="2023-03-01T00:00:00Z",
        lifecycle="deprecated",
        deprecated_at="2026-01-01T00:00:00Z",
        retires_at=RETIRES.isoformat().replace("+00:00", "Z"),
    ),
    ModelConfig(
        id="lapsed-1",
        backend="s",
        created_at="2022-06-01T00:00:00Z",
        lifecycle="deprecated",
        retires_at="2025-01-01T00:00:00Z",
    ),
    ModelConfig(id="dead-1", backend="s", created_at="2022-01-01T00:00:00Z", lifecycle="retired"),
]
NEWEST_FIRST = ["new-1", "mid-20250929", "old-1", "gone-1", "lapsed-1", "dead-1"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = settings_for(
        Path(tmp_path_factory.mktemp("models")), backends={"s": BackendConfig(type="scripted")}, models=MODELS
    )
    yield from serve(settings, backends={"s": ScriptedBackend("s")})


def test_list_newest_first_with_sdk_auto_pagination(server: LiveServer) -> None:
    client = server.client(_strict_response_validation=True)
    first = client.models.list(limit=1)
    assert [m.id for m in first.data] == ["new-1"] and first.has_more
    assert [m.id for m in client.models.list(limit=1)] == NEWEST_FIRST
    assert [m.id for m in client.models.list()] == NEWEST_FIRST
    page = client.models.list(limit=2, after_id="new-1")
    assert [m.id for m in page.data] == ["mid-20250929", "old-1"]
    assert page.first_id == "mid-20250929" and page.last_id == "old-1" and page.has_more
    back = client.models.list(limit=2, before_id="gone-1")
    assert [m.id for m in back.data] == ["mid-20250929", "old-1"] and back.has_more
    assert [m.id for m in client.models.list(limit=1000, before_id="mid-20250929").data] == ["new-1"]


def test_async_sdk_pagination(server: LiveServer) -> None:
    async def ids() -> list[str]:
        async with anthropic.AsyncAnthropic(base_url=server.base_url, api_key=server.key) as client:
            return [m.id async for m in client.models.list(limit=1)]

    assert server.run(ids()) == NEWEST_FIRST


def test_model_info_has_every_sdk_field(server: LiveServer) -> None:
    client = server.client(_strict_response_validation=True)
    model = client.models.retrieve("mid-20250929")
    assert model.type == "model" and model.display_name == "mid-20250929"
    assert model.created_at.isoformat() == "2025-09-29T00:00:00+00:00"
    assert model.lifecycle == "active" and model.line == "sonnet"
    assert model.max_input_tokens == 1000 and model.max_tokens == 100
    assert model.capabilities is not None
    assert model.capabilities.image_input.supported  # the scripted backend takes images
    assert model.capabilities.thinking.types.disabled.supported
    assert model.capabilities.batch.supported  # every model runs in message batches
    gone = client.models.retrieve("gone-1")
    assert gone.lifecycle == "deprecated" and gone.deprecated_at is not None
    assert gone.retires_at == RETIRES
    raw = httpx.get(f"{server.base_url}/v1/models/old-1", headers={"x-api-key": server.key}).json()
    assert raw["created_at"] == "2024-01-01T00:00:00Z" and raw["display_name"] == "Old"


def test_alias_resolves_to_the_dated_id(server: LiveServer) -> None:
    model = server.client().models.retrieve("mid-latest")
    assert model.id == "mid-20250929"


def test_unknown_model_is_404(server: LiveServer) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        server.client().models.retrieve("claude-nope")
    body = info.value.body
    assert isinstance(body, dict)
    assert body["error"] == {"type": "not_found_error", "message": "model: claude-nope"}
    assert body["request_id"].startswith("req_")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit: Input should be between 1 and 1000"),
        ("limit=1001", "limit: Input should be between 1 and 1000"),
        ("limit=abc", "limit: Input should be a valid integer"),
        ("after_id=x&before_id=y", "before_id and after_id cannot both be set"),
        ("after_id=nope", "after_id: unknown model 'nope'"),
    ],
)
def test_bad_paging_is_400(server: LiveServer, query: str, message: str) -> None:
    response = httpx.get(f"{server.base_url}/v1/models?{query}", headers={"x-api-key": server.key})
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error", "message": message}


def test_models_need_a_key(server: LiveServer) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        server.client(api_key="sk-wg-api01-wrong").models.list()


def test_created_at_must_be_rfc3339() -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        ModelConfig(id="x", backend="s", created_at="last tuesday")


def test_retired_models_are_listed_but_no_longer_answer(server: LiveServer) -> None:
    client = server.client()
    assert client.models.retrieve("dead-1").lifecycle == "retired"
    for model, when in (("dead-1", ""), ("lapsed-1", " on 2025-01-01")):
        with pytest.raises(anthropic.NotFoundError) as info:
            client.messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        assert info.value.type == "not_found_error"
        assert isinstance(info.value.body, dict)
        message = info.value.body["error"]["message"]
        assert message.startswith(f"model: {model} — this model was retired{when};")
        with pytest.raises(anthropic.NotFoundError):
            client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "hi"}])
    # Deprecated but not yet retired: still answers.
    server.backend.enqueue("still here")
    reply = client.messages.create(model="gone-1", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert reply.content[0].type == "text"
