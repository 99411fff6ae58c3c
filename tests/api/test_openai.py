"""OpenAI-format clients: the official ``openai`` SDK against ``/v1/chat/completions`` and the models list.

Protocol behaviour runs on the scripted backend (it echoes the last user text, one token per word);
tool calls and image refusal run on the embedded model.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conftest import EMBEDDED_MODEL, SCRIPTED_MODEL, LiveServer
from wisegate.protocol.events import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    InputJsonDelta,
    MessageDelta,
    MessageDeltaBody,
    MessageDeltaUsage,
    MessageStart,
    MessageStop,
)
from wisegate.protocol.messages import Message, ToolUseBlock, Usage

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def client(server: LiveServer, prefix: str = "/v1", **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + prefix, api_key=server.key, max_retries=0, **kwargs)  # type: ignore[arg-type]


def test_create_returns_a_chat_completion(scripted_server: LiveServer) -> None:
    completion = client(scripted_server).chat.completions.create(
        model=SCRIPTED_MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Really brief."},
            {"role": "user", "content": "one two three"},
        ],
    )
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == SCRIPTED_MODEL
    choice = completion.choices[0]
    assert len(completion.choices) == 1 and choice.index == 0
    assert choice.message.role == "assistant" and choice.message.content == "one two three"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    # Scripted tokens are words: system "Be brief." + "Really brief." (4) + "one two three" (3).
    assert completion.usage.prompt_tokens == 7
    assert completion.usage.completion_tokens == 3 and completion.usage.total_tokens == 10
    call = scripted_server.backend.calls[-1]
    assert [b.text for b in call.system_text()] == ["Be brief.\nReally brief."]


def test_the_ledger_records_chat_completions(scripted_server: LiveServer) -> None:
    raw = client(scripted_server).chat.completions.with_raw_response.create(
        model=SCRIPTED_MODEL, messages=[{"role": "user", "content": "count these four words"}]
    )
    request_id = raw.headers["request-id"]
    record = scripted_server.run(scripted_server.services.usage.for_request(request_id))
    assert record is not None and record.model == SCRIPTED_MODEL
    assert (record.input_tokens, record.output_tokens, record.stop_reason) == (4, 4, "end_turn")


def test_max_tokens_and_temperature_map_onto_messages(scripted_server: LiveServer) -> None:
    completion = client(scripted_server).chat.completions.create(
        model=SCRIPTED_MODEL,
        messages=[{"role": "user", "content": "a b c d e"}],
        max_completion_tokens=2,
        temperature=1.7,
        seed=7,
        presence_penalty=0.5,
    )
    assert completion.choices[0].message.content == "a b"
    assert completion.choices[0].finish_reason == "length"
    call = scripted_server.backend.calls[-1]
    assert call.max_tokens == 2 and call.temperature == 1.0  # capped at 1, as Anthropic's layer does
    completion = client(scripted_server).chat.completions.create(
        model=SCRIPTED_MODEL, messages=[{"role": "user", "content": "x"}]
    )
    assert scripted_server.backend.calls[-1].max_tokens == 4096  # the model's output limit


def test_stream_chunks_and_usage(scripted_server: LiveServer) -> None:
    stream = client(scripted_server).chat.completions.create(
        model=SCRIPTED_MODEL,
        messages=[{"role": "user", "content": "alpha beta gamma"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "alpha beta gamma"
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 3)


def test_raw_stream_ends_with_done(scripted_server: LiveServer) -> None:
    response = httpx.post(
        f"{scripted_server.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {scripted_server.key}"},
        json={"model": SCRIPTED_MODEL, "stream": True, "messages": [{"role": "user", "content": "hi there"}]},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in response.text.split("\n\n") if b]
    assert all(b.startswith("data: ") for b in blocks)
    assert blocks[-1] == "data: [DONE]"
    last = json.loads(blocks[-2][len("data: ") :])
    assert last["choices"][0]["finish_reason"] == "stop" and last["usage"] is None


def test_stop_sequences(scripted_server: LiveServer) -> None:
    client(scripted_server).chat.completions.create(
        model=SCRIPTED_MODEL, messages=[{"role": "user", "content": "x"}], stop=["END", " "]
    )
    assert scripted_server.backend.calls[-1].stop_sequences == ["END"]  # whitespace-only ones dropped
    client(scripted_server).chat.completions.create(
        model=SCRIPTED_MODEL, messages=[{"role": "user", "content": "x"}], stop="STOP"
    )
    assert scripted_server.backend.calls[-1].stop_sequences == ["STOP"]


def _tool_events(arguments: str) -> list[object]:
    return [
        MessageStart(message=Message(id="msg_01toolcall", model=SCRIPTED_MODEL, usage=Usage(input_tokens=5))),
        ContentBlockStart(
            index=0, content_block=ToolUseBlock(id="toolu_01abc", name="get_weather", input={})
        ),
        ContentBlockDelta(index=0, delta=InputJsonDelta(partial_json=arguments[:10])),
        ContentBlockDelta(index=0, delta=InputJsonDelta(partial_json=arguments[10:])),
        ContentBlockStop(index=0),
        MessageDelta(
            delta=MessageDeltaBody(stop_reason="tool_use"),
            usage=MessageDeltaUsage(output_tokens=9, input_tokens=5),
        ),
        MessageStop(),
    ]


def test_tool_calls_streamed_and_sent_back(scripted_server: LiveServer) -> None:
    arguments = json.dumps({"city": "Paris", "unit": "c"})
    scripted_server.backend.enqueue(events=_tool_events(arguments))
    stream = client(scripted_server).chat.completions.create(
        model=SCRIPTED_MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        stream=True,
    )
    chunks = list(stream)
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].id == "toolu_01abc" and calls[0].function and calls[0].function.name == "get_weather"
    assert "".join(tc.function.arguments or "" for tc in calls if tc.function) == arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    sent = scripted_server.backend.calls[-1]
    assert sent.tool_choice is not None and sent.tool_choice.type == "any"
    assert sent.tool_choice.disable_parallel_tool_use is True
    assert sent.tools and sent.tools[0].name == "get_weather"

    client(scripted_server).chat.completions.create(
        model=SCRIPTED_MODEL,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_01abc",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_01abc", "content": "18 and sunny"},
        ],
    )
    turns = scripted_server.backend.calls[-1].messages
    assert [t.role for t in turns] == ["user", "assistant", "user"]
    tool_use = turns[1].blocks()[0]
    assert tool_use.type == "tool_use" and tool_use.input == {"city": "Paris", "unit": "c"}
    result = turns[2].blocks()[0]
    assert result.type == "tool_result" and result.tool_use_id == "toolu_01abc"


def test_tool_calls_on_the_embedded_model(embedded_server: LiveServer) -> None:
    completion = client(embedded_server).chat.completions.create(
        model=EMBEDDED_MODEL,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=64,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments["city"], str) and arguments["unit"] in ("c", "f")
    answer = client(embedded_server).chat.completions.create(
        model=EMBEDDED_MODEL,
        max_tokens=16,
        messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
        ],
    )
    assert answer.choices[0].message.content


def test_images_are_refused_as_the_embedded_model_refuses_them(embedded_server: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(embedded_server).chat.completions.create(
            model=EMBEDDED_MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                    ],
                }
            ],
        )
    assert caught.value.status_code == 400
    assert "does not support image input" in caught.value.message
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "invalid_request_error"


def test_images_reach_a_backend_that_takes_them(scripted_server: LiveServer) -> None:
    client(scripted_server).chat.completions.create(
        model=SCRIPTED_MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            }
        ],
    )
    blocks = scripted_server.backend.calls[-1].messages[0].blocks()
    assert [b.type for b in blocks] == ["text", "image", "image"]
    assert blocks[1].source.type == "base64" and blocks[1].source.media_type == "image/png"
    assert blocks[2].source.type == "url"


def test_errors_in_openais_shape(scripted_server: LiveServer) -> None:
    with pytest.raises(openai.AuthenticationError) as auth:
        openai.OpenAI(
            base_url=scripted_server.base_url + "/v1", api_key="sk-wg-api01-wrong", max_retries=0
        ).chat.completions.create(model=SCRIPTED_MODEL, messages=[{"role": "user", "content": "x"}])
    assert auth.value.status_code == 401 and auth.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as missing:
        client(scripted_server).chat.completions.create(
            model="gpt-nonexistent", messages=[{"role": "user", "content": "x"}]
        )
    assert missing.value.code == "model_not_found" and "gpt-nonexistent" in missing.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        client(scripted_server).chat.completions.create(
            model=SCRIPTED_MODEL, messages=[{"role": "user", "content": "x"}], n=2
        )
    assert "n" in bad.value.message
    response = httpx.post(
        f"{scripted_server.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {scripted_server.key}"},
        json={"model": SCRIPTED_MODEL, "messages": "not a list"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert "messages" in error["message"]
    unknown = httpx.get(
        f"{scripted_server.base_url}/openai/v1/nothing",
        headers={"authorization": f"Bearer {scripted_server.key}"},
    )
    assert unknown.status_code == 404 and "error" in unknown.json() and "type" in unknown.json()["error"]


def test_a_refused_model_is_recorded_also_without_max_tokens(scripted_server: LiveServer) -> None:
    """Without max_tokens the model's output limit is the default: the model is resolved for that, and
    that one resolution refuses (and records) a model the key cannot use, as with max_tokens."""
    for extra in ({}, {"max_tokens": 5}):
        response = httpx.post(
            f"{scripted_server.base_url}/v1/chat/completions",
            headers={"authorization": f"Bearer {scripted_server.key}"},
            json={"model": "gpt-nonexistent", "messages": [{"role": "user", "content": "x"}], **extra},
        )
        assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
        record = scripted_server.run(
            scripted_server.services.usage.for_request(response.headers["request-id"])
        )
        assert record is not None, extra
        assert (record.model, record.error_type, record.output_tokens) == (
            "gpt-nonexistent",
            "not_found_error",
            0,
        )


def test_models_in_openais_shape(scripted_server: LiveServer) -> None:
    for prefix in ("/v1", "/openai/v1"):
        models = list(client(scripted_server, prefix).models.list())
        assert [m.id for m in models] == [SCRIPTED_MODEL]
        assert models[0].object == "model" and models[0].owned_by == "wisegate" and models[0].created > 0
        model = client(scripted_server, prefix).models.retrieve("scripted-latest")
        assert model.id == SCRIPTED_MODEL
    completion = client(scripted_server, "/openai/v1").chat.completions.create(
        model=SCRIPTED_MODEL, messages=[{"role": "user", "content": "via prefix"}]
    )
    assert completion.choices[0].message.content == "via prefix"
    # The anthropic SDK (anthropic-version header) still gets Anthropic's shape on /v1/models.
    page = scripted_server.client().models.list()
    assert page.data[0].type == "model" and page.data[0].display_name
