"""Every failure answers Anthropic's envelope with the right status (scripted backend, real server)."""

from __future__ import annotations

import socket
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import SCRIPTED_MODEL, LiveServer
from wisegate.errors import Overloaded
from wisegate.protocol.events import ContentBlockDelta, ContentBlockStart, MessageStart, TextDelta
from wisegate.protocol.messages import Message, TextBlock

USER = [{"role": "user", "content": "hello there"}]


def post(
    server: LiveServer,
    body: Any,
    headers: dict[str, str] | None = None,
    path: str = "/v1/messages",
    key: str | None = None,
) -> httpx.Response:
    all_headers = {"x-api-key": key if key is not None else server.key, **(headers or {})}
    if isinstance(body, (bytes, str)):
        return httpx.post(server.base_url + path, content=body, headers=all_headers, timeout=30)
    return httpx.post(server.base_url + path, json=body, headers=all_headers, timeout=30)


def assert_envelope(response: httpx.Response, status: int, error_type: str, contains: str = "") -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert body["request_id"] == response.headers["request-id"]
    assert response.headers["request-id"].startswith("req_")
    assert response.headers.get("anthropic-organization-id")
    assert contains in body["error"]["message"], body["error"]["message"]
    assert "Traceback" not in response.text
    message: str = body["error"]["message"]
    return message


def body(**overrides: Any) -> dict[str, Any]:
    return {"model": SCRIPTED_MODEL, "max_tokens": 16, "messages": USER, **overrides}


def test_sdk_create_and_headers(scripted_server: LiveServer) -> None:
    raw = scripted_server.client().messages.with_raw_response.create(
        model=SCRIPTED_MODEL, max_tokens=16, messages=[{"role": "user", "content": "echo these words"}]
    )
    assert raw.headers["request-id"].startswith("req_")
    assert raw.headers["anthropic-organization-id"] == scripted_server.services.organization_id
    message = raw.parse()
    assert message.content[0].text == "echo these words"
    assert message.usage.input_tokens == 3 and message.usage.output_tokens == 3


def test_bearer_auth_and_beta_header_accepted(scripted_server: LiveServer) -> None:
    response = post(
        scripted_server,
        body(),
        key="",
        headers={"authorization": f"Bearer {scripted_server.key}", "anthropic-beta": "some-beta-2025-01-01"},
    )
    assert response.status_code == 200
    assert response.json()["content"][0]["text"] == "hello there"


@pytest.mark.parametrize("key", ["", "sk-wg-api01-nope"])
def test_missing_or_unknown_key(scripted_server: LiveServer, key: str) -> None:
    assert_envelope(post(scripted_server, body(), key=key), 401, "authentication_error")


def test_a_bad_key_is_named_by_the_header_it_came_in(scripted_server: LiveServer) -> None:
    bearer = post(scripted_server, body(), key="", headers={"authorization": "Bearer sk-wg-api01-nope"})
    assert assert_envelope(bearer, 401, "authentication_error") == "invalid Authorization: Bearer"
    sdk = anthropic.Anthropic(
        base_url=scripted_server.base_url, api_key=None, auth_token="sk-wg-api01-nope", max_retries=0
    )
    with pytest.raises(anthropic.AuthenticationError) as refused:
        sdk.models.list()
    assert refused.value.body["error"]["message"] == "invalid Authorization: Bearer"  # type: ignore[index]
    plain = post(scripted_server, body(), key="sk-wg-api01-nope")
    assert assert_envelope(plain, 401, "authentication_error") == "invalid x-api-key"
    basic = post(scripted_server, body(), key="", headers={"authorization": "Basic dXNlcjpwYXNz"})
    assert assert_envelope(basic, 401, "authentication_error").startswith(
        "Authorization: only 'Bearer <key>'"
    )
    none = post(scripted_server, body(), key="")
    assert assert_envelope(none, 401, "authentication_error") == "x-api-key header is required"


def test_disabled_key(scripted_server: LiveServer) -> None:
    from tests.conftest import make_key

    secret = make_key(scripted_server.settings)
    assert post(scripted_server, body(), key=secret).status_code == 200
    key = scripted_server.run(scripted_server.services.keys.authenticate(secret)).key
    scripted_server.run(scripted_server.services.keys.set_status(key.id, "inactive"))
    assert_envelope(post(scripted_server, body(), key=secret), 401, "authentication_error", "inactive")


