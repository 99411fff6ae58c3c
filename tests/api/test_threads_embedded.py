"""Threads on the embedded model: the SDK's tool runner with default settings, and the prompt cache
across a thread's turns."""

from __future__ import annotations

from anthropic import beta_tool

from tests.conftest import EMBEDDED_MODEL, LiveServer

BETA = "message-threads-2026-08-12"


@beta_tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"Sunny, 21 degrees in {city}"


@beta_tool
def get_time(timezone: str) -> str:
    """Get the local time in a timezone."""
    return f"12:00 in {timezone}"


def test_tool_runner_with_default_settings_finishes_a_two_tool_conversation(
    embedded_server: LiveServer,
) -> None:
    # A 135M model rarely opens a tool call on its own, so each turn says which tool to call
    # (tool_choice may change between a thread's turns); the runner runs with its defaults: threaded.
    choices: list[dict[str, str]] = [
        {"type": "tool", "name": "get_weather"},
        {"type": "tool", "name": "get_time"},
        {"type": "none"},
    ]
    runner = embedded_server.client().beta.messages.tool_runner(
        model=EMBEDDED_MODEL,
        max_tokens=40,
        extra_body={"temperature": 0},
        messages=[{"role": "user", "content": "What are the weather and the time in Rome?"}],
        tools=[get_weather, get_time],
        tool_choice=choices[0],  # type: ignore[arg-type]
    )
    replies = []
    for reply in runner:
        replies.append(reply)
        assert len(replies) <= 3
        if len(replies) < 3:
            runner.set_messages_params(lambda params: {**params, "tool_choice": choices[len(replies)]})  # type: ignore[typeddict-item]
    assert [r.stop_reason for r in replies[:2]] == ["tool_use", "tool_use"]
    assert [r.content[-1].name for r in replies[:2]] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert replies[-1].stop_reason in ("end_turn", "max_tokens")
    assert all(block.type == "text" for block in replies[-1].content)
    # The second and third turns continued the thread: the server stored three turns.
    assert embedded_server.run(_stored_turns(embedded_server)) >= 3


async def _stored_turns(server: LiveServer) -> int:
    principal = await server.services.keys.authenticate(server.key)
    return await server.services.threads._repo.count(principal.workspace_id)


def test_the_prompt_cache_keeps_working_across_a_threads_turns(embedded_server: LiveServer) -> None:
    client = embedded_server.client()
    long_text = " ".join(
        f"Fact {i}: the number {i} is {'even' if i % 2 == 0 else 'odd'}." for i in range(160)
    )
    first = client.beta.messages.create(
        model=EMBEDDED_MODEL,
        max_tokens=1,
        cache_control={"type": "ephemeral"},
        messages=[{"role": "user", "content": long_text}],
        thread={"type": "create"},
        betas=[BETA],
    )
    assert first.usage.cache_creation_input_tokens and first.usage.cache_creation_input_tokens > 1024
    second = client.beta.messages.create(
        model=EMBEDDED_MODEL,
        max_tokens=1,
        cache_control={"type": "ephemeral"},
        messages=[{"role": "user", "content": "Is 7 odd?"}],
        thread={"type": "continue", "previous_message_id": first.id},
        betas=[BETA],
    )
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
