"""The Anthropic upstream backend, driven by the official SDK through Wisegate against a fake upstream
that answers with golden Anthropic wire transcripts. Azure AI Foundry is the same backend configured
with its base URL and ``api-key`` header.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.api.files_support import bundle
from tests.backends.fakes import Answer, FakeUpstream, run_fake, transcript
from tests.conftest import LiveServer, serve, settings_for
from wisegate.settings import BackendConfig, DeploymentConfig, ModelConfig, RoutingConfig

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
UPSTREAM_KEY = "sk-ant-operator-secret-0001"
MODEL = "claude-sonnet-4-5"
CLAMPED, LIMITED = "claude-opus-4-1", "claude-opus-4-0"
UPSTREAM_MODEL = "claude-sonnet-4-5-20250929"

MESSAGE_JSON = (
    b'{"id":"msg_01Aq9w938a90dw8q","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",'
    b'"content":[{"type":"thinking","thinking":"Let me think.","signature":"EqQBCgIYAhIMsig=="},'
    b'{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix"},'
    b'{"type":"server_tool_use","id":"srvtoolu_01","name":"web_search","input":{"query":"x"}},'
    b'{"type":"web_search_tool_result","tool_use_id":"srvtoolu_01","content":[]},'
    b'{"type":"text","text":"Hi there","citations":[{"type":"char_location","cited_text":"Hi",'
    b'"document_index":0,"document_title":null,"start_char_index":0,"end_char_index":2}]}],'
    b'"stop_reason":"end_turn","stop_sequence":null,"a_future_field":{"x":[1,2,3]},'
    b'"usage":{"input_tokens":21,"cache_creation_input_tokens":7,"cache_read_input_tokens":100,'
    b'"cache_creation":{"ephemeral_5m_input_tokens":7,"ephemeral_1h_input_tokens":0},'
    b'"output_tokens":9,"service_tier":"standard"}}'
)


def upstream_settings(data_dir: Path, base_url: str, **backend: Any) -> Any:
    options = {"base_url": base_url, "api_key": UPSTREAM_KEY, **backend}
    fast = RoutingConfig(retries=1, backoff_seconds=0.01, breaker_failures=50)
    return settings_for(
        data_dir,
        backends={"up": BackendConfig(type="anthropic", options=options)},
        models=[
            ModelConfig(id=MODEL, backend="up", upstream_model=UPSTREAM_MODEL, routing=fast),
            ModelConfig(id="claude-haiku-4-5", backend="up", routing=fast),
            # Output limits: asking more is clamped to the limit, or refused.
            ModelConfig(id=CLAMPED, backend="up", routing=fast, max_output_tokens=64, clamp_max_tokens=True),
            ModelConfig(id=LIMITED, backend="up", routing=fast, max_output_tokens=64),
        ],
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    yield from run_fake(FakeUpstream())


@pytest.fixture(scope="module")
def server(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from serve(upstream_settings(tmp_path_factory.mktemp("anthropic"), fake.base_url))


@pytest.fixture(autouse=True)
def _reset(fake: FakeUpstream) -> None:
    fake.reset()


def usage_of(server: LiveServer, request_id: str) -> Any:
    return server.run(server.services.usage.for_request(request_id))


def test_non_streaming_is_relayed_byte_for_byte(server: LiveServer, fake: FakeUpstream) -> None:
    fake.answer(body=MESSAGE_JSON)
    raw = server.client().messages.with_raw_response.create(
        model=MODEL, max_tokens=2048, messages=[{"role": "user", "content": "Hi"}]
    )
    assert raw.http_response.content == MESSAGE_JSON
    message = raw.parse()
    assert [b.type for b in message.content] == [
        "thinking",
        "redacted_thinking",
        "server_tool_use",
        "web_search_tool_result",
        "text",
    ]
    assert message.content[0].signature == "EqQBCgIYAhIMsig=="  # type: ignore[union-attr]
    record = usage_of(server, raw.headers["request-id"])
    assert (record.input_tokens, record.output_tokens) == (21, 9)
    assert (record.cache_creation_input_tokens, record.cache_read_input_tokens) == (7, 100)
    assert record.stop_reason == "end_turn" and record.model == MODEL and not record.streamed


def test_request_bytes_go_up_with_model_mapped_key_and_betas(server: LiveServer, fake: FakeUpstream) -> None:
    fake.answer(body=MESSAGE_JSON)
    body = {
        "model": MODEL,
        "max_tokens": 64,
        "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hi", "some_new_block_field": {"kept": True}}],
            }
        ],
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
    }
    response = httpx.post(
        server.base_url + "/v1/messages",
        json=body,
        headers={
            "x-api-key": server.key,
            "anthropic-beta": "context-management-2025-06-27,interleaved-thinking-2025-05-14",
            "anthropic-version": "2023-06-01",
        },
    )
    assert response.status_code == 200, response.text
    (seen,) = fake.seen
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == UPSTREAM_KEY
    assert server.key not in json.dumps(seen.headers)
    assert seen.headers["anthropic-beta"] == "context-management-2025-06-27,interleaved-thinking-2025-05-14"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    sent = json.loads(seen.body)
    assert sent == {**body, "model": UPSTREAM_MODEL}


def test_same_model_id_forwards_the_original_bytes(server: LiveServer, fake: FakeUpstream) -> None:
    fake.answer(body=MESSAGE_JSON)
    raw = b'{"max_tokens": 5,  "model": "claude-haiku-4-5", "messages":[{"role":"user","content":"x"}]}'
    response = httpx.post(
        server.base_url + "/v1/messages",
        content=raw,
        headers={"x-api-key": server.key, "content-type": "application/json"},
    )
    assert response.status_code == 200
    assert fake.seen[0].body == raw
    fake.answer(body=b'{"input_tokens": 3}')
    counted = raw.replace(b'"max_tokens": 5,  ', b"")
    response = httpx.post(
        server.base_url + "/v1/messages/count_tokens",
        content=counted,
        headers={"x-api-key": server.key, "content-type": "application/json"},
    )
    assert response.json() == {"input_tokens": 3}
    assert fake.seen[1].body == counted


def test_max_tokens_above_the_models_limit_is_clamped_in_the_bytes_or_refused(
    server: LiveServer, fake: FakeUpstream
) -> None:
    fake.answer(body=MESSAGE_JSON)
    raw = (
        b'{"model": "%s", "max_tokens": 5000, "messages": [{"role": "user", "content": "x"}],'
        b' "metadata": {"user_id": "u1"}}'
    )
    headers = {"x-api-key": server.key, "content-type": "application/json"}
    response = httpx.post(server.base_url + "/v1/messages", content=raw % CLAMPED.encode(), headers=headers)
    assert response.status_code == 200, response.text
    (seen,) = fake.seen
    assert json.loads(seen.body) == {**json.loads(raw % CLAMPED.encode()), "max_tokens": 64}
    response = httpx.post(server.base_url + "/v1/messages", content=raw % LIMITED.encode(), headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        f"max_tokens: 5000 > 64, which is the maximum allowed number of output tokens for {LIMITED}"
    )
    assert len(fake.seen) == 1  # refused before it went up, and recorded as refused
    record = usage_of(server, response.headers["request-id"])
    assert (record.model, record.error_type, record.output_tokens) == (LIMITED, "invalid_request_error", 0)


@pytest.mark.parametrize("name", ["anthropic_text.sse", "anthropic_tool_use.sse", "anthropic_thinking.sse"])
def test_stream_bytes_are_relayed_unchanged(server: LiveServer, fake: FakeUpstream, name: str) -> None:
    golden = transcript(name)
    fake.sse(golden)
    body = {
        "model": MODEL,
        "max_tokens": 4096,
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    with httpx.stream(
        "POST", server.base_url + "/v1/messages", json=body, headers={"x-api-key": server.key}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["request-id"].startswith("req_")
        received = b"".join(response.iter_bytes())
        request_id = response.headers["request-id"]
    assert received == golden
    record = usage_of(server, request_id)
    last_delta = [line for line in golden.split(b"\n") if b'"message_delta"' in line][-1]
    usage = json.loads(last_delta.removeprefix(b"data: "))["usage"]
    assert record.output_tokens == usage["output_tokens"] and record.streamed
    assert record.input_tokens > 0 and record.stop_reason in ("end_turn", "tool_use")


def test_sdk_streams_tool_use_and_thinking(server: LiveServer, fake: FakeUpstream) -> None:
    fake.sse(transcript("anthropic_tool_use.sse"))
    client = server.client()
    with client.messages.stream(
        model=MODEL,
        max_tokens=1024,
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        messages=[{"role": "user", "content": "weather?"}],
    ) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    assert message.content[1].input == {"location": "San Francisco, CA"}  # type: ignore[union-attr]

    fake.sse(transcript("anthropic_thinking.sse"), pieces=23)
    with client.messages.stream(
        model=MODEL,
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "27 * 453?"}],
    ) as stream:
        message = stream.get_final_message()
    thinking = message.content[0]
    assert thinking.type == "thinking" and thinking.signature.startswith("EqQB")
    assert thinking.thinking.endswith("453 = 400 + 50 + 3")
    assert message.content[1].type == "redacted_thinking"
    assert message.usage.cache_read_input_tokens == 2048 and message.usage.output_tokens == 312


def test_count_tokens_is_forwarded(server: LiveServer, fake: FakeUpstream) -> None:
    fake.answer(body=b'{"input_tokens": 1234}')
    count = server.client().messages.count_tokens(
        model=MODEL,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Hi", "a_new_field": [1]}]}],
        extra_headers={"anthropic-beta": "token-counting-2024-11-01"},
    )
    assert count.input_tokens == 1234
    (seen,) = fake.seen
    assert seen.path == "/v1/messages/count_tokens"
    sent = json.loads(seen.body)
    assert sent["model"] == UPSTREAM_MODEL
    assert sent["messages"][0]["content"][0]["a_new_field"] == [1]
    assert seen.headers["x-api-key"] == UPSTREAM_KEY
    assert seen.headers["anthropic-beta"] == "token-counting-2024-11-01"


def error_body(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


def test_upstream_errors_map_to_anthropic_errors(
    server: LiveServer, fake: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    client = server.client()
    args: dict[str, Any] = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]}

    fake.answer(status=400, body=error_body("invalid_request_error", "messages.0: bad thing"))
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(**args)
    assert "messages.0: bad thing" in str(bad.value)
    assert len(fake.seen) == 1  # a client error is not retried

    for _ in range(2):  # the first attempt and its one retry
        fake.answer(
            status=429, body=error_body("rate_limit_error", "slow down"), headers={"retry-after": "0"}
        )
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(**args)
    assert limited.value.response.headers["retry-after"] == "1"
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]

    for _ in range(2):
        fake.answer(status=529, body=error_body("overloaded_error", "Overloaded"))
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        client.messages.create(**args)
    assert overloaded.value.status_code == 529

    fake.reset()
    fake.answer(status=401, body=error_body("authentication_error", "invalid x-api-key"))
    with caplog.at_level(logging.ERROR, logger="wisegate.upstream"):
        with pytest.raises(anthropic.InternalServerError) as internal:
            client.messages.create(**args)
    assert internal.value.status_code == 500
    assert "operator" in str(internal.value)
    assert any("refused Wisegate's credentials" in r.getMessage() for r in caplog.records)
    assert UPSTREAM_KEY not in caplog.text
    assert len(fake.seen) == 1  # a bad key is not retried on the same deployment


def test_retry_then_success_and_no_retry_after_bytes(server: LiveServer, fake: FakeUpstream) -> None:
    fake.answer(status=529, body=error_body("overloaded_error", "Overloaded"))
    fake.answer(body=MESSAGE_JSON)
    message = server.client().messages.create(
        model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "x"}]
    )
    assert message.id == "msg_01Aq9w938a90dw8q" and len(fake.seen) == 2

    fake.reset()
    golden = transcript("anthropic_text.sse")
    fake.answer(Answer(content_type="text/event-stream", chunks=[golden[:300], golden[300:]], break_after=1))
    fake.sse(golden)  # must NOT be used: the stream had started
    body = {"model": MODEL, "max_tokens": 16, "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with httpx.stream(
        "POST", server.base_url + "/v1/messages", json=body, headers={"x-api-key": server.key}
    ) as response:
        received = b"".join(response.iter_bytes())
        request_id = response.headers["request-id"]
    assert received.startswith(golden[:300])
    assert b"event: error" in received and b"api_error" in received
    assert len(fake.seen) == 1
    assert usage_of(server, request_id).error_type == "api_error"


@pytest.fixture
def azure(tmp_path: Path) -> Iterator[tuple[LiveServer, FakeUpstream]]:
    for fake in run_fake(FakeUpstream()):
        settings = upstream_settings(
            tmp_path, fake.base_url + "/anthropic", auth_header="api-key", api_key="azure-resource-key"
        )
        for live in serve(settings):
            yield live, fake


def test_azure_ai_foundry(azure: tuple[LiveServer, FakeUpstream]) -> None:
    server, fake = azure
    fake.answer(body=MESSAGE_JSON)
    message = server.client().messages.create(
        model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "x"}]
    )
    assert message.content[-1].text == "Hi there"  # type: ignore[union-attr]
    fake.sse(transcript("anthropic_text.sse"))
    with server.client().messages.stream(
        model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        assert stream.get_final_text() == "Hello! How can I help?"
    for seen in fake.seen:
        assert seen.path == "/anthropic/v1/messages"
        assert seen.headers["api-key"] == "azure-resource-key" and "x-api-key" not in seen.headers


@pytest.fixture
def routed(tmp_path: Path) -> Iterator[tuple[LiveServer, FakeUpstream, FakeUpstream]]:
    for primary in run_fake(FakeUpstream()):
        for secondary in run_fake(FakeUpstream()):
            settings = settings_for(
                tmp_path,
                backends={
                    "a": BackendConfig(
                        type="anthropic", options={"base_url": primary.base_url, "api_key": "ka"}
                    ),
                    "b": BackendConfig(type="anthropic", options={"base_url": secondary.base_url}),
                },
                models=[
                    ModelConfig(
                        id=MODEL,
                        deployments=[
                            DeploymentConfig(backend="a", upstream_model="primary-model"),
                            DeploymentConfig(
                                backend="b", upstream_model="secondary-model", api_keys=["kb1", "kb2"]
                            ),
                        ],
                        routing=RoutingConfig(
                            retries=1, backoff_seconds=0.01, breaker_failures=2, breaker_cooldown_seconds=60
                        ),
                    )
                ],
            )
            for live in serve(settings):
                yield live, primary, secondary


def test_fallback_key_pool_and_circuit_breaker(routed: tuple[LiveServer, FakeUpstream, FakeUpstream]) -> None:
    server, primary, secondary = routed
    client = server.client()
    args: dict[str, Any] = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]}
    primary.answer(status=500, body=error_body("api_error", "boom"))
    primary.answer(status=503, body=b"upstream connect error")
    secondary.answer(body=MESSAGE_JSON)
    assert client.messages.create(**args).id == "msg_01Aq9w938a90dw8q"
    assert len(primary.seen) == 2 and len(secondary.seen) == 1
    assert json.loads(secondary.seen[0].body)["model"] == "secondary-model"
    assert secondary.seen[0].headers["x-api-key"] == "kb1"

    # Two consecutive failures opened primary's breaker: the next request goes straight to secondary.
    secondary.answer(body=MESSAGE_JSON)
    client.messages.create(**args)
    assert len(primary.seen) == 2 and len(secondary.seen) == 2
    assert secondary.seen[1].headers["x-api-key"] == "kb2"


def test_typed_path_over_the_relay(server: LiveServer, fake: FakeUpstream) -> None:
    """``MessageService.create`` (used by callers that need a typed ``Message``) folds the same SSE."""
    from wisegate.domain.keys import Principal
    from wisegate.protocol.messages import MessagesRequest

    fake.sse(transcript("anthropic_thinking.sse"), pieces=13)
    principal: Principal = server.run(server.services.keys.authenticate(server.key))
    request = MessagesRequest.model_validate(
        {"model": MODEL, "max_tokens": 4096, "messages": [{"role": "user", "content": "27 * 453?"}]}
    )
    messages = server.services.messages
    call = server.run(messages.call(principal, request, "req_typed_1", streamed=False))
    message = server.run(messages.create(call))
    assert message.content[0].type == "thinking" and message.content[0].signature.startswith("EqQB")
    assert message.content[-1].text == "27 * 453 = 12,231"  # type: ignore[union-attr]
    assert message.usage.output_tokens == 312 and message.stop_reason == "end_turn"
    assert json.loads(fake.seen[0].body)["stream"] is True
    record = usage_of(server, "req_typed_1")
    assert (record.input_tokens, record.output_tokens, record.cache_read_input_tokens) == (40, 312, 2048)


def test_client_disconnect_mid_stream_is_recorded(server: LiveServer, fake: FakeUpstream) -> None:
    golden = transcript("anthropic_text.sse")
    frames = [f + b"\n\n" for f in golden.split(b"\n\n") if f]
    fake.answer(Answer(content_type="text/event-stream", chunks=frames, chunk_delay=0.5))
    body = {"model": MODEL, "max_tokens": 16, "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with httpx.stream(
        "POST", server.base_url + "/v1/messages", json=body, headers={"x-api-key": server.key}
    ) as response:
        request_id = response.headers["request-id"]
        next(response.iter_bytes())  # message_start arrived; then the client goes away
    for _ in range(100):
        record = usage_of(server, request_id)
        if record is not None:
            break
        import time

        time.sleep(0.05)
    assert record is not None and record.error_type == "client_disconnected"
    assert record.input_tokens == 25 and record.streamed


def test_timeout_and_cooling_deployments(tmp_path: Path) -> None:
    for fake in run_fake(FakeUpstream()):
        settings = settings_for(
            tmp_path,
            backends={"up": BackendConfig(type="anthropic", options={"base_url": fake.base_url})},
            models=[
                ModelConfig(
                    id=MODEL,
                    backend="up",
                    routing=RoutingConfig(
                        retries=0, timeout_seconds=0.3, breaker_failures=1, breaker_cooldown_seconds=60
                    ),
                )
            ],
        )
        for server in serve(settings):
            fake.answer(Answer(body=MESSAGE_JSON, delay=2))
            with pytest.raises(anthropic.APIStatusError) as timed_out:
                server.client().messages.create(
                    model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}]
                )
            assert timed_out.value.status_code == 504
            assert timed_out.value.body["error"]["type"] == "timeout_error"  # type: ignore[index]
            # The only deployment is now cooling down: answered 529 without calling the upstream.
            with pytest.raises(anthropic.APIStatusError) as cooling:
                server.client().messages.create(
                    model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}]
                )
            assert cooling.value.status_code == 529 and "cooling down" in str(cooling.value)
            assert len(fake.seen) == 1


def test_retry_after_is_honoured(server: LiveServer, fake: FakeUpstream) -> None:
    import time

    fake.answer(status=429, body=error_body("rate_limit_error", "wait"), headers={"retry-after": "0.4"})
    fake.answer(body=MESSAGE_JSON)
    started = time.monotonic()
    server.client().messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert time.monotonic() - started >= 0.4  # waited at least what the upstream asked
    assert len(fake.seen) == 2


def test_stored_files_and_skills_go_up_as_their_content(server: LiveServer, fake: FakeUpstream) -> None:
    """Wisegate's file and skill ids mean nothing to the upstream: the relay sends their content."""
    client = server.client()
    text = client.beta.files.upload(file=("notes.txt", b"the launch is on tuesday", "text/plain"))
    image = client.beta.files.upload(file=("dot.png", PNG, "image/png"))
    skill = client.beta.skills.create(files=bundle(body="Always greet in French: say Bonjour."))
    fake.answer(body=MESSAGE_JSON)
    message = client.beta.messages.create(
        model=MODEL,
        max_tokens=64,
        container={"skills": [{"type": "custom", "skill_id": skill.id}]},
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "document", "source": {"type": "file", "file_id": text.id}, "a_new_field": 1},
                    {"type": "image", "source": {"type": "file", "file_id": image.id}},
                    {"type": "text", "text": "when?"},
                ],
            }
        ],
    )
    sent = json.loads(fake.seen[-1].body)
    document, picture, question = sent["messages"][0]["content"]
    notes = "the launch is on tuesday"
    assert document["source"] == {"type": "text", "media_type": "text/plain", "data": notes}
    assert document["title"] == "notes.txt" and document["a_new_field"] == 1
    assert picture["source"]["type"] == "base64" and base64.b64decode(picture["source"]["data"]) == PNG
    assert question == {"type": "text", "text": "when?"}
    assert "container" not in sent and "Bonjour" in json.dumps(sent["system"])
    assert message.container is not None and message.container.skills[0].skill_id == skill.id

    fake.answer(body=b'{"input_tokens": 77}')
    count = client.messages.count_tokens(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [{"type": "document", "source": {"type": "file", "file_id": text.id}}],
            }
        ],
    )
    assert count.input_tokens == 77
    counted = json.loads(fake.seen[-1].body)["messages"][0]["content"][0]
    assert counted["source"]["data"] == "the launch is on tuesday"

    # JSON escapes do not hide a stored id from the resolution.
    fake.answer(body=MESSAGE_JSON)
    escaped = (
        b'{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":[{"type":'
        b'"document","source":{"type":"\\u0066ile","file_id":"' + text.id.encode() + b'"}}]}]}'
    )
    response = httpx.post(
        server.base_url + "/v1/messages",
        content=escaped,
        headers={"x-api-key": server.key, "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert json.loads(fake.seen[-1].body)["messages"][0]["content"][0]["source"]["data"] == notes

    # A request without stored ids still goes up byte for byte (no re-encoding).
    fake.answer(body=MESSAGE_JSON)
    raw = b'{"max_tokens": 5,  "model": "claude-haiku-4-5", "messages":[{"role":"user","content":"x"}]}'
    response = httpx.post(
        server.base_url + "/v1/messages",
        content=raw,
        headers={"x-api-key": server.key, "content-type": "application/json"},
    )
    assert response.status_code == 200 and fake.seen[-1].body == raw


@pytest.mark.parametrize(
    ("body", "status", "error_type", "message"),
    [
        ({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}, 400, "invalid_request_error",
         "max_tokens: Field required"),
        ({"model": MODEL, "max_tokens": 8, "messages": []}, 400, "invalid_request_error",
         "messages: at least one message is required"),
        ({"model": MODEL, "max_tokens": 8, "temperature": 2, "messages": [{"role": "user", "content": "Hi"}]},
         400, "invalid_request_error", "temperature: Input should be less than or equal to 1"),
        (b'{"model": ', 400, "invalid_request_error", "The request body is not valid JSON"),
        ({"model": "claude-nope", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}, 404,
         "not_found_error", "model: claude-nope"),
    ],
)  # fmt: skip
def test_relayed_requests_are_validated_before_going_up(
    server: LiveServer, fake: FakeUpstream, body: Any, status: int, error_type: str, message: str
) -> None:
    """``POST /v1/messages`` skips the router (api/context.py): its errors are the same envelopes."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(
        server.base_url + "/v1/messages",
        content=content,
        headers={"x-api-key": server.key, "content-type": "application/json"},
    )
    assert response.status_code == status, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == error_type
    assert error["error"]["message"].startswith(message), error["error"]["message"]
    assert error["request_id"] == response.headers["request-id"]
    assert response.headers["anthropic-organization-id"] == server.services.organization_id
    assert fake.seen == []


def test_relay_route_still_answers_other_methods_and_paths(server: LiveServer) -> None:
    headers = {"x-api-key": server.key}
    wrong_method = httpx.get(server.base_url + "/v1/messages", headers=headers)
    assert wrong_method.status_code == 405, wrong_method.text
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"
    assert wrong_method.headers["request-id"].startswith("req_")
    unknown = httpx.post(server.base_url + "/v1/messages/nothing", headers=headers, json={})
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def test_text_naming_message_stop_does_not_end_billing(server: LiveServer, fake: FakeUpstream) -> None:
    """The settlement runs before the real ``message_stop`` frame leaves, never at model text that
    merely spells it (one event per chunk, as a slow upstream sends them)."""
    start = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "x",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 1},
    }
    parts = [
        _event("message_start", {"type": "message_start", "message": start}),
        _event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        _event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {
                    "type": "text_delta",
                    "text": "a stream ends with event: message_stop\n\nevent: message_stop\n",
                },
            },
        ),
        _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 4000},
            },
        ),
        _event("message_stop", {"type": "message_stop"}),
    ]
    fake.answer(Answer(content_type="text/event-stream; charset=utf-8", chunks=parts, chunk_delay=0.02))
    with server.client().messages.stream(
        model=MODEL, max_tokens=5000, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        final = stream.get_final_message()
        request_id = stream.response.headers["request-id"]
    record = usage_of(server, request_id)
    assert final.usage.output_tokens == 4000
    assert (record.output_tokens, record.stop_reason, record.error_type) == (4000, "end_turn", None)


def test_the_code_execution_tool_goes_up_untouched(server: LiveServer, fake: FakeUpstream) -> None:
    """Anthropic runs the tool and its containers: Wisegate relays the request and answer as they are."""
    fake.answer(body=MESSAGE_JSON)
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 100,
        "tools": [{"type": "code_execution_20250825", "name": "code_execution"}],
        "container": "container_011CPR5CNjB747bTd36fQLFk",
        "messages": [{"role": "user", "content": "Run it"}],
    }
    raw = httpx.post(
        f"{server.base_url}/v1/messages?beta=true",
        json=body,
        headers={"x-api-key": server.key, "anthropic-beta": "code-execution-2025-08-25"},
    )
    assert raw.status_code == 200 and raw.content == MESSAGE_JSON
    assert json.loads(fake.seen[-1].body) == body
    assert not (server.settings.data_dir / "containers").exists()  # no local container was made