def test_admin_key_cannot_call_messages(scripted_server: LiveServer) -> None:
    from tests.conftest import make_key

    admin = make_key(scripted_server.settings, admin=True)
    assert_envelope(post(scripted_server, body(), key=admin), 401, "authentication_error")


def test_versions(scripted_server: LiveServer) -> None:
    for version in ("2023-06-01", "2026-10-21"):
        assert post(scripted_server, body(), headers={"anthropic-version": version}).status_code == 200
    assert_envelope(
        post(scripted_server, body(), headers={"anthropic-version": "2023-10-01"}),
        400,
        "invalid_request_error",
        'anthropic-version: "2023-10-01" is not a valid version',
    )


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"", "body is empty"),
        ({"max_tokens": 5, "messages": USER}, "model: Field required"),
        (body(messages=[]), "messages: at least one message"),
        (body(messages=[{"role": "robot", "content": "x"}]), "messages.0.role: Input should be"),
        (body(messages=[{"role": "user", "content": 5}]), "messages.0.content"),
        (
            body(messages=[{"role": "user", "content": [{"type": "txt", "text": "x"}]}]),
            "messages.0.content.0: Input tag 'txt'",
        ),
        (body(max_tokens="many"), "max_tokens: Input should be a valid integer"),
        (body(max_tokens=-1), "max_tokens: Input should be greater than or equal to 0"),
        # Strict numbers: a boolean or a numeric string is not a number, as in the Claude API.
        (body(max_tokens=True), "max_tokens: Input should be a valid integer"),
        (body(max_tokens="16"), "max_tokens: Input should be a valid integer"),
        (body(max_tokens=16.0), "max_tokens: Input should be a valid integer"),
        (body(max_tokens=2**31), "max_tokens: Input should be less than or equal to 2147483647"),
        (body(top_k=False), "top_k: Input should be a valid integer"),
        (body(temperature=True), "temperature: Input should be a valid number"),
        (body(top_p="0.5"), "top_p: Input should be a valid number"),
        (
            body(thinking={"type": "enabled", "budget_tokens": True}, max_tokens=4000),
            "thinking.enabled.budget_tokens: Input should be a valid integer",
        ),
        (body(temperature=1.5), "temperature: Input should be less than or equal to 1"),
        (body(top_p=-0.1), "top_p: Input should be greater than or equal to 0"),
        (body(top_k=-1), "top_k: Input should be greater than or equal to 0"),
        (body(stop_sequences=["  "]), "stop_sequences: each stop sequence must contain non-whitespace"),
        (body(metadata={"user_id": 5}), "metadata.user_id: Input should be a valid string"),
        (body(system=[{"type": "image"}]), "system"),
        (body(tools=[{"name": "bad name!", "input_schema": {"type": "object"}}]), "tools.0.custom.name"),
        (body(tools=[{"name": "t", "input_schema": {"type": "array"}}]), "tools.0.custom.input_schema.type"),
        (body(tools=[{"name": "t", "input_schema": {"type": "object"}}] * 2), "Tool names must be unique"),
        (body(tool_choice={"type": "any"}), "may only be specified while providing tools"),
        (
            body(
                tools=[{"name": "t", "input_schema": {"type": "object"}}],
                tool_choice={"type": "tool", "name": "u"},
            ),
            "Tool 'u' not found",
        ),
        (body(tool_choice={"type": "sometimes"}), "tool_choice: Input tag 'sometimes'"),
        (
            body(thinking={"type": "enabled", "budget_tokens": 100}, max_tokens=4000),
            "greater than or equal to 1024",
        ),
        (body(thinking={"type": "enabled", "budget_tokens": 2048}, max_tokens=1024), "must be greater than"),
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "42"}],
                    }
                ]
            ),
            "unexpected `tool_use_id`",
        ),
        (body(unknown_field=1), "unknown_field: Extra inputs are not permitted"),
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": str(i), "cache_control": {"type": "ephemeral"}}
                            for i in range(5)
                        ],
                    }
                ]
            ),
            "A maximum of 4 blocks with cache_control",
        ),
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "2h"}}
                        ],
                    }
                ]
            ),
            "ttl",
        ),
    ],
)
def test_invalid_requests_name_the_field(scripted_server: LiveServer, payload: Any, message: str) -> None:
    assert_envelope(post(scripted_server, payload), 400, "invalid_request_error", message)


