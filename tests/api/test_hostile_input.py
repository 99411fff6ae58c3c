"""Input built to hurt: deep JSON on every JSON endpoint, huge numbers, far dates, deep YAML — each a
clean 400 naming what is wrong, in constant memory (raw HTTP against a live server)."""

from __future__ import annotations

import json
import logging
import resource
import time
from typing import Any

import httpx
import pytest

from tests.api.files_support import skill_md
from tests.conftest import SCRIPTED_MODEL, LiveServer, make_key
from wisegate.protocol.json_depth import MAX_JSON_DEPTH
from wisegate.telemetry.logs import JsonFormatter

USER = [{"role": "user", "content": "hi"}]
TOO_DEEP = f"nests JSON arrays and objects deeper than {MAX_JSON_DEPTH} levels"


def post(live: LiveServer, path: str, body: Any, key: str | None = None) -> httpx.Response:
    headers = {"x-api-key": key or live.key, "content-type": "application/json"}
    if isinstance(body, bytes):
        return httpx.post(live.base_url + path, content=body, headers=headers, timeout=60)
    return httpx.post(live.base_url + path, json=body, headers=headers, timeout=60)


def error_of(response: httpx.Response, status: int = 400) -> str:
    """The message of Anthropic's error envelope (or OpenAI's, on its compatible paths)."""
    assert response.status_code == status, response.text
    envelope = response.json()
    assert envelope["error"]["type"] == "invalid_request_error"
    if "/openai/" not in str(response.url) and not str(response.url).endswith("/chat/completions"):
        assert envelope["type"] == "error" and envelope["request_id"] == response.headers["request-id"]
    message: str = envelope["error"]["message"]
    return message


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("path", "admin"),
    [
        ("/v1/messages", False),
        ("/v1/messages/count_tokens", False),
        ("/v1/messages/batches", False),
        ("/v1/chat/completions", False),
        ("/openai/v1/chat/completions", False),
        ("/v1/organizations/workspaces", True),
    ],
)
def test_deep_json_is_400_on_every_json_endpoint(scripted_server: LiveServer, path: str, admin: bool) -> None:
    key = make_key(scripted_server.settings, admin=True) if admin else None
    body = b'{"model": ' + nested(5_000) + b"}"
    assert TOO_DEEP in error_of(post(scripted_server, path, body, key))
    # Brackets inside strings are text, not nesting.
    assert TOO_DEEP not in post(scripted_server, path, {"name": "[" * 5_000}, key).text


def test_nesting_up_to_the_bound_is_accepted(scripted_server: LiveServer) -> None:
    def count(depth: int) -> httpx.Response:
        value: Any = 1
        for _ in range(depth):
            value = [value]
        assistant = {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"v": value}}],
        }
        result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}
        tools = [{"name": "f", "input_schema": {"type": "object"}}]
        body = {"model": SCRIPTED_MODEL, "messages": [*USER, assistant, result], "tools": tools}
        return post(scripted_server, "/v1/messages/count_tokens", body)

    # The document's own levels: body, messages, the message, content, the block, input.
    assert count(MAX_JSON_DEPTH - 7).status_code == 200
    assert TOO_DEEP in error_of(count(MAX_JSON_DEPTH))


