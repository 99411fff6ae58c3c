"""The embedded model decodes several requests together (continuous batching in the model runner).

One server with 3 slots and a queue of 1 (``slots``/``queue_size`` options), a small context to keep
its KV cache small. Requests go through the official SDK (streams read in threads) and raw HTTP.
Greedy sampling, short answers: what a request gets must not depend on what else is in the batch.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import EMBEDDED_MODEL, LiveServer, serve, settings_for
from wisegate.backends.local import supervisor
from wisegate.settings import BackendConfig, Settings

LONG = "Write a very long story about a dragon who learns to paint, with many chapters."
TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("batching")
    options = {"slots": 3, "queue_size": 1, "n_ctx": 1024}
    settings = settings_for(
        data_dir,
        backends={"local": BackendConfig(type="local", options=options)},
        models=Settings(data_dir=data_dir).models,
    )
    yield from serve(settings)


class _Run:
    """One request through the SDK with the times its first text and its end arrived."""

    def __init__(self, live: LiveServer, request: dict[str, Any]) -> None:
        self.live, self.request = live, request
        self.first: float | None = None
        self.ended: float | None = None
        self.message: anthropic.types.Message | None = None

    def __call__(self) -> None:
        client = self.live.client()
        with client.messages.stream(model=EMBEDDED_MODEL, **self.request) as stream:
            for event in stream:
                if event.type == "content_block_delta" and self.first is None:
                    self.first = time.monotonic()
            self.message = stream.get_final_message()
        self.ended = time.monotonic()


def _together(live: LiveServer, requests: list[dict[str, Any]]) -> list[_Run]:
    runs = [_Run(live, request) for request in requests]
    threads = [threading.Thread(target=run) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(run.message is not None for run in runs)
    return runs


def _blocks(message: anthropic.types.Message | None) -> list[tuple[str, Any]]:
    """The content without its random parts (tool_use ids)."""
    assert message is not None
    return [
        (block.type, block.text if block.type == "text" else (block.name, block.input))  # type: ignore[union-attr]
        for block in message.content
    ]


def test_concurrent_streams_get_what_they_get_alone_grammar_included(server: LiveServer) -> None:
    requests: list[dict[str, Any]] = [
        {"max_tokens": 16, "messages": [{"role": "user", "content": "Name three colors."}]},
        {"max_tokens": 16, "messages": [{"role": "user", "content": "Describe the sea in one line."}]},
        {
            "max_tokens": 30,
            "tools": [TOOL],
            "tool_choice": {"type": "any"},
            "messages": [{"role": "user", "content": "What is the weather in Lyon for the next 3 days?"}],
        },
    ]
    for request in requests:
        request["extra_body"] = {"temperature": 0}
    alone = [_together(server, [request])[0].message for request in requests]
    together = _together(server, requests)

    # They ran side by side: each had its first token before any of them ended.
    firsts = [run.first for run in together]
    ends = [run.ended for run in together]
    assert all(first is not None for first in firsts)
    assert max(f for f in firsts if f is not None) < min(e for e in ends if e is not None)
    for solo, run in zip(alone, together, strict=True):
        assert solo is not None and run.message is not None
        assert _blocks(run.message) == _blocks(solo) and _blocks(solo)
        assert run.message.stop_reason == solo.stop_reason
        assert (run.message.usage.input_tokens, run.message.usage.output_tokens) == (
            solo.usage.input_tokens,
            solo.usage.output_tokens,
        )
    # The grammar-bound request beside free text: a valid call of the tool, as alone.
    tool_use = together[2].message
    assert tool_use is not None and tool_use.stop_reason == "tool_use"
    call = next(block for block in tool_use.content if block.type == "tool_use")
    assert call.name == "get_weather"
    assert isinstance(call.input, dict) and isinstance(call.input["city"], str)
    assert isinstance(call.input["days"], int)
    # input_tokens are exactly count_tokens' answer, concurrent or not.
    counted = server.client().messages.count_tokens(model=EMBEDDED_MODEL, messages=requests[0]["messages"])
    assert together[0].message is not None
    assert together[0].message.usage.input_tokens == counted.input_tokens


def _open_stream(live: LiveServer, prompt: str, max_tokens: int) -> tuple[httpx.Client, Any, Iterator[str]]:
    client = httpx.Client(timeout=120)
    body = {"model": EMBEDDED_MODEL, "max_tokens": max_tokens, "stream": True, "temperature": 0}
    body["messages"] = [{"role": "user", "content": prompt}]
    context = client.stream(
        "POST", f"{live.base_url}/v1/messages", json=body, headers={"x-api-key": live.key}
    )
    response = context.__enter__()
    assert response.status_code == 200, response.read()
    lines = response.iter_lines()
    for line in lines:  # generating: its first text arrived
        if line.startswith("event: content_block_delta"):
            break
    return client, context, lines


def _status(live: LiveServer) -> dict[str, Any]:
    path = live.services.registry.backends["local"].runner_socket  # type: ignore[attr-defined]
    answer = asyncio.run(supervisor.status(path))
    assert answer is not None
    return answer


def test_slots_and_queue_bound_and_a_cancelled_stream_frees_its_slot(server: LiveServer) -> None:
    # Three long generations fill the three slots.
    long = [_open_stream(server, f"{LONG} ({i})", 600) for i in range(3)]
    try:
        assert len(_status(server)["serving"]) == 3
        # One more waits (queue_size 1); the next is refused with 529 overloaded_error.
        waiting = _Run(server, {"max_tokens": 8, "messages": [{"role": "user", "content": "Say hi."}]})
        waiter = threading.Thread(target=waiting)
        waiter.start()
        deadline = time.monotonic() + 30
        while _status(server)["queued"] < 1:
            assert time.monotonic() < deadline, "the 4th request never queued"
            time.sleep(0.01)
        with pytest.raises(anthropic.APIStatusError) as refused:
            server.client().messages.create(
                model=EMBEDDED_MODEL, max_tokens=8, messages=[{"role": "user", "content": "And me?"}]
            )
        assert refused.value.status_code == 529
        assert refused.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
        assert waiting.first is None  # no slot yet

        # The first long stream hangs up: its slot goes to the waiting request, which is answered
        # while the two other long generations are still going.
        client, context, _ = long.pop(0)
        context.__exit__(None, None, None)
        client.close()
        waiter.join(60)
        assert waiting.message is not None and waiting.message.usage.output_tokens > 0
        assert len(_status(server)["serving"]) == 2  # the other two long ones, still generating
    finally:
        for client, context, _ in long:
            context.__exit__(None, None, None)
            client.close()
    deadline = time.monotonic() + 30
    while (state := _status(server))["serving"] or state["queued"]:
        assert time.monotonic() < deadline, f"the cancelled streams kept their slots: {state}"
        time.sleep(0.05)