def test_valid_rich_request_is_accepted(scripted_server: LiveServer) -> None:
    """Everything the 2.10 SDK types allow is accepted: system messages, adaptive thinking, caching…
    and reaches the backend as sent."""
    scripted_server.backend.enqueue("rich answer")
    response = post(
        scripted_server,
        body(
            system=[
                {"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
            ],
            messages=[
                {"role": "system", "content": "system turn"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": {"a": 1}}],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [{"type": "text", "text": "result"}],
                        }
                    ],
                },
            ],
            tools=[
                {
                    "name": "t",
                    "input_schema": {"type": "object", "properties": {"a": {"type": "integer"}}},
                    "cache_control": {"type": "ephemeral"},
                },
                {"type": "web_search_20250305", "name": "web_search"},
            ],
            tool_choice={"type": "auto", "disable_parallel_tool_use": True},
            thinking={"type": "adaptive", "display": "omitted"},
            output_config={"effort": "medium"},
            metadata={"user_id": '{"session": "x"}'},
            stop_sequences=["END"],
            temperature=0.5,
            top_p=0.9,
            top_k=5,
            cache_control={"type": "ephemeral"},
            context_management={"edits": []},
            speed="standard",
        ),
        headers={"anthropic-beta": "a-2025-01-01,b-2025-02-02"},
    )
    assert response.status_code == 200, response.text
    reply = response.json()
    assert [(b["type"], b["text"]) for b in reply["content"]] == [("text", "rich answer")]
    assert reply["stop_reason"] == "end_turn" and reply["usage"]["output_tokens"] == 2
    seen = scripted_server.backend.calls[-1]
    assert seen.max_tokens == 16 and seen.temperature == 0.5 and seen.top_p == 0.9 and seen.top_k == 5
    assert seen.stop_sequences == ["END"]
    assert seen.thinking is not None and seen.thinking.type == "adaptive"
    assert [t.name for t in seen.tools or []] == ["t", "web_search"]
    assert seen.tool_choice is not None and seen.tool_choice.disable_parallel_tool_use is True
    assert seen.metadata is not None and seen.metadata.user_id == '{"session": "x"}'
    system = seen.system_text()
    assert [b.text for b in system][:1] == ["be brief"]
    assert system[0].cache_control is not None and system[0].cache_control.ttl == "1h"
    assert [m.role for m in seen.messages] == ["system", "user", "assistant", "user"]
    assert seen.messages[0].content == "system turn"
    tool_result = seen.messages[3].blocks()[0]
    assert tool_result.type == "tool_result" and tool_result.tool_use_id == "toolu_1"


def test_unknown_model_is_404(scripted_server: LiveServer) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        scripted_server.client().messages.create(model="claude-nope", max_tokens=5, messages=USER)
    assert info.value.body["error"]["message"] == "model: claude-nope"


def test_alias_routes_to_the_model(scripted_server: LiveServer) -> None:
    message = scripted_server.client().messages.create(model="scripted-latest", max_tokens=5, messages=USER)
    assert message.model == SCRIPTED_MODEL


def test_unknown_route_and_wrong_method(scripted_server: LiveServer) -> None:
    assert_envelope(httpx.get(scripted_server.base_url + "/v1/nothing"), 404, "not_found_error")
    assert_envelope(httpx.get(scripted_server.base_url + "/v1/messages"), 405, "invalid_request_error")


def test_body_over_the_limit_is_413(scripted_server: LiveServer) -> None:
    big = body(messages=[{"role": "user", "content": "x" * 70_000}])
    assert_envelope(post(scripted_server, big), 413, "request_too_large")


def test_chunked_body_over_the_limit_is_413_without_buffering_it(scripted_server: LiveServer) -> None:
    """No content-length: the limit is enforced while reading and the server answers before the end."""
    host, port = scripted_server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"x-api-key: " + scripted_server.key.encode() + b"\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 16384
        for _ in range(8):
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        reply = b""
        while b"request_too_large" not in reply:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    assert reply.decode().startswith("HTTP/1.1 413")
    assert b'"request_too_large"' in reply


