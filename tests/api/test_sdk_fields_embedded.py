"""Compaction and fallbacks end to end on the embedded SmolLM2, through the official SDK."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.test_sdk_fields import refusal
from tests.conftest import EMBEDDED_MODEL, LiveServer, serve, settings_for
from wisegate.backends.scripted import ScriptedBackend
from wisegate.domain.compaction import summarization_request
from wisegate.protocol.messages import MessagesRequest
from wisegate.settings import BackendConfig, ModelConfig

REFUSER = "refuser-1"
GREEDY = {"extra_body": {"temperature": 0}}
CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": "Hi! My name is Maria and I live in Lisbon."},
    {"role": "assistant", "content": "Nice to meet you, Maria! Lisbon is a beautiful city."},
    {"role": "user", "content": "I am planning a trip to Japan in April with my sister Ana."},
    {"role": "assistant", "content": "April is cherry blossom season in Japan, a great time to visit."},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = settings_for(tmp_path_factory.mktemp("fields-embedded"))
    settings.backends["scripted"] = BackendConfig(type="scripted")
    settings.models = [
        *settings.models,
        ModelConfig(id=REFUSER, backend="scripted", fallbacks=[EMBEDDED_MODEL]),
    ]
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


def scripted(server: LiveServer) -> ScriptedBackend:
    found = server.services.registry.backends["scripted"]
    assert isinstance(found, ScriptedBackend)
    return found


def count(server: LiveServer, body: dict[str, Any]) -> int:
    answer = httpx.post(
        f"{server.base_url}/v1/messages/count_tokens",
        headers={"x-api-key": server.key},
        json={k: v for k, v in body.items() if k not in ("max_tokens", "temperature")},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    tokens: int = answer.json()["input_tokens"]
    return tokens


def test_the_model_writes_a_summary_that_keeps_the_facts(server: LiveServer) -> None:
    client = server.client()
    request = {"model": EMBEDDED_MODEL, "max_tokens": 40, "messages": CONVERSATION, "temperature": 0}
    response = client.beta.messages.with_raw_response.create(
        model=EMBEDDED_MODEL, max_tokens=40, messages=CONVERSATION, compaction={"type": "summarize"}, **GREEDY
    )
    message = response.parse()
    assert message.stop_reason == "compaction"
    (block,) = message.content
    assert block.type == "compaction" and block.content
    summary = block.content
    assert "Maria" in summary and "Japan" in summary, summary
    # Exact usage: the summarization prompt's tokens, as count_tokens counts that very prompt.
    prompt = summarization_request(
        MessagesRequest.model_validate({**request, "compaction": {"type": "summarize"}})
    )
    assert message.usage.input_tokens == count(server, prompt.model_dump(mode="json", exclude_none=True))
    assert 0 < message.usage.output_tokens <= 40
    assert message.usage.iterations is not None
    assert message.usage.iterations[0].output_tokens == message.usage.output_tokens
    record = _record(server, response.headers["request-id"])
    assert (record.input_tokens, record.output_tokens) == (
        message.usage.input_tokens,
        message.usage.output_tokens,
    )

    # The next request sends the block first: the summary replaces the four turns.
    follow = {
        "model": EMBEDDED_MODEL,
        "max_tokens": 8,
        "messages": [
            {"role": "assistant", "content": [block.to_dict()]},
            {"role": "user", "content": "Which country am I visiting?"},
        ],
    }
    in_place = {
        **follow,
        "messages": [
            {
                "role": "user",
                "content": f"Summary of our conversation so far:\n{summary}\n\nWhich country am I visiting?",
            }
        ],
    }
    assert (
        count(server, follow) == count(server, in_place) < count(server, {**follow, "messages": CONVERSATION})
    )
    answer = client.beta.messages.create(**follow, **GREEDY)  # type: ignore[arg-type]
    assert answer.stop_reason in ("end_turn", "max_tokens")


def test_compaction_streams_through_the_sdk(server: LiveServer) -> None:
    with server.client().beta.messages.stream(
        model=EMBEDDED_MODEL,
        max_tokens=24,
        messages=CONVERSATION,
        compaction={"type": "summarize"},
        **GREEDY,  # type: ignore[arg-type]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds.count("compaction") == 1
    assert final.stop_reason == "compaction" and final.content[0].type == "compaction"
    assert final.content[0].content


def test_a_refusal_falls_back_to_the_embedded_model(server: LiveServer) -> None:
    scripted(server).enqueue(events=refusal(REFUSER, "I cannot"))
    message = server.client().beta.messages.create(
        model=REFUSER,
        max_tokens=8,
        messages=[{"role": "user", "content": "Name a color."}],
        fallbacks="default",
        **GREEDY,  # type: ignore[arg-type]
    )
    assert message.model == EMBEDDED_MODEL
    assert [b.type for b in message.content] == ["text", "fallback", "text"]
    assert message.content[2].text.strip()  # type: ignore[union-attr]
    assert message.usage.iterations is not None
    served = message.usage.iterations[-1]
    assert served.type == "fallback_message" and served.model == EMBEDDED_MODEL  # type: ignore[union-attr]
    assert served.output_tokens == message.usage.output_tokens - 2


def _record(server: LiveServer, request_id: str) -> Any:
    deadline = time.monotonic() + 10
    while True:
        record = server.run(server.services.usage.for_request(request_id))
        if record is not None or time.monotonic() > deadline:
            return record
        time.sleep(0.05)
