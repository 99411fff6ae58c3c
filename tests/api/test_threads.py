"""Message threads (``thread`` on Messages) through the official SDK and raw HTTP, on the scripted backend."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx
import pytest
from anthropic import beta_tool

from tests.conftest import SCRIPTED_MODEL, LiveServer, make_key
from wisegate.domain.scope import Scope
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
from wisegate.protocol.messages import Message, ToolUseBlock, Usage, new_id

BETA = "message-threads-2026-08-12"


def post(server: LiveServer, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/messages",
        headers={"x-api-key": key or server.key, "anthropic-version": "2023-06-01", "anthropic-beta": BETA},
        json={"model": SCRIPTED_MODEL, "max_tokens": 50, **body},
        timeout=30,
    )


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def tool_call(name: str, arguments: dict[str, Any]) -> list[Any]:
    """The scripted events of a response that calls ``name``."""
    return [
        MessageStart(message=Message(id=new_id("msg"), model=SCRIPTED_MODEL, usage=Usage(input_tokens=5))),
        ContentBlockStart(index=0, content_block=ToolUseBlock(id=new_id("toolu"), name=name, input={})),
        ContentBlockDelta(index=0, delta=InputJsonDelta(partial_json=json.dumps(arguments))),
        ContentBlockStop(index=0),
        MessageDelta(
            delta=MessageDeltaBody(stop_reason="tool_use"), usage=MessageDeltaUsage(output_tokens=9)
        ),
        MessageStop(),
    ]


def test_continue_restores_the_stored_conversation(scripted_server: LiveServer) -> None:
    first = post(
        scripted_server,
        {"system": "Be brief.", "messages": [user("one two")], "thread": {"type": "create"}},
    )
    assert first.status_code == 200, first.text
    assert first.json()["content"][0]["text"] == "one two"
    second = post(
        scripted_server,
        {
            "messages": [user("three")],
            "thread": {"type": "continue", "previous_message_id": first.json()["id"]},
        },
    )
    assert second.status_code == 200, second.text
    seen = scripted_server.backend.calls[-1]
    assert seen.thread is None
    assert [m.role for m in seen.messages] == ["user", "assistant", "user"]
    assert seen.messages[1].blocks()[0].text == "one two"
    assert seen.system == "Be brief."
    again = post(
        scripted_server,
        {
            "messages": [user("four")],
            "thread": {"type": "continue", "previous_message_id": first.json()["id"]},
        },
    )
    assert again.status_code == 409
    assert again.json()["error"]["details"] == {"error_code": "thread_already_continued"}


def test_streamed_turns_are_stored_at_message_stop(scripted_server: LiveServer) -> None:
    client = scripted_server.client()
    with client.beta.messages.stream(
        model=SCRIPTED_MODEL,
        max_tokens=20,
        messages=[user("alpha beta")],
        thread={"type": "create"},
        betas=[BETA],
    ) as stream:
        first = stream.get_final_message()
    with client.beta.messages.stream(
        model=SCRIPTED_MODEL,
        max_tokens=20,
        messages=[user("gamma")],
        thread={"type": "continue", "previous_message_id": first.id},
        betas=[BETA],
    ) as stream:
        second = stream.get_final_message()
    assert second.content[0].text == "gamma"  # type: ignore[union-attr]
    assert len(scripted_server.backend.calls[-1].messages) == 3


def test_unknown_or_other_workspaces_ids_are_thread_not_found(scripted_server: LiveServer) -> None:
    first = post(scripted_server, {"messages": [user("mine")], "thread": {"type": "create"}})
    missing = post(
        scripted_server,
        {"messages": [user("x")], "thread": {"type": "continue", "previous_message_id": "msg_01nothing"}},
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["details"] == {"error_code": "thread_not_found"}
    other = scripted_server.run(_other_workspace_key(scripted_server))
    foreign = post(
        scripted_server,
        {"messages": [user("x")], "thread": {"type": "continue", "previous_message_id": first.json()["id"]}},
        key=other,
    )
    assert foreign.status_code == 404
    assert foreign.json()["error"]["details"] == {"error_code": "thread_not_found"}


async def _other_workspace_key(server: LiveServer) -> str:
    keys, tenancy = server.services.keys, server.services.tenancy
    org = await keys.bootstrap()
    view = await tenancy.create_workspace(Scope(org.id, None), "threads-" + new_id("w")[-6:])
    _, secret = await keys.create_key(view.workspace.id, "other", admin=False)
    return secret


def test_a_changed_system_prompt_is_a_fingerprint_mismatch(scripted_server: LiveServer) -> None:
    first = post(scripted_server, {"system": "A", "messages": [user("hi")], "thread": {"type": "create"}})
    changed = post(
        scripted_server,
        {
            "system": "B",
            "messages": [user("again")],
            "thread": {"type": "continue", "previous_message_id": first.json()["id"]},
        },
    )
    assert changed.status_code == 400
    assert changed.json()["error"]["details"] == {"error_code": "thread_fingerprint_mismatch"}
    # The refused continue gave its claim back: the response can still be continued.
    same = post(
        scripted_server,
        {
            "system": "A",
            "messages": [user("again")],
            "thread": {"type": "continue", "previous_message_id": first.json()["id"]},
        },
    )
    assert same.status_code == 200, same.text


def test_context_management_is_thread_unsupported_request(scripted_server: LiveServer) -> None:
    refused = post(
        scripted_server,
        {
            "messages": [user("hi")],
            "thread": {"type": "create"},
            "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        },
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["details"] == {
        "error_code": "thread_unsupported_request",
        "unsupported": ["context_management"],
    }


def test_threads_are_refused_in_batches(scripted_server: LiveServer) -> None:
    """``params`` are checked when a batch request runs: a thread there is an errored result."""
    client = scripted_server.client()
    batch = client.messages.batches.create(
        requests=[
            {
                "custom_id": "t",
                "params": {
                    "model": SCRIPTED_MODEL,
                    "max_tokens": 5,
                    "messages": [user("x")],
                    "thread": {"type": "create"},  # type: ignore[typeddict-unknown-key]
                },
            }
        ]
    )
    deadline = time.monotonic() + 60
    while client.messages.batches.retrieve(batch.id).processing_status != "ended":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    [result] = list(client.messages.batches.results(batch.id))
    assert result.result.type == "errored"
    assert result.result.error.error.type == "invalid_request_error"  # type: ignore[union-attr]
    assert result.result.error.error.message == "thread: batch requests cannot use a thread"  # type: ignore[union-attr]


@beta_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


@beta_tool
def get_time(timezone: str) -> str:
    """The local time in a timezone."""
    return f"12:00 in {timezone}"


def test_tool_runner_with_default_settings_finishes_a_two_tool_conversation(
    scripted_server: LiveServer,
) -> None:
    backend = scripted_server.backend
    backend.enqueue(events=tool_call("get_weather", {"city": "Rome"}))
    backend.enqueue(events=tool_call("get_time", {"timezone": "Europe/Rome"}))
    backend.enqueue("Sunny and noon in Rome")
    before = len(backend.calls)
    runner = scripted_server.client().beta.messages.tool_runner(
        model=SCRIPTED_MODEL,
        max_tokens=100,
        system="Use the tools.",
        messages=[user("Weather and time in Rome?")],
        tools=[get_weather, get_time],
    )
    final = runner.until_done()
    assert final.stop_reason == "end_turn"
    assert final.content[0].text == "Sunny and noon in Rome"  # type: ignore[union-attr]
    calls = backend.calls[before:]
    assert len(calls) == 3
    # Turns after the first were continued from the server-held state: the backend saw everything.
    last = calls[-1].messages
    assert [m.role for m in last] == ["user", "assistant", "user", "assistant", "user"]
    results = [b for m in last for b in m.blocks() if getattr(b, "type", "") == "tool_result"]
    assert [r.content[0].text if isinstance(r.content, list) else r.content for r in results] == [
        "Sunny in Rome",
        "12:00 in Europe/Rome",
    ]


def test_archiving_a_workspace_deletes_its_threads(scripted_server: LiveServer) -> None:
    other = scripted_server.run(_other_workspace_key(scripted_server))
    created = post(scripted_server, {"messages": [user("keep me")], "thread": {"type": "create"}}, key=other)
    assert created.status_code == 200
    principal = scripted_server.run(scripted_server.services.keys.authenticate(other))
    repo = scripted_server.services.threads._repo
    assert scripted_server.run(repo.count(principal.workspace_id)) == 1
    admin = make_key(scripted_server.settings, admin=True)
    archived = httpx.post(
        f"{scripted_server.base_url}/v1/organizations/workspaces/{principal.workspace_id}/archive",
        headers={"x-api-key": admin, "anthropic-version": "2023-06-01"},
    )
    assert archived.status_code == 200, archived.text
    assert scripted_server.run(repo.count(principal.workspace_id)) == 0


def test_thread_content_stays_out_of_the_logs(
    scripted_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    secret = "zebra-crossing-7431"
    first = post(scripted_server, {"messages": [user(secret)], "thread": {"type": "create"}})
    post(
        scripted_server,
        {
            "messages": [user(secret)],
            "thread": {"type": "continue", "previous_message_id": first.json()["id"]},
        },
    )
    stored = [r for r in caplog.records if r.getMessage() == "thread turn stored"]
    assert len(stored) == 2 and stored[0].thread_message_id == first.json()["id"]  # type: ignore[attr-defined]
    assert all(secret not in json.dumps(r.__dict__, default=str) for r in caplog.records)
