"""Messages ⇄ Chat Completions: the official SDK through Wisegate against a fake OpenAI-compatible server
that streams real ``chat.completion.chunk`` frames (text, parallel tool calls, usage, stop strings).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.backends.fakes import Answer, FakeUpstream, run_fake, transcript
from tests.conftest import LiveServer, serve, settings_for
from wisegate.settings import BackendConfig, ModelConfig, RoutingConfig

MODEL = "qwen-local"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    yield from run_fake(FakeUpstream())


@pytest.fixture(scope="module")
def server(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    options = {"base_url": fake.base_url + "/v1", "api_key": "vllm-token", "send_top_k": True}
    settings = settings_for(
        tmp_path_factory.mktemp("openai"),
        backends={"vllm": BackendConfig(type="openai", options=options)},
        models=[
            ModelConfig(
                id=MODEL,
                backend="vllm",
                upstream_model="qwen2.5-7b-instruct",
                routing=RoutingConfig(retries=0),
            )
        ],
    )
    yield from serve(settings)


@pytest.fixture(autouse=True)
def _reset(fake: FakeUpstream) -> None:
    fake.reset()


def stream_answer(fake: FakeUpstream, name: str) -> None:
    fake.sse(transcript(name), pieces=11)


def test_request_translation(server: LiveServer, fake: FakeUpstream) -> None:
    stream_answer(fake, "openai_stop.sse")
    server.client().messages.create(
        model=MODEL,
        max_tokens=100,
        system="Be terse.",
        extra_body={"temperature": 0.5, "top_p": 0.9, "top_k": 40},
        stop_sequences=["four"],
        metadata={"user_id": "u-1"},
        tools=[
            {
                "name": "get_weather",
                "description": "Weather by city",
                "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
            }
        ],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"location": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
                    {"type": "text", "text": "And now?"},
                ],
            },
        ],
    )
    (seen,) = fake.seen
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == "Bearer vllm-token"
    sent = json.loads(seen.body)
    assert sent["model"] == "qwen2.5-7b-instruct" and sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"], sent["top_k"]) == (100, 0.5, 0.9, 40)
    assert sent["stop"] == ["four"] and sent["user"] == "u-1"
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather by city",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
            },
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False
    assert sent["messages"] == [
        {"role": "system", "content": "Be terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
        {"role": "user", "content": "And now?"},
    ]


@pytest.mark.parametrize("choice", [{"type": "auto"}, {"type": "any"}, {"type": "none"}])
def test_tool_choice_words(server: LiveServer, fake: FakeUpstream, choice: dict[str, Any]) -> None:
    stream_answer(fake, "openai_stop.sse")
    server.client().messages.create(
        model=MODEL,
        max_tokens=10,
        tools=[{"name": "t", "input_schema": {"type": "object"}}],
        tool_choice=choice,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "x"}],
    )
    expected = {"auto": "auto", "any": "required", "none": "none"}[choice["type"]]
    assert json.loads(fake.seen[0].body)["tool_choice"] == expected


def test_streamed_tool_calls_become_tool_use_blocks(server: LiveServer, fake: FakeUpstream) -> None:
    stream_answer(fake, "openai_tool_calls.sse")
    with server.client().messages.stream(
        model=MODEL,
        max_tokens=100,
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        messages=[{"role": "user", "content": "Paris and Oslo?"}],
    ) as stream:
        kinds = [(e.type, getattr(getattr(e, "delta", None), "type", None)) for e in stream]
        message = stream.get_final_message()
    assert ("content_block_delta", "input_json_delta") in kinds
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[0].text == "Let me check both cities."  # type: ignore[union-attr]
    assert message.content[1].id == "call_abc123"  # type: ignore[union-attr]
    assert message.content[1].input == {"location": "Paris"}  # type: ignore[union-attr]
    assert message.content[2].input == {"location": "Oslo"}  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (118, 64)
    assert message.usage.output_tokens == 48


def test_non_streaming_stop_sequence_and_usage_record(server: LiveServer, fake: FakeUpstream) -> None:
    stream_answer(fake, "openai_stop.sse")
    raw = server.client().messages.with_raw_response.create(
        model=MODEL, max_tokens=10, stop_sequences=["four"], messages=[{"role": "user", "content": "count"}]
    )
    message = raw.parse()
    assert message.content[0].text == "One, two, three"  # type: ignore[union-attr]
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "four"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 5)
    record = server.run(server.services.usage.for_request(raw.headers["request-id"]))
    assert (record.input_tokens, record.output_tokens, record.stop_reason) == (12, 5, "stop_sequence")


def test_length_and_errors(server: LiveServer, fake: FakeUpstream) -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "abc"}, "finish_reason": "length"}]}
    fake.answer(Answer(content_type="text/event-stream", chunks=[f"data: {json.dumps(chunk)}\n\n".encode()]))
    message = server.client().messages.create(
        model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "x"}]
    )
    assert message.stop_reason == "max_tokens"

    fake.answer(
        status=429, body=b'{"error":{"message":"too many","type":"rate_limit"}}', headers={"retry-after": "7"}
    )
    with pytest.raises(anthropic.RateLimitError) as limited:
        server.client().messages.create(
            model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "x"}]
        )
    assert limited.value.response.headers["retry-after"] == "7"
    assert "too many" in str(limited.value)

    fake.answer(
        status=400, body=b'{"object":"error","message":"This model\'s maximum context length is 4096"}'
    )
    with pytest.raises(anthropic.BadRequestError, match="maximum context length"):
        server.client().messages.create(
            model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "x"}]
        )


def test_structured_outputs_become_response_format_and_strict_tools(
    server: LiveServer, fake: FakeUpstream
) -> None:
    stream_answer(fake, "openai_stop.sse")
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    server.client().messages.create(
        model=MODEL,
        max_tokens=10,
        tools=[{"name": "t", "strict": True, "input_schema": schema}],
        output_config={"format": {"type": "json_schema", "schema": schema}},
        messages=[{"role": "user", "content": "x"}],
    )
    sent = json.loads(fake.seen[0].body)
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }
    assert sent["tools"][0]["function"]["strict"] is True


def test_an_upstream_without_structured_outputs_refuses_them_naming_the_model(
    fake: FakeUpstream, tmp_path: Any
) -> None:
    options = {"base_url": fake.base_url + "/v1", "api_key": "k", "structured_outputs": False}
    settings = settings_for(
        tmp_path,
        backends={"plain": BackendConfig(type="openai", options=options)},
        models=[ModelConfig(id="plain-model", backend="plain")],
    )
    for live in serve(settings):
        with pytest.raises(anthropic.BadRequestError) as caught:
            live.client().messages.create(
                model="plain-model",
                max_tokens=10,
                output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}},
                messages=[{"role": "user", "content": "x"}],
            )
        assert caught.value.body["error"]["message"] == (  # type: ignore[index]
            "output_config.format: model 'plain-model' does not support structured outputs"
        )
        assert fake.seen == []


def _chunks(*deltas: dict[str, Any], finish: str) -> bytes:
    frames = [{"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    frames.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    frames.append({"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 4}})
    body = "".join(
        f"data: {json.dumps({'id': 'c1', 'object': 'chat.completion.chunk', **f})}\n\n" for f in frames
    )
    return (body + "data: [DONE]\n\n").encode()


def test_wisegate_runs_the_code_execution_tool_for_an_openai_upstream(
    server: LiveServer, fake: FakeUpstream
) -> None:
    import shutil

    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is not installed: scripts/test installs it")
    call = {"index": 0, "id": "call_1", "type": "function"}
    call["function"] = {"name": "bash_code_execution", "arguments": json.dumps({"command": "echo $((40+2))"})}
    fake.sse(_chunks({"role": "assistant", "tool_calls": [call]}, finish="tool_calls"))
    fake.sse(_chunks({"content": "It is 42."}, finish="stop"))
    message = server.client().beta.messages.create(
        model=MODEL,
        max_tokens=100,
        tools=[{"type": "code_execution_20250825", "name": "code_execution"}],
        messages=[{"role": "user", "content": "What is 40+2? Use bash."}],
        betas=["code-execution-2025-08-25"],
    )
    assert [b.type for b in message.content] == ["server_tool_use", "bash_code_execution_tool_result", "text"]
    assert message.content[1].content.stdout == "42\n"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn" and message.container is not None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (60, 8)  # both rounds
    first, second = (json.loads(seen.body) for seen in fake.seen)
    assert {t["function"]["name"] for t in first["tools"]} == {
        "bash_code_execution",
        "text_editor_code_execution",
    }
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool" and "42" in json.dumps(tool_message)
