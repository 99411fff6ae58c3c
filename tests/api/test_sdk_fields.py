"""The SDK 2.10 beta fields on the scripted backend, through the official SDK and raw HTTP: compaction,
fallbacks (refusal and overload), block binding, billing policy and fallback credit tokens."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import LiveServer, make_key, postgres_database, serve, settings_for
from wisegate.backends.scripted import ScriptedBackend
from wisegate.domain.compaction import SUMMARY_MAX_TOKENS, SUMMARY_TASK
from wisegate.errors import Overloaded
from wisegate.protocol.events import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    MessageDelta,
    MessageDeltaBody,
    MessageDeltaUsage,
    MessageStart,
    MessageStop,
    TextDelta,
)
from wisegate.protocol.messages import MAX_FALLBACKS, Message, TextBlock, Usage, new_id
from wisegate.settings import BackendConfig, ModelConfig

PRIMARY = "scripted-1"
BACKUP = "backup-1"
BUSY = "busy-1"


def fields_server(data_dir: Path, **overrides: Any) -> Iterator[LiveServer]:
    settings = settings_for(
        data_dir,
        backends={"scripted": BackendConfig(type="scripted"), "backup": BackendConfig(type="scripted")},
        models=[
            ModelConfig(id=PRIMARY, backend="scripted", aliases=["claude-*"], fallbacks=[BACKUP]),
            ModelConfig(id=BACKUP, backend="backup", aliases=["backup-latest"], max_output_tokens=64),
            ModelConfig(id=BUSY, backend="scripted", fallbacks=["backup-latest"], fallback_on_overload=True),
        ],
        **overrides,
    )
    yield from serve(settings, backends={"scripted": ScriptedBackend(), "backup": ScriptedBackend("backup")})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from fields_server(tmp_path_factory.mktemp("fields"))


def backup(server: LiveServer) -> ScriptedBackend:
    found = server.services.registry.backends["backup"]
    assert isinstance(found, ScriptedBackend)
    return found


def refusal(model: str, text: str, *, input_tokens: int = 4, category: str | None = "cyber") -> list[Any]:
    """A scripted answer that starts with ``text`` and then declines."""
    return [
        MessageStart(message=Message(id=new_id("msg"), model=model, usage=Usage(input_tokens=input_tokens))),
        ContentBlockStart(index=0, content_block=TextBlock(text="")),
        ContentBlockDelta(index=0, delta=TextDelta(text=text)),
        ContentBlockStop(index=0),
        MessageDelta(
            delta=MessageDeltaBody(
                stop_reason="refusal", stop_details={"type": "refusal", "category": category}
            ),
            usage=MessageDeltaUsage(output_tokens=len(text.split()), input_tokens=input_tokens),
        ),
        MessageStop(),
    ]


def post(server: LiveServer, body: dict[str, Any], path: str = "/v1/messages") -> httpx.Response:
    return httpx.post(
        f"{server.base_url}{path}",
        headers={"x-api-key": server.key, "anthropic-version": "2023-06-01"},
        json=body,
        timeout=30,
    )


def usage_record(server: LiveServer, request_id: str) -> Any:
    deadline = time.monotonic() + 10
    while True:
        record = server.run(server.services.usage.for_request(request_id))
        if record is not None or time.monotonic() > deadline:
            return record
        time.sleep(0.05)


def hello(text: str = "Hello there") -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def test_every_beta_field_is_accepted(server: LiveServer) -> None:
    message = server.client().beta.messages.create(
        model="claude-opus-5-5",
        max_tokens=64,
        messages=[
            {
                "role": "assistant",
                "content": [
                    {"type": "compaction", "content": "We talked about tea.", "encrypted_content": "opaque"},
                    {"type": "fallback", "from": {"model": "a"}, "to": {"model": "b"}, "trigger": None},
                ],
            },
            {"role": "user", "content": "Hello, world"},
        ],
        billing_policy={"type": "billing_policy", "bill_to": "self"},
        fallbacks=[
            {"model": BACKUP, "max_tokens": 32, "speed": "standard", "thinking": {"type": "disabled"}},
        ],
        thinking={
            "type": "adaptive",
            "block_binding": {"prefix_mismatch_behavior": "drop_block"},
            "display": "updates",
        },
        output_config={"effort": "low", "task_budget": {"type": "tokens", "total": 1024, "remaining": 10}},
        diagnostics={"previous_message_id": "msg_x"},
        speed="standard",
        inference_geo="global",
        user_profile_id="uprof_1",
        betas=["server-side-fallback-2026-07-01"],
    )
    assert message.model == PRIMARY and message.stop_reason == "end_turn"
    seen = server.backend.calls[-1]
    # The summary stands in for what it replaced; the fallback marker is not part of the prompt.
    assert [m.role for m in seen.messages] == ["user", "user"]
    assert "We talked about tea." in seen.messages[0].blocks()[0].text
    assert seen.thinking.block_binding.prefix_mismatch_behavior == "drop_block"


def test_count_tokens_accepts_the_beta_fields_and_ignores_compaction(server: LiveServer) -> None:
    client = server.client()
    base = client.beta.messages.count_tokens(model=PRIMARY, messages=hello("one two three"))
    counted = client.beta.messages.count_tokens(
        model=PRIMARY,
        messages=hello("one two three"),
        compaction={"type": "summarize", "instructions": "Be short."},
        billing_policy={"type": "billing_policy", "bill_to": "self"},
        thinking={"type": "enabled", "budget_tokens": 2048, "block_binding": {}},
    )
    assert counted.input_tokens == base.input_tokens == 3


def test_billing_policy_other_than_self_is_refused(server: LiveServer) -> None:
    body: dict[str, Any] = {
        "model": PRIMARY,
        "messages": hello(),
        "billing_policy": {"type": "billing_policy", "bill_to": "user_profile"},
    }
    for path, extra in (("/v1/messages", {"max_tokens": 10}), ("/v1/messages/count_tokens", {})):
        answer = post(server, {**body, **extra}, path)
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert 'billing_policy.bill_to: "user_profile" is not available' in error["message"]


def test_fallback_credit_token_strict_is_refused_and_best_effort_is_served(server: LiveServer) -> None:
    client = server.client()
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.beta.messages.create(
            model=PRIMARY, max_tokens=10, messages=hello(), fallback_credit_token="tok_1"
        )
    assert "fallback_credit_token: this token cannot be redeemed" in str(refused.value)
    message = client.beta.messages.create(
        model=PRIMARY,
        max_tokens=10,
        messages=hello("still served"),
        fallback_credit_token={"token": "tok_1", "mode": "best_effort"},
    )
    assert message.content[0].text == "still served"  # type: ignore[union-attr]
    assert message.usage.fallback_credit is not None
    status = message.usage.fallback_credit.status
    assert status.type == "not_applied" and status.reason == "not_enabled"  # type: ignore[union-attr]
    with pytest.raises(anthropic.BadRequestError, match="cannot be combined with fallbacks"):
        client.beta.messages.create(
            model=PRIMARY, max_tokens=10, messages=hello(), fallback_credit_token="t", fallbacks="default"
        )


def test_compaction_cannot_be_combined_with_context_management(server: LiveServer) -> None:
    answer = post(
        server,
        {
            "model": PRIMARY,
            "max_tokens": 10,
            "messages": hello(),
            "compaction": {"type": "summarize"},
            "context_management": {"edits": []},
        },
    )
    assert answer.status_code == 400
    assert "compaction: cannot be combined with context_management" in answer.json()["error"]["message"]


def test_compaction_answers_with_one_compaction_block(server: LiveServer) -> None:
    server.backend.enqueue(text="Ann asked about tea.")
    client = server.client()
    response = client.beta.messages.with_raw_response.create(
        model=PRIMARY,
        max_tokens=50,
        messages=[
            {"role": "user", "content": "I am Ann."},
            {"role": "assistant", "content": "Hi Ann."},
            {"role": "user", "content": "Tell me about tea."},
        ],
        compaction={"type": "summarize"},
    )
    message = response.parse()
    assert message.stop_reason == "compaction"
    assert [b.type for b in message.content] == ["compaction"]
    assert message.content[0].content == "Ann asked about tea."  # type: ignore[union-attr]
    # The model was asked for a summary of a transcript, nothing else.
    seen = server.backend.calls[-1]
    assert seen.compaction is None and seen.tools is None and len(seen.messages) == 1
    prompt = seen.messages[0].blocks()[0].text
    assert prompt.startswith("User: I am Ann.\n\nAssistant: Hi Ann.\n\nUser: Tell me about tea.")
    # Usage is the summarization call's, also listed as the compaction iteration.
    words = len(prompt.split()) + len(str(seen.system).split())
    assert message.usage.input_tokens == words and message.usage.output_tokens == 4
    assert message.usage.iterations is not None
    (iteration,) = message.usage.iterations
    assert iteration.type == "compaction" and iteration.input_tokens == words
    record = usage_record(server, response.headers["request-id"])
    assert (record.input_tokens, record.output_tokens, record.model) == (words, 4, PRIMARY)

    # Sent back first, the block replaces the turns it summarized.
    client.beta.messages.create(
        model=PRIMARY,
        max_tokens=20,
        messages=[
            {"role": "assistant", "content": [message.content[0].to_dict()]},  # type: ignore[list-item]
            {"role": "user", "content": "And coffee?"},
        ],
    )
    follow = server.backend.calls[-1]
    assert [b.text for m in follow.messages for b in m.blocks()] == [  # type: ignore[union-attr]
        "Summary of our conversation so far:\nAnn asked about tea.",
        "And coffee?",
    ]


def test_a_refusal_to_summarize_is_a_failed_compaction(server: LiveServer) -> None:
    server.backend.enqueue(events=refusal(PRIMARY, "I will not summarize this"))
    message = server.client().beta.messages.create(
        model=PRIMARY, max_tokens=50, messages=hello("Some chat."), compaction={"type": "summarize"}
    )
    assert message.stop_reason == "compaction"
    assert [b.type for b in message.content] == ["compaction"]
    assert message.content[0].content is None  # type: ignore[union-attr]
    assert message.usage.output_tokens == 5  # the declining model's output is still billed
    # Sent back, the failed block changes nothing.
    server.client().beta.messages.create(
        model=PRIMARY,
        max_tokens=20,
        messages=[
            {"role": "user", "content": "Some chat."},
            {"role": "assistant", "content": [message.content[0].to_dict()]},  # type: ignore[list-item]
            {"role": "user", "content": "Go on."},
        ],
    )
    follow = server.backend.calls[-1]
    assert [b.text for m in follow.messages for b in m.blocks()] == ["Some chat.", "Go on."]  # type: ignore[union-attr]


def test_compaction_streams_as_the_claude_api_does(server: LiveServer) -> None:
    server.backend.enqueue(text="A short summary.")
    client = server.client()
    with client.beta.messages.stream(
        model=PRIMARY, max_tokens=50, messages=hello("Long chat."), compaction={"type": "summarize"}
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert final.stop_reason == "compaction"
    assert final.content[0].type == "compaction" and final.content[0].content == "A short summary."
    assert "compaction" in events  # the SDK's own event for a compaction_delta
    raw = httpx.post(
        f"{server.base_url}/v1/messages",
        headers={"x-api-key": server.key, "anthropic-version": "2023-06-01"},
        json={
            "model": PRIMARY,
            "max_tokens": 9,
            "stream": True,
            "messages": hello("x y"),
            "compaction": {"type": "summarize"},
        },
        timeout=30,
    )
    names = [line[7:] for line in raw.text.splitlines() if line.startswith("event: ")]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert '"content_block":{"type":"compaction","content":null,"encrypted_content":null}' in raw.text


def test_a_looping_summary_ends_before_its_first_repeat(server: LiveServer) -> None:
    """A model that repeats itself is stopped there: the summary keeps each sentence once and usage is
    what was generated until the repeat was seen (SmolLM2 wrote one sentence over and over)."""
    loop = "Maria lives in Lisbon. She visits Japan in April. Maria lives in Lisbon. " * 20
    for streamed in (False, True):
        server.backend.enqueue(text=loop.strip())
        response = httpx.post(
            f"{server.base_url}/v1/messages",
            headers={"x-api-key": server.key},
            json={"model": PRIMARY, "max_tokens": 200, "stream": streamed, "messages": hello("A chat."),
                  "compaction": {"type": "summarize"}},
            timeout=30,
        )  # fmt: skip
        assert response.status_code == 200
        if streamed:
            names = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
            assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
            final = json.loads(response.text.split("event: message_delta\ndata: ")[1].split("\n")[0])
            usage = final["usage"]
            (delta,) = [line for line in response.text.splitlines() if '"compaction_delta"' in line]
            summary = json.loads(delta.removeprefix("data: "))["delta"]["content"]
            assert final["delta"]["stop_reason"] == "compaction"
        else:
            message = response.json()
            assert message["stop_reason"] == "compaction"
            summary, usage = message["content"][0]["content"], message["usage"]
        assert summary == "Maria lives in Lisbon. She visits Japan in April."
        # one token per word: stopped at the 13th word, the repeat's last, not at the 200 it could write
        assert usage["output_tokens"] == 13
        assert usage["iterations"][0]["output_tokens"] == 13
        assert usage_record(server, response.headers["request-id"]).output_tokens == 13


def test_summaries_are_greedy_notes_of_bounded_length(server: LiveServer) -> None:
    server.backend.enqueue(text="Notes.")
    server.client().beta.messages.create(
        model=PRIMARY, max_tokens=4000, messages=hello("A chat."), compaction={"type": "summarize"}
    )
    seen = server.backend.calls[-1]
    assert seen.temperature == 0 and seen.max_tokens == SUMMARY_MAX_TOKENS
    assert seen.messages[0].blocks()[0].text.endswith(SUMMARY_TASK)  # type: ignore[union-attr]
    server.backend.enqueue(text="Notes.")
    server.client().beta.messages.create(
        model=PRIMARY,
        max_tokens=30,
        extra_body={"temperature": 0.7},  # the 2.10 beta create has no temperature parameter
        messages=hello("A chat."),
        compaction={"type": "summarize"},
    )
    seen = server.backend.calls[-1]
    assert seen.temperature == 0.7 and seen.max_tokens == 30  # the request's own sampling wins


def test_refusal_falls_back_to_the_next_model(server: LiveServer) -> None:
    check_refusal_falls_back(server)


@pytest.mark.postgres
def test_fallback_and_compaction_usage_on_postgres(tmp_path: Path) -> None:
    with postgres_database() as url:
        for server in fields_server(tmp_path, database_url=url):
            check_refusal_falls_back(server)
            server.backend.enqueue(text="Short summary here.")
            response = server.client().beta.messages.with_raw_response.create(
                model=PRIMARY, max_tokens=9, messages=hello("a b c"), compaction={"type": "summarize"}
            )
            message = response.parse()
            record = usage_record(server, response.headers["request-id"])
            assert (record.input_tokens, record.output_tokens) == (
                message.usage.input_tokens,
                message.usage.output_tokens,
            )
            assert record.stop_reason == "compaction" and message.usage.output_tokens == 3


def check_refusal_falls_back(server: LiveServer) -> None:
    server.backend.enqueue(events=refusal(PRIMARY, "I can not"))
    backup(server).enqueue(text="Here you go")
    client = server.client()
    response = client.beta.messages.with_raw_response.create(
        model="claude-opus-5-5",
        max_tokens=20,
        messages=hello(),
        fallbacks=[{"model": "backup-latest", "max_tokens": 7}],
    )
    message = response.parse()
    assert message.model == BACKUP
    assert [b.type for b in message.content] == ["text", "fallback", "text"]
    marker = message.content[1]
    assert marker.type == "fallback"
    assert (marker.from_.model, marker.to.model, marker.trigger.category) == (
        "claude-opus-5-5",
        BACKUP,
        "cyber",
    )
    assert message.content[2].text == "Here you go"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert backup(server).calls[-1].max_tokens == 7 and backup(server).calls[-1].fallbacks is None
    usage = message.usage
    assert usage.iterations is not None
    assert [(i.type, i.model) for i in usage.iterations] == [  # type: ignore[union-attr]
        ("message", "claude-opus-5-5"),
        ("fallback_message", BACKUP),
    ]
    assert usage.input_tokens == 4 + 2 and usage.output_tokens == 3 + 3
    # Each model's usage is recorded under its own id.
    request_id = response.headers["request-id"]
    first, second = usage_record(server, request_id), usage_record(server, f"{request_id}_fb1")
    assert (first.model, first.output_tokens) == (PRIMARY, 3)
    assert (second.model, second.output_tokens, second.input_tokens) == (BACKUP, 3, 2)


def test_default_fallbacks_stream_with_the_fallback_block(server: LiveServer) -> None:
    server.backend.enqueue(events=refusal(PRIMARY, "No", category=None))
    backup(server).enqueue(text="Yes indeed")
    with server.client().beta.messages.stream(
        model=PRIMARY, max_tokens=20, messages=hello(), fallbacks="default"
    ) as stream:
        final = stream.get_final_message()
    assert final.model == BACKUP
    assert [b.type for b in final.content] == ["text", "fallback", "text"]
    assert final.content[2].text == "Yes indeed"  # type: ignore[union-attr]
    assert final.usage.iterations is not None and final.usage.iterations[-1].type == "fallback_message"


def test_without_fallbacks_a_refusal_stays_a_refusal(server: LiveServer) -> None:
    server.backend.enqueue(events=refusal(PRIMARY, "No"))
    message = server.client().beta.messages.create(model=PRIMARY, max_tokens=20, messages=hello())
    assert message.stop_reason == "refusal" and message.model == PRIMARY
    assert message.stop_details is not None and message.stop_details.category == "cyber"


def test_unknown_fallback_model_is_a_400(server: LiveServer) -> None:
    answer = post(
        server, {"model": PRIMARY, "max_tokens": 5, "messages": hello(), "fallbacks": [{"model": "nope"}]}
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "fallbacks.0.model: nope"
    bad = post(
        server,
        {"model": PRIMARY, "max_tokens": 5, "messages": hello(), "fallbacks": [{"model": "x", "top_k": 1}]},
    )
    assert bad.status_code == 400 and "fallbacks" in bad.json()["error"]["message"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {
                "model": BACKUP,
                "output_config": {
                    "format": {"type": "json_schema", "schema": {"type": "number", "maximum": 3}}
                },
            },
            "fallbacks.1.output_config.format.schema: For 'number' type, property 'maximum' is not supported",
        ),
        (
            {"model": BACKUP, "thinking": {"type": "enabled", "budget_tokens": 2048}},
            "fallbacks.1: `max_tokens` must be greater than `thinking.budget_tokens`",
        ),
        (
            {"model": BACKUP, "max_tokens": 0},
            "fallbacks.1.max_tokens: Input should be greater than or equal to 1",
        ),
    ],
    ids=["output_config", "thinking", "max_tokens"],
)
def test_every_fallback_entry_is_checked_before_any_model_runs(
    server: LiveServer, entry: dict[str, Any], message: str
) -> None:
    calls = len(server.backend.calls), len(backup(server).calls)
    answer = post(
        server,
        {"model": PRIMARY, "max_tokens": 20, "messages": hello(), "fallbacks": [{"model": BACKUP}, entry]},
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"].startswith(message)
    assert "pydantic" not in error["message"] and "validation error" not in error["message"]
    assert (len(server.backend.calls), len(backup(server).calls)) == calls  # nothing ran


def test_each_fallback_entry_overrides_the_original_request(server: LiveServer) -> None:
    server.backend.enqueue(events=refusal(PRIMARY, "No"))
    backup(server).enqueue(events=refusal(BACKUP, "Nor I"))
    backup(server).enqueue(text="Fine")
    message = server.client().beta.messages.create(
        model=PRIMARY,
        max_tokens=20,
        messages=hello(),
        fallbacks=[{"model": BACKUP, "max_tokens": 7}, {"model": "backup-latest"}],
    )
    assert message.content[-1].text == "Fine"  # type: ignore[union-attr]
    # The second entry leaves max_tokens out: the request's, not the first entry's.
    assert [c.max_tokens for c in backup(server).calls[-2:]] == [7, 20]


def test_max_tokens_past_a_fallbacks_limit(server: LiveServer) -> None:
    named = post(
        server,
        {"model": PRIMARY, "max_tokens": 100, "messages": hello(), "fallbacks": [{"model": BACKUP}]},
    )
    assert named.status_code == 400
    assert named.json()["error"]["message"] == (
        f"fallbacks.0.max_tokens: 100 > 64, which is the maximum allowed number of output tokens for {BACKUP}"
    )
    # "default" is the server's choice: the fallback runs within its own limit.
    server.backend.enqueue(events=refusal(PRIMARY, "No"))
    backup(server).enqueue(text="Within limits")
    message = server.client().beta.messages.create(
        model=PRIMARY, max_tokens=100, messages=hello(), fallbacks="default"
    )
    assert message.content[-1].text == "Within limits"  # type: ignore[union-attr]
    assert backup(server).calls[-1].max_tokens == 64


def test_a_default_fallback_the_key_may_not_use_is_a_404_that_does_not_name_it(server: LiveServer) -> None:
    admin = make_key(server.settings, admin=True)
    created = httpx.post(
        f"{server.base_url}/v1/organizations/workspaces",
        headers={"x-api-key": admin},
        json={"name": "primary only", "allowed_models": [PRIMARY]},
    )
    assert created.status_code == 200, created.text
    key = make_key(server.settings, workspace=created.json()["id"])
    calls = len(server.backend.calls)
    client = server.client(api_key=key)
    with pytest.raises(anthropic.NotFoundError) as hidden:
        client.beta.messages.create(model=PRIMARY, max_tokens=5, messages=hello(), fallbacks="default")
    error = hidden.value.body["error"]  # type: ignore[index]
    assert error["type"] == "not_found_error" and "backup" not in error["message"]
    assert error["message"].startswith(
        'fallbacks: "default": a fallback model of scripted-1 is not available'
    )
    assert len(server.backend.calls) == calls  # checked before the first model ran
    with pytest.raises(anthropic.BadRequestError) as named:
        client.beta.messages.create(
            model=PRIMARY, max_tokens=5, messages=hello(), fallbacks=[{"model": BACKUP}]
        )
    assert named.value.body["error"]["message"] == f"fallbacks.0.model: {BACKUP}"  # type: ignore[index]
    assert client.beta.messages.create(model=PRIMARY, max_tokens=5, messages=hello()).model == PRIMARY


def test_a_long_fallbacks_list_is_a_400_before_anything_runs(server: LiveServer) -> None:
    entries = [{"model": BACKUP}] * (MAX_FALLBACKS + 1)
    answer = post(server, {"model": PRIMARY, "max_tokens": 5, "messages": hello(), "fallbacks": entries})
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith("fallbacks")
    assert str(MAX_FALLBACKS) in answer.json()["error"]["message"]


def test_overload_falls_back_where_configured(server: LiveServer) -> None:
    server.backend.enqueue(error=Overloaded("Overloaded"))
    backup(server).enqueue(text="Backup answered")
    message = server.client().beta.messages.create(
        model=BUSY, max_tokens=20, messages=hello(), fallbacks="default"
    )
    assert message.model == BACKUP and message.content[0].text == "Backup answered"  # type: ignore[union-attr]
    assert [b.type for b in message.content] == ["text"]  # no model ran and declined: no fallback block
    assert message.usage.iterations is not None
    assert [(i.type, i.model) for i in message.usage.iterations] == [("fallback_message", BACKUP)]  # type: ignore[union-attr]
    # Not configured for PRIMARY: the 529 reaches the client.
    server.backend.enqueue(error=Overloaded("Overloaded"))
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        server.client().beta.messages.create(
            model=PRIMARY, max_tokens=20, messages=hello(), fallbacks="default"
        )
    assert overloaded.value.status_code == 529


def test_batch_params_accept_the_beta_fields(server: LiveServer) -> None:
    params: dict[str, Any] = {
        "model": PRIMARY,
        "max_tokens": 10,
        "messages": hello(),
        "billing_policy": {"type": "billing_policy", "bill_to": "self"},
        "fallbacks": "default",
        "thinking": {"type": "adaptive", "block_binding": {"prefix_mismatch_behavior": "error"}},
    }
    batch = server.client().beta.messages.batches.create(
        requests=[
            {"custom_id": "a", "params": params},  # type: ignore[typeddict-item]
            {"custom_id": "b", "params": {**params, "compaction": {"type": "summarize"}}},  # type: ignore[typeddict-item]
        ]
    )
    assert batch.request_counts.processing == 2


def test_workspace_fields_of_the_sdk_are_understood(server: LiveServer) -> None:
    admin = server.client(api_key=make_key(server.settings, admin=True))
    created = admin.organization.workspaces.create(
        name="Fields", data_residency={"workspace_geo": "us"}, external_key_id=None, user_profile_id=None
    )
    updated = admin.organization.workspaces.update(
        workspace_id=created.id, name="Fields 2", data_residency={"allowed_inference_geos": "unrestricted"}
    )
    assert updated.name == "Fields 2"
    with pytest.raises(anthropic.BadRequestError, match="external_key_id: customer-managed encryption keys"):
        admin.organization.workspaces.create(name="Keyed", external_key_id="ekey_01")
    with pytest.raises(anthropic.BadRequestError, match="user_profile_id: user profiles are not available"):
        admin.organization.workspaces.update(workspace_id=created.id, user_profile_id="uprof_01")
