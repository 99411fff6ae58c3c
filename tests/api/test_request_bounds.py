"""Request bounds: what a request may make the server carry through generation is bounded up front.

At most 256 ``stop_sequences`` of at most 1024 characters each (each is matched against every
generated token), at most 1000 ``tools``, tool names and ``tool_choice.name`` of at most 128
characters: past a bound, a 400 naming the field, on ``/v1/messages``, ``count_tokens``, batches (an
``errored`` result, as the batch validates ``params`` when the request runs) and
``/v1/chat/completions``. At the bound, the request is answered.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SCRIPTED_MODEL, LiveServer, postgres_database, scripted_settings, serve
from wisegate.backends.scripted import ScriptedBackend
from wisegate.protocol.bounds import MAX_STOP_SEQUENCES, MAX_TOOLS, STOP_SEQUENCE_LENGTH, TOOL_NAME_LENGTH

HI = [{"role": "user", "content": "hi"}]


def _tools(count: int, name_length: int = 0) -> list[dict[str, Any]]:
    names = [f"t{i}" for i in range(count)]
    if name_length:
        names[-1] = "n" * name_length
    return [{"name": name, "input_schema": {"type": "object"}} for name in names]


# (field named in the error, extra fields past the bound, the same at the bound)
CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "stop_sequences count": (
        "stop_sequences",
        {"stop_sequences": [f"s{i}" for i in range(MAX_STOP_SEQUENCES + 1)]},
        {"stop_sequences": [f"s{i}" for i in range(MAX_STOP_SEQUENCES)]},
    ),
    "stop sequence length": (
        "stop_sequences.0",
        {"stop_sequences": ["x" * (STOP_SEQUENCE_LENGTH + 1)]},
        {"stop_sequences": ["x" * STOP_SEQUENCE_LENGTH]},
    ),
    "tools count": ("tools", {"tools": _tools(MAX_TOOLS + 1)}, {"tools": _tools(MAX_TOOLS)}),
    "tool name length": (
        "tools.0",
        {"tools": _tools(1, TOOL_NAME_LENGTH + 1)},
        {"tools": _tools(1, TOOL_NAME_LENGTH)},
    ),
    "tool_choice.name length": (
        "tool_choice",
        {"tools": _tools(1), "tool_choice": {"type": "tool", "name": "n" * (TOOL_NAME_LENGTH + 1)}},
        {
            "tools": _tools(1, TOOL_NAME_LENGTH),
            "tool_choice": {"type": "tool", "name": "n" * TOOL_NAME_LENGTH},
        },
    ),
    "server tool name length": (
        "tools.0",
        {"tools": [{"type": "web_search_20250305", "name": "w" * (TOOL_NAME_LENGTH + 1)}]},
        {"tools": [{"type": "web_search_20250305", "name": "w" * TOOL_NAME_LENGTH}]},
    ),
}
COUNTABLE = {k for k in CASES if k.startswith("tool")}  # count_tokens takes no stop_sequences


def _post(server: LiveServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.base_url + path, headers={"x-api-key": server.key}, json=body, timeout=60)


def _refused(response: httpx.Response, field: str) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(field), error["message"]
    return str(error["message"])


@pytest.mark.parametrize("case", sorted(CASES))
def test_messages(scripted_server: LiveServer, case: str) -> None:
    field, past, at = CASES[case]
    body = {"model": SCRIPTED_MODEL, "max_tokens": 5, "messages": HI}
    message = _refused(_post(scripted_server, "/v1/messages", {**body, **past}), field)
    assert "at most" in message or "{1,128}" in message  # a custom tool name: its pattern
    answered = _post(scripted_server, "/v1/messages", {**body, **at})
    # at the bound: answered (a server tool the scripted backend does not run is its own 400)
    assert answered.status_code == 200 or "web_search" in answered.text, answered.text


@pytest.mark.parametrize("case", sorted(COUNTABLE))
def test_count_tokens(scripted_server: LiveServer, case: str) -> None:
    field, past, at = CASES[case]
    body = {"model": SCRIPTED_MODEL, "messages": HI}
    _refused(_post(scripted_server, "/v1/messages/count_tokens", {**body, **past}), field)
    if "web_search" not in str(at):
        assert _post(scripted_server, "/v1/messages/count_tokens", {**body, **at}).status_code == 200


def test_batches_end_such_requests_errored(scripted_server: LiveServer) -> None:
    body = {"model": SCRIPTED_MODEL, "max_tokens": 5, "messages": HI}
    cases = ["stop_sequences count", "stop sequence length", "tools count", "tool_choice.name length"]
    requests = [{"custom_id": f"c{i}", "params": {**body, **CASES[case][1]}} for i, case in enumerate(cases)]
    requests.append({"custom_id": "fine", "params": {**body, **CASES["stop sequence length"][2]}})
    created = _post(scripted_server, "/v1/messages/batches", {"requests": requests})
    assert created.status_code == 200, created.text
    client = scripted_server.client()
    deadline = time.monotonic() + 60
    while client.messages.batches.retrieve(created.json()["id"]).processing_status != "ended":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    results = {r.custom_id: r.result for r in client.messages.batches.results(created.json()["id"])}
    assert results["fine"].type == "succeeded"
    for index, case in enumerate(cases):
        result = results[f"c{index}"]
        assert result.type == "errored", case
        error = result.error.error  # type: ignore[union-attr]
        assert error.type == "invalid_request_error" and error.message.startswith(CASES[case][0]), error


@pytest.mark.parametrize(
    ("field", "past", "at"),
    [
        ("stop", {"stop": [f"s{i}" for i in range(MAX_STOP_SEQUENCES + 1)]}, {"stop": ["s"] * 2}),
        ("stop", {"stop": "x" * (STOP_SEQUENCE_LENGTH + 1)}, {"stop": "x" * STOP_SEQUENCE_LENGTH}),
        (
            "tools",
            {"tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(MAX_TOOLS + 1)]},
            {"tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(MAX_TOOLS)]},
        ),
        (
            "tool_choice",
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "f" * (TOOL_NAME_LENGTH + 1)}},
            },
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "f"}},
            },
        ),
    ],
)
def test_chat_completions(
    scripted_server: LiveServer, field: str, past: dict[str, Any], at: dict[str, Any]
) -> None:
    body = {"model": SCRIPTED_MODEL, "messages": HI}
    headers = {"authorization": f"Bearer {scripted_server.key}"}
    url = scripted_server.base_url + "/v1/chat/completions"
    refused = httpx.post(url, headers=headers, json={**body, **past}, timeout=60)
    assert refused.status_code == 400, refused.text
    assert field in refused.json()["error"]["message"]
    answered = httpx.post(url, headers=headers, json={**body, **at}, timeout=60)
    assert answered.status_code == 200, answered.text


def test_batches_on_postgres(tmp_path: Path) -> None:
    """The batch stores each request's params until it runs: at the bounds they fit PostgreSQL too."""
    with postgres_database() as url:
        settings = scripted_settings(tmp_path, database_url=url)
        for server in serve(settings, backends={"scripted": ScriptedBackend()}):
            test_batches_end_such_requests_errored(server)