def test_backend_failures(scripted_server: LiveServer) -> None:
    backend = scripted_server.backend
    backend.enqueue(error=Overloaded("Overloaded"))
    assert_envelope(post(scripted_server, body()), 529, "overloaded_error")
    backend.enqueue(error=RuntimeError("secret internals"))
    message = assert_envelope(post(scripted_server, body()), 500, "api_error")
    assert "secret internals" not in message


def test_overloaded_tells_the_client_when_to_retry(scripted_server: LiveServer) -> None:
    """A 529 without a cause-given wait still carries ``retry-after`` (and so does OpenAI's 503)."""
    scripted_server.backend.enqueue(error=Overloaded("Overloaded"))
    response = post(scripted_server, body())
    assert_envelope(response, 529, "overloaded_error")
    assert response.headers["retry-after"] == "1"
    scripted_server.backend.enqueue(error=Overloaded("Overloaded", retry_after=7))
    assert post(scripted_server, body()).headers["retry-after"] == "7"
    scripted_server.backend.enqueue(error=Overloaded("Overloaded"))
    chat = post(
        scripted_server,
        {"model": SCRIPTED_MODEL, "messages": [{"role": "user", "content": "hi"}]},
        path="/openai/v1/chat/completions",
    )
    assert chat.status_code == 503 and chat.headers["retry-after"] == "1"
    assert "retry-after" not in post(scripted_server, body(model="claude-nope")).headers


def test_error_mid_stream_is_an_error_event(scripted_server: LiveServer) -> None:
    scripted_server.backend.enqueue(
        events=[
            MessageStart(message=Message(id="msg_1", model=SCRIPTED_MODEL)),
            ContentBlockStart(index=0, content_block=TextBlock(text="")),
            ContentBlockDelta(index=0, delta=TextDelta(text="partial")),
            Overloaded("Overloaded"),
        ]
    )
    response = post(scripted_server, body(stream=True))
    assert response.status_code == 200
    assert response.text.endswith(
        'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    with pytest.raises(anthropic.APIStatusError) as info:
        scripted_server.backend.enqueue(
            events=[MessageStart(message=Message(id="msg_2", model=SCRIPTED_MODEL)), Overloaded("Overloaded")]
        )
        with scripted_server.client().messages.stream(model=SCRIPTED_MODEL, max_tokens=5, messages=USER) as s:
            s.get_final_message()
    assert info.value.type == "overloaded_error"


def test_every_request_is_recorded(scripted_server: LiveServer) -> None:
    response = post(scripted_server, body(model="claude-nope"))
    record = scripted_server.run(scripted_server.services.usage.for_request(response.headers["request-id"]))
    assert record is not None and record.error_type == "not_found_error" and record.output_tokens == 0


NONEMPTY = "all messages must have non-empty content except for the optional final assistant message"


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
@pytest.mark.parametrize(
    ("messages", "system", "message"),
    [
        ([{"role": "user", "content": ""}], None, f"messages.0.content: {NONEMPTY}"),
        ([{"role": "user", "content": []}], None, f"messages.0.content: {NONEMPTY}"),
        (
            [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": ""}]}],
            None,
            "messages.0.content.1.text: text content blocks must be non-empty",
        ),
        (
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}, USER[0]],
            None,
            f"messages.1.content: {NONEMPTY}",
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "text", "text": ""}]},
            ],
            None,
            "messages.1.content.0.text: text content blocks must be non-empty",
        ),
        (USER, [{"type": "text", "text": ""}], "system.0.text: text content blocks must be non-empty"),
    ],
    ids=[
        "empty string",
        "no blocks",
        "empty text block",
        "empty middle turn",
        "empty prefill block",
        "system",
    ],
)
def test_empty_content_is_400_naming_the_message(
    scripted_server: LiveServer, path: str, messages: Any, system: Any, message: str
) -> None:
    payload = {"model": SCRIPTED_MODEL, "messages": messages, **({"system": system} if system else {})}
    if path == "/v1/messages":
        payload["max_tokens"] = 16
    assert assert_envelope(post(scripted_server, payload, path=path), 400, "invalid_request_error") == message


