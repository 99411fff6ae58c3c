"""POST /v1/messages on the real embedded model, through the official SDK and raw HTTP."""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import EMBEDDED_MODEL, LiveServer

GREEDY = {"temperature": 0}
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer"},
        },
        "required": ["city", "unit", "days"],
    },
}
TIME = {
    "name": "get_time",
    "description": "Get the local time in a timezone",
    "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
}


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs, checking the framing: one ``event:`` and one ``data:`` line each."""
    events = []
    for block in response.text.split("\n\n"):
        if not block:
            continue
        lines = block.split("\n")
        assert len(lines) == 2, block
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        data = json.loads(lines[1][len("data: ") :])
        assert data["type"] == lines[0][len("event: ") :]
        events.append((data["type"], data))
    return events


def test_create_returns_a_message(embedded_server: LiveServer) -> None:
    message = embedded_server.client().messages.create(
        model=EMBEDDED_MODEL, max_tokens=64, messages=[{"role": "user", "content": "Hello"}]
    )
    assert message.id.startswith("msg_")
    assert message.role == "assistant" and message.type == "message"
    assert message.model == EMBEDDED_MODEL
    assert message.content and message.content[0].type == "text" and message.content[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    usage = message.usage
    assert usage.input_tokens > 10 and 0 < usage.output_tokens <= 64
    assert usage.cache_creation_input_tokens == 0 and usage.cache_read_input_tokens == 0


def test_stream_helper_matches_final_message(embedded_server: LiveServer) -> None:
    client = embedded_server.client()
    with client.messages.stream(
        model=EMBEDDED_MODEL, max_tokens=48, messages=[{"role": "user", "content": "Name three colours."}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 3
    assert "".join(pieces) == final.content[0].text
    assert final.usage.output_tokens > 0 and final.stop_reason in ("end_turn", "max_tokens")


def test_raw_sse_sequence(embedded_server: LiveServer) -> None:
    response = httpx.post(
        f"{embedded_server.base_url}/v1/messages",
        headers={"x-api-key": embedded_server.key, "anthropic-version": "2023-06-01"},
        json={
            "model": EMBEDDED_MODEL,
            "max_tokens": 12,
            "stream": True,
            "messages": [{"role": "user", "content": "Tell me a story."}],
            **GREEDY,
        },
        timeout=60,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    names = [name for name, _ in sse_events(response)]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    events = dict((name, data) for name, data in sse_events(response))
    assert events["message_start"]["message"]["content"] == []
    assert events["message_start"]["message"]["stop_reason"] is None
    assert events["message_delta"]["delta"]["stop_reason"] == "max_tokens"
    assert events["message_delta"]["usage"]["output_tokens"] == 12


def test_greedy_sampling_is_deterministic_and_max_tokens_counts(embedded_server: LiveServer) -> None:
    client = embedded_server.client()
    kwargs: dict[str, Any] = dict(
        model=EMBEDDED_MODEL,
        max_tokens=20,
        extra_body=GREEDY,
        messages=[{"role": "user", "content": "Write a poem about the sea."}],
    )
    first, second = client.messages.create(**kwargs), client.messages.create(**kwargs)
    assert first.content[0].text == second.content[0].text
    assert first.stop_reason == "max_tokens" and first.usage.output_tokens == 20


def test_stop_sequence(embedded_server: LiveServer) -> None:
    message = embedded_server.client().messages.create(
        model=EMBEDDED_MODEL,
        max_tokens=100,
        stop_sequences=["5"],
        extra_body=GREEDY,
        messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
    )
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "5"
    assert "5" not in message.content[0].text and "4" in message.content[0].text


def test_prefill_continues_the_assistant_turn(embedded_server: LiveServer) -> None:
    message = embedded_server.client().messages.create(
        model=EMBEDDED_MODEL,
        max_tokens=10,
        extra_body=GREEDY,
        messages=[
            {"role": "user", "content": "List the numbers from 1 to 5."},
            {"role": "assistant", "content": "1, 2, 3,"},
        ],
    )
    assert message.content[0].text.lstrip().startswith("4")


def _check_weather_input(value: dict[str, Any]) -> None:
    assert set(value) == {"city", "unit", "days"}
    assert isinstance(value["city"], str)
    assert value["unit"] in ("celsius", "fahrenheit")
    assert isinstance(value["days"], int)


def test_tool_use_round_trip(embedded_server: LiveServer) -> None:
    client = embedded_server.client()
    question = {"role": "user", "content": "What is the weather in Paris for the next 3 days?"}
    first = client.messages.create(
        model=EMBEDDED_MODEL,
        max_tokens=200,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[question],
    )
    assert first.stop_reason == "tool_use"
    call = first.content[-1]
    assert call.type == "tool_use" and call.name == "get_weather" and call.id.startswith("toolu_")
    _check_weather_input(call.input)
    answer = client.messages.create(
        model=EMBEDDED_MODEL,
        max_tokens=60,
        tools=[WEATHER],
        tool_choice={"type": "none"},
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 degrees celsius."}
                ],
            },
        ],
    )
    assert answer.content[0].type == "text" and answer.content[0].text.strip()
    assert answer.stop_reason in ("end_turn", "max_tokens")
    # The prompt's scaffolding never shows in an answer.
    for scaffold in ("<tool_response>", "</tool_response>", "To call a tool", "<tool_call>"):
        assert scaffold not in answer.content[0].text


def test_tool_choice_any_streams_input_json(embedded_server: LiveServer) -> None:
    client = embedded_server.client()
    with client.messages.stream(
        model=EMBEDDED_MODEL,
        max_tokens=400,
        tools=[WEATHER, TIME],
        tool_choice={"type": "any"},
        extra_body=GREEDY,
        messages=[{"role": "user", "content": "What time is it in Tokyo?"}],
    ) as stream:
        deltas = [
            e.delta.partial_json
            for e in stream
            if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
        ]
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"  # not cut off by max_tokens: the JSON is complete
    call = final.content[-1]
    assert call.type == "tool_use" and call.name in ("get_weather", "get_time")
    assert json.loads("".join(deltas)) == call.input
    assert "".join(deltas).endswith("}")  # no trailing whitespace delta after the JSON
    if call.name == "get_time":
        assert isinstance(call.input["tz"], str)
    else:
        _check_weather_input(call.input)


def test_image_input_is_refused_naming_the_model(embedded_server: LiveServer) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        embedded_server.client().messages.create(
            model=EMBEDDED_MODEL,
            max_tokens=10,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                        },
                        {"type": "text", "text": "What is this?"},
                    ],
                }
            ],
        )
    assert "does not support image input" in info.value.message and EMBEDDED_MODEL in info.value.message


def test_prompt_too_long(embedded_server: LiveServer) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        embedded_server.client().messages.create(
            model=EMBEDDED_MODEL, max_tokens=10, messages=[{"role": "user", "content": "word " * 9000}]
        )
    assert "prompt is too long" in info.value.message and "8191 maximum" in info.value.message


def test_max_tokens_above_the_model_limit(embedded_server: LiveServer) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        embedded_server.client().messages.create(
            model=EMBEDDED_MODEL, max_tokens=3000, messages=[{"role": "user", "content": "Hi"}]
        )
    # The embedded model's output limit is well below its context (8192): a clamped request ends
    # with max_tokens, not model_context_window_exceeded.
    assert info.value.body["error"]["message"] == (
        "max_tokens: 3000 > 2048, which is the maximum allowed number of output tokens for " + EMBEDDED_MODEL
    )


def test_disconnect_stops_generation_and_records_usage(embedded_server: LiveServer) -> None:
    with httpx.stream(
        "POST",
        f"{embedded_server.base_url}/v1/messages",
        headers={"x-api-key": embedded_server.key},
        json={
            "model": EMBEDDED_MODEL,
            "max_tokens": 2000,
            "stream": True,
            "messages": [{"role": "user", "content": "Write a very long essay about rivers."}],
        },
        timeout=60,
    ) as response:
        request_id = response.headers["request-id"]
        seen = 0
        for line in response.iter_lines():
            if line.startswith("event: content_block_delta"):
                seen += 1
                if seen == 5:
                    break
    deadline = time.monotonic() + 20
    record = None
    while record is None and time.monotonic() < deadline:
        record = embedded_server.run(embedded_server.services.usage.for_request(request_id))
        time.sleep(0.1)
    assert record is not None
    assert record.error_type == "client_disconnected" and record.streamed
    assert 5 <= record.output_tokens < 400
    quick = embedded_server.client().messages.create(  # the generation thread is free again
        model=EMBEDDED_MODEL, max_tokens=5, messages=[{"role": "user", "content": "Hi"}]
    )
    assert quick.usage.output_tokens <= 5


def test_usage_record_matches_the_response(embedded_server: LiveServer) -> None:
    raw = embedded_server.client().messages.with_raw_response.create(
        model=EMBEDDED_MODEL, max_tokens=16, messages=[{"role": "user", "content": "Hi there"}]
    )
    message = raw.parse()
    record = embedded_server.run(embedded_server.services.usage.for_request(raw.headers["request-id"]))
    assert record is not None and not record.streamed
    assert (record.input_tokens, record.output_tokens) == (
        message.usage.input_tokens,
        message.usage.output_tokens,
    )
    assert record.stop_reason == message.stop_reason and record.model == EMBEDDED_MODEL


def test_non_streaming_disconnect_stops_generation(embedded_server: LiveServer) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{embedded_server.base_url}/v1/messages",
            headers={"x-api-key": embedded_server.key},
            json={
                "model": EMBEDDED_MODEL,
                "max_tokens": 2000,
                "messages": [{"role": "user", "content": "Write a very long essay about mountains."}],
            },
            timeout=httpx.Timeout(30, read=1.0),
        )
    deadline = time.monotonic() + 20
    records: list[Any] = []
    while not records and time.monotonic() < deadline:
        recent = embedded_server.run(embedded_server.services.usage.recent(limit=5))
        records = [r for r in recent if r.error_type == "client_disconnected" and not r.streamed]
        time.sleep(0.1)
    assert records, "no usage record for the abandoned request"
    assert records[0].input_tokens > 0
    assert records[0].output_tokens < 1000  # max_tokens was 2000: generation stopped with the client


def test_a_prompt_is_tokenized_once(embedded_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Admission counts the prompt exactly and generation feeds the same text: one tokenization."""
    vocab = embedded_server.backend._vocab
    real = vocab.tokenize
    seen: list[str] = []

    def counting(text: str) -> list[int]:
        seen.append(text)
        return real(text)

    monkeypatch.setattr(vocab, "tokenize", counting)
    question = f"Say the number {time.time_ns()}."  # a prompt no earlier test tokenized
    message = embedded_server.client().messages.create(
        model=EMBEDDED_MODEL, max_tokens=3, messages=[{"role": "user", "content": question}]
    )
    prompts = [t for t in seen if question in t]
    assert len(prompts) == 1, len(prompts)
    assert message.usage.input_tokens == len(real(prompts[0]))