def test_a_deep_batch_body_is_refused_at_once_in_constant_memory(scripted_server: LiveServer) -> None:
    """100,000 levels (200 KB) once drove the server to 23 GB: the parser's memory grew with the
    square of the depth."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    body = b'{"requests": ' + nested(100_000) + b"}"
    assert TOO_DEEP in error_of(post(scripted_server, "/v1/messages/batches", body))
    assert time.monotonic() - started < 5
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 50 * 1024, f"peak memory grew by {grown_kb} KB"
    # Deep inside one request's params (3,000 levels answered 500).
    params = (
        b'{"model": "' + SCRIPTED_MODEL.encode() + b'", "max_tokens": 5, "metadata": ' + nested(3_000) + b"}"
    )
    inner = b'{"requests": [{"custom_id": "a", "params": ' + params + b"}]}"
    assert TOO_DEEP in error_of(post(scripted_server, "/v1/messages/batches", inner))


def chat_with_tool_call(live: LiveServer, arguments: str, path: str = "/v1/chat/completions") -> str:
    """The 400 message of a chat completion whose assistant turn called a tool with ``arguments``."""
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    body = {
        "model": SCRIPTED_MODEL,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ],
    }
    response = httpx.post(
        f"{live.base_url}{path}", json=body, headers={"authorization": f"Bearer {live.key}"}, timeout=60
    )
    assert response.status_code == 400, response.text
    message: str = response.json()["error"]["message"]
    return message


def test_deep_tool_call_arguments_are_400_naming_the_field(scripted_server: LiveServer) -> None:
    message = chat_with_tool_call(scripted_server, "[" * 20_000)
    assert message.startswith("messages.1.tool_calls.0.function.arguments: JSON nested deeper than")


def test_huge_max_tokens_is_400_naming_the_field(scripted_server: LiveServer) -> None:
    # The scripted models declare no max_output_tokens: nothing but the type bounds max_tokens.
    expected = "max_tokens: Input should be less than or equal to 2147483647"
    client = scripted_server.client()
    for huge in (2**31, 2**62):
        params = {"model": SCRIPTED_MODEL, "max_tokens": huge, "messages": USER}
        assert error_of(post(scripted_server, "/v1/messages", params)) == expected
        # In a batch, params are validated when the request runs: an errored result, same words.
        batch = client.messages.batches.create(requests=[{"custom_id": "huge", "params": params}])  # type: ignore[list-item]
        deadline = time.monotonic() + 60
        while client.messages.batches.retrieve(batch.id).processing_status != "ended":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        (result,) = list(client.messages.batches.results(batch.id))
        assert result.result.type == "errored"
        assert result.result.error.error.message == expected  # type: ignore[union-attr]


def test_a_report_starting_far_in_the_future_is_400(scripted_server: LiveServer) -> None:
    key = make_key(scripted_server.settings, admin=True)
    for path in ("/v1/organizations/usage_report/messages", "/v1/organizations/cost_report"):
        response = httpx.get(
            scripted_server.base_url + path,
            params={"starting_at": "9999-12-31T23:59:59Z"},
            headers={"x-api-key": key},
            timeout=30,
        )
        assert error_of(response).startswith("starting_at: '9999-12-31T23:59:59Z' is out of range")


def test_skill_front_matter_nested_deep_is_400(scripted_server: LiveServer) -> None:
    deep = b"---\nname: deep\ndescription: " + b"[" * 10_000 + b"\n---\nbody\n"
    files = [("files[]", ("deep/SKILL.md", deep, "text/markdown"))]
    response = httpx.post(
        f"{scripted_server.base_url}/v1/skills",
        files=files,
        headers={"x-api-key": scripted_server.key},
        timeout=30,
    )
    assert "SKILL.md: the front matter is not valid YAML: nested deeper than 32 levels" == error_of(response)
    # A front matter of ordinary shape still loads.
    fine = [("files[]", ("fine/SKILL.md", skill_md("fine", "Fine"), "text/markdown"))]
    ok = httpx.post(
        f"{scripted_server.base_url}/v1/skills", files=fine, headers={"x-api-key": scripted_server.key}
    )
    assert ok.status_code == 200, ok.text


class _JsonLines(logging.Handler):
    """The log lines as the server writes them (formatted while the request's id is current)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


def test_4xx_log_lines_carry_the_message_and_request_id_not_the_key_or_body(
    scripted_server: LiveServer,
) -> None:
    logger = logging.getLogger("wisegate.http")
    handler, level = _JsonLines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    secret_text = "my secret prompt text"
    try:
        body = {
            "model": SCRIPTED_MODEL,
            "max_tokens": True,
            "messages": [{"role": "user", "content": secret_text}],
        }
        response = post(scripted_server, "/v1/messages", body)
        missing = httpx.get(
            f"{scripted_server.base_url}/v1/files/file_nope", headers={"x-api-key": scripted_server.key}
        )
        wanted = {response.headers["request-id"], missing.headers["request-id"]}
        deadline = time.monotonic() + 10  # the line is written once the response has been sent
        while time.monotonic() < deadline and not wanted <= {
            line["request_id"] for line in handler.lines if line["msg"] == "request"
        }:
            time.sleep(0.01)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert response.status_code == 400 and missing.status_code == 404
    by_id = {line["request_id"]: line for line in handler.lines if line["msg"] == "request"}
    line = by_id[response.headers["request-id"]]
    assert line["status"] == 400 and line["path"] == "/v1/messages"
    assert line["error_type"] == "invalid_request_error"
    assert line["error"] == "max_tokens: Input should be a valid integer"
    assert by_id[missing.headers["request-id"]]["error_type"] == "not_found_error"
    logged = json.dumps(handler.lines)
    assert secret_text not in logged and scripted_server.key not in logged


def test_integers_too_long_to_convert_are_400_without_internals(scripted_server: LiveServer) -> None:
    """Python converts at most 4,300 digits to an int; past that its ValueError tells the reader to call
    ``sys.set_int_max_str_digits``. Every JSON text a request carries answers 400 naming the field."""
    huge = "9" * 5_000
    for path in ("/v1/chat/completions", "/openai/v1/chat/completions"):
        message = chat_with_tool_call(scripted_server, '{"n": ' + huge + "}", path)
        assert message.startswith("messages.1.tool_calls.0.function.arguments: an integer of 5000 digits"), (
            message
        )
        assert "set_int_max_str_digits" not in message
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        raw = b'{"model": "%s", "max_tokens": %s, "messages": [{"role": "user", "content": "hi"}]}' % (
            SCRIPTED_MODEL.encode(),
            huge.encode(),
        )
        message = error_of(post(scripted_server, path, raw))
        assert message.startswith("The request body is not valid JSON: number out of range"), message
    raw = b'{"requests": [{"custom_id": "a", "params": {"max_tokens": %s}}]}' % huge.encode()
    response = post(scripted_server, "/v1/messages/batches", raw)
    assert "set_int_max_str_digits" not in response.text and "\n" not in response.json()["error"]["message"]


def test_compressed_request_bodies_are_refused_saying_so(scripted_server: LiveServer) -> None:
    """No endpoint decompresses: a gzip body is a 400 that says to send it uncompressed, not a JSON
    error about bytes the client never wrote (nor an upload stored compressed)."""
    import gzip
    import socket

    body = gzip.compress(json.dumps({"model": SCRIPTED_MODEL, "max_tokens": 5, "messages": USER}).encode())
    for encoding in ("gzip", "identity, br"):
        response = httpx.post(
            f"{scripted_server.base_url}/v1/messages",
            content=body,
            headers={
                "x-api-key": scripted_server.key,
                "content-type": "application/json",
                "content-encoding": encoding,
            },
            timeout=30,
        )
        assert f"Content-Encoding '{encoding}' is not supported" in error_of(response)
    ok = post(scripted_server, "/v1/messages", {"model": SCRIPTED_MODEL, "max_tokens": 5, "messages": USER})
    assert ok.status_code == 200, ok.text
    host, port = scripted_server.base_url.removeprefix("http://").split(":")
    chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    head = (
        f"POST /v1/messages HTTP/1.1\r\nhost: {host}\r\nx-api-key: {scripted_server.key}\r\n"
        "content-type: application/json\r\ntransfer-encoding: gzip, chunked\r\nconnection: close\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode() + chunk)
        answer = b""
        while part := sock.recv(65536):
            answer += part
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 400 " in status_line, answer[:500]
    assert b"Transfer-Encoding 'gzip, chunked' is not supported" in rest, answer[:800]