def test_the_final_assistant_message_may_be_empty(scripted_server: LiveServer) -> None:
    client = scripted_server.client()
    for prefill in ("", []):
        turns: Any = [{"role": "user", "content": "echo this"}, {"role": "assistant", "content": prefill}]
        assert client.messages.create(model=SCRIPTED_MODEL, max_tokens=16, messages=turns).content
        assert client.messages.count_tokens(model=SCRIPTED_MODEL, messages=turns).input_tokens > 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "Invalid 'messages[1].content': string too short. Expected a string with minimum length 1"),
        ([], "Invalid 'messages[1].content': empty array. Expected an array with minimum length 1"),
        (
            [{"type": "text", "text": "hi"}, {"type": "text", "text": ""}],
            "Invalid 'messages[1].content[1].text': string too short.",
        ),
    ],
    ids=["empty string", "no parts", "empty text part"],
)
def test_empty_content_is_400_on_chat_completions(
    scripted_server: LiveServer, content: Any, message: str
) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": content}]
    answer = post(
        scripted_server, {"model": SCRIPTED_MODEL, "messages": messages}, path="/v1/chat/completions"
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"].startswith(message), error
    # An assistant turn that only calls tools has no text, as OpenAI allows.
    calls = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    turns = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_1", "content": "done"},
    ]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    ok = post(
        scripted_server,
        {"model": SCRIPTED_MODEL, "messages": turns, "tools": tools},
        path="/v1/chat/completions",
    )
    assert ok.status_code == 200, ok.text


def _chat(server: LiveServer, payload: Any) -> tuple[int, str]:
    """(status, error message) of a Chat Completions answer (OpenAI's error shape)."""
    headers = {"content-type": "application/json"}
    answer = post(server, payload, path="/v1/chat/completions", headers=headers)
    return answer.status_code, answer.json()["error"]["message"]


NOT_FINITE = "The request body is not valid JSON: NaN and Infinity are not JSON numbers"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_not_json(scripted_server: LiveServer, literal: bytes) -> None:
    """Python's and pydantic's parsers take them; JSON and the Claude API do not."""
    head = b'{"model": "scripted-1", "max_tokens": 16, '
    for path, payload in (
        ("/v1/messages", head + b'"temperature": %s, "messages": []}'),
        ("/v1/messages", head + b'"metadata": {"x": [%s]}, "messages": []}'),
        ("/v1/messages/count_tokens", b'{"model": "scripted-1", "messages": [], "x": %s}'),
        ("/v1/messages/batches", b'{"requests": [{"custom_id": "a", "params": {"temperature": %s}}]}'),
    ):
        answer = post(
            scripted_server, payload % literal, path=path, headers={"content-type": "application/json"}
        )
        assert assert_envelope(answer, 400, "invalid_request_error") == NOT_FINITE
    chat = b'{"model": "scripted-1", "temperature": %s, "messages": []}' % literal
    assert _chat(scripted_server, chat) == (400, NOT_FINITE)
    words = [{"role": "user", "content": "NaN Infinity"}]
    assert post(scripted_server, body(messages=words)).status_code == 200  # in strings they are only words
    arguments = '{"a": ' + literal.decode() + "}"
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    turns = [{"role": "user", "content": "go"}, {"role": "assistant", "tool_calls": [call]}]
    assert _chat(scripted_server, {"model": SCRIPTED_MODEL, "messages": turns}) == (
        400,
        "messages.1.tool_calls.0.function.arguments: not valid JSON: NaN and Infinity are not JSON numbers",
    )


@pytest.mark.parametrize("role", ["user", "system", "developer", "tool", "assistant"])
def test_null_content_on_chat_completions_names_the_field(scripted_server: LiveServer, role: str) -> None:
    turn: dict[str, Any] = {"role": role, "content": None}
    if role == "tool":
        turn["tool_call_id"] = "call_1"
    messages = [{"role": "user", "content": "hi"}, turn]
    status, message = _chat(scripted_server, {"model": SCRIPTED_MODEL, "messages": messages})
    assert status == 400 and message.startswith("Invalid value for 'messages[1].content': expected a string")
    assert message.endswith("got null."), message
