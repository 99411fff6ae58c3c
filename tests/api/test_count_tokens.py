"""POST /v1/messages/count_tokens through the official SDK.

The embedded model counts with its own tokenizer over exactly the prompt generation feeds it, so
``count_tokens`` equals the input side of ``/v1/messages`` usage (input + cache creation + cache read)
for every request below.
"""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import EMBEDDED_MODEL, SCRIPTED_MODEL, LiveServer
from wisegate.backends.local import DEFAULT_SLOTS

WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"],
    },
}
CLOCK = {
    "name": "get_time",
    "description": "Zeit in einer Zeitzone — 時刻",
    "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}},
}
TEXTS = [
    "Hello",
    "What is the capital of France?",
    "Ünïcödé: café, naïve, Ærøskøbing — “quotes” and ‘apostrophes’",
    "日本語のテキストと中文文本，还有한국어.",
    "Emoji 🎉🚀👩‍👩‍👧‍👦 and flags 🇫🇷🇯🇵",
    "Combining: e\u0301 a\u0308 and zero\u200bwidth",
    "Code:\n```python\ndef f(x):\n    return x ** 2\n```",
    "   leading spaces and\ttabs\n\n\nblank lines   ",
    "<|im_start|>user\nfake template markers<|im_end|>",
    "Math: ∑ᵢ xᵢ² ≤ ∞, ∀ε>0 ∃δ",
]


def _tool_turns(i: int) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": TEXTS[i % len(TEXTS)]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": f"toolu_{i}", "name": "get_weather", "input": {"city": "Zürich"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": f"toolu_{i}", "content": f"{i}°C, sunny ☀"},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]


def varied_requests() -> list[dict[str, Any]]:
    """At least 50 requests covering multi-turn, system blocks, tools, tool results, unicode."""
    requests: list[dict[str, Any]] = []
    for text in TEXTS:
        requests.append({"messages": [{"role": "user", "content": text}]})
        requests.append(
            {"system": "Réponds en français. " + text, "messages": [{"role": "user", "content": text}]}
        )
    for i, text in enumerate(TEXTS):
        requests.append(
            {
                "system": [
                    {"type": "text", "text": "First system block."},
                    {"type": "text", "text": text, "cache_control": {"type": "ephemeral"}},
                ],
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello! " + TEXTS[(i + 1) % len(TEXTS)]},
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": text}, {"type": "text", "text": "?"}],
                    },
                ],
            }
        )
        requests.append(
            {
                "tools": [WEATHER, CLOCK][: 1 + i % 2],
                "tool_choice": [{"type": "auto"}, {"type": "none"}][i % 2],
                "messages": _tool_turns(i),
            }
        )
        requests.append(
            {
                "messages": [
                    {"role": "user", "content": text},
                    {"role": "user", "content": "Merged into the same turn."},
                    {"role": "assistant", "content": "The answer is"},
                ],
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            }
        )
    requests.append(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {
                                "type": "text",
                                "media_type": "text/plain",
                                "data": "A plain document.",
                            },
                            "title": "Doc ✓",
                            "context": "for testing",
                        },
                        {"type": "text", "text": "Summarise it."},
                    ],
                }
            ]
        }
    )
    requests.append(
        {
            "thinking": {"type": "adaptive"},
            "messages": [
                {"role": "user", "content": "Think."},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hidden", "signature": "sig"},
                        {"type": "text", "text": "Done."},
                    ],
                },
                {"role": "user", "content": "Again."},
            ],
        }
    )
    return requests


def test_count_equals_usage_on_fifty_varied_requests(embedded_server: LiveServer) -> None:
    client = embedded_server.client()
    requests = varied_requests()
    assert len(requests) >= 50

    def count_and_use(body: dict[str, Any]) -> tuple[int, int]:
        counted = client.messages.count_tokens(model=EMBEDDED_MODEL, **body).input_tokens
        message = client.messages.create(
            model=EMBEDDED_MODEL, max_tokens=1, extra_body={"temperature": 0}, **body
        )
        u = message.usage
        return counted, u.input_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens

    # As many at once as the model runner decodes together (its default slots): each request is still
    # counted and then sent on its own, only not waiting for the one before.
    with ThreadPoolExecutor(max_workers=DEFAULT_SLOTS) as pool:
        for body, (counted, total) in zip(requests, pool.map(count_and_use, requests), strict=True):
            assert total == counted, body
            assert counted > 10


def test_count_tokens_sdk_shape_scripted(scripted_server: LiveServer) -> None:
    client = scripted_server.client(_strict_response_validation=True)
    result = client.messages.count_tokens(
        model=SCRIPTED_MODEL, system="one two", messages=[{"role": "user", "content": "three four five"}]
    )
    assert result.input_tokens == 5
    raw = httpx.post(
        f"{scripted_server.base_url}/v1/messages/count_tokens",
        headers={"x-api-key": scripted_server.key},
        json={"model": SCRIPTED_MODEL, "messages": [{"role": "user", "content": "a b"}]},
    )
    assert raw.status_code == 200 and raw.json() == {"input_tokens": 2}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"max_tokens": 10}, "max_tokens: Extra inputs are not permitted"),
        ({"stream": True}, "stream: Extra inputs are not permitted"),
        ({"temperature": 0.5}, "temperature: Extra inputs are not permitted"),
        ({"messages": []}, "messages: at least one message is required"),
        (
            {"tool_choice": {"type": "any"}},
            "tool_choice: tool_choice.type 'any' may only be specified while providing tools",
        ),
    ],
)
def test_count_tokens_validates_like_the_api(
    scripted_server: LiveServer, extra: dict[str, Any], message: str
) -> None:
    body = {"model": SCRIPTED_MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}
    response = httpx.post(
        f"{scripted_server.base_url}/v1/messages/count_tokens",
        headers={"x-api-key": scripted_server.key},
        json=body,
    )
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error", "message": message}


def test_count_tokens_errors(scripted_server: LiveServer) -> None:
    client = scripted_server.client()
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.AuthenticationError):
        scripted_server.client(api_key="sk-wg-api01-nope").messages.count_tokens(
            model=SCRIPTED_MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    big = "x" * (65 * 1024)
    response = httpx.post(
        f"{scripted_server.base_url}/v1/messages/count_tokens",
        headers={"x-api-key": scripted_server.key},
        json={"model": SCRIPTED_MODEL, "messages": [{"role": "user", "content": big}]},
    )
    assert response.status_code == 413 and response.json()["error"]["type"] == "request_too_large"


def test_counting_never_waits_for_the_generation_thread(embedded_server: LiveServer) -> None:
    """With the model runner (where generation happens) stopped, counting still answers."""
    backend = embedded_server.backend
    state = embedded_server.run(backend.runner_status())
    assert state is not None and state["state"] == "up"
    os.kill(state["pid"], signal.SIGSTOP)
    try:
        counted = embedded_server.client(timeout=30).messages.count_tokens(
            model=EMBEDDED_MODEL, messages=[{"role": "user", "content": "Hello " * 2000}]
        )
        assert counted.input_tokens > 2000
    finally:
        os.kill(state["pid"], signal.SIGCONT)


def test_counting_is_not_billed(scripted_server: LiveServer) -> None:
    response = httpx.post(
        f"{scripted_server.base_url}/v1/messages/count_tokens",
        headers={"x-api-key": scripted_server.key},
        json={"model": SCRIPTED_MODEL, "messages": [{"role": "user", "content": "a b c"}]},
    )
    assert response.status_code == 200
    request_id = response.headers["request-id"]
    assert scripted_server.run(scripted_server.services.usage.for_request(request_id)) is None
