"""Prompt caching on the embedded model: breakpoints, saved prefix states, and usage as Anthropic reports it.

The server caches prefixes of 32 tokens or more (``cache_min_tokens``) so the prompts stay short.
Every response's input side adds up to ``count_tokens`` for the same request.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EMBEDDED_MODEL, LiveServer, serve, settings_for
from wisegate.settings import BackendConfig

SYSTEM = (
    "You are the librarian of a small mountain village. You know every book on the shelves, who "
    "borrowed it last and what it is about. Answer briefly, in one sentence, and always politely. "
)
EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    options = {"n_ctx": 2048, "threads": 2, "cache_min_tokens": 32}
    settings = settings_for(
        Path(tmp_path_factory.mktemp("caching")),
        backends={"local": BackendConfig(type="local", options=options)},
    )
    yield from serve(settings)


def ask(server: LiveServer, **body: Any) -> Any:
    body.setdefault("max_tokens", 6)
    message = server.client().messages.create(model=EMBEDDED_MODEL, extra_body={"temperature": 0}, **body)
    counted = server.client().messages.count_tokens(
        model=EMBEDDED_MODEL, **{k: v for k, v in body.items() if k != "max_tokens"}
    )
    u = message.usage
    assert u.input_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens == counted.input_tokens
    assert u.cache_creation is not None
    assert (
        u.cache_creation.ephemeral_5m_input_tokens + u.cache_creation.ephemeral_1h_input_tokens
        == u.cache_creation_input_tokens
    )
    return message


def system(text: str, cache: dict[str, str] | None = EPHEMERAL) -> list[dict[str, Any]]:
    block: dict[str, Any] = {"type": "text", "text": text}
    if cache:
        block["cache_control"] = cache
    return [block]


def test_system_breakpoint_writes_then_reads_and_answers_the_same(server: LiveServer) -> None:
    sys_text = SYSTEM + "Today the library opens at nine."
    question = [{"role": "user", "content": "When does the library open?"}]
    plain = ask(server, system=system(sys_text, None), messages=question)
    assert plain.usage.cache_creation_input_tokens == 0 and plain.usage.cache_read_input_tokens == 0

    cold = ask(server, system=system(sys_text), messages=question)
    written = cold.usage.cache_creation_input_tokens
    assert written > 32 and cold.usage.cache_read_input_tokens == 0
    assert cold.usage.cache_creation.ephemeral_5m_input_tokens == written
    assert cold.usage.input_tokens == plain.usage.input_tokens - written

    warm = ask(server, system=system(sys_text), messages=question)
    assert warm.usage.cache_read_input_tokens == written
    assert warm.usage.cache_creation_input_tokens == 0
    assert warm.usage.input_tokens == cold.usage.input_tokens
    # The restored state is the same model state: greedy answers do not change.
    assert warm.content[0].text == cold.content[0].text == plain.content[0].text

    other = ask(server, system=system(sys_text), messages=[{"role": "user", "content": "Who are you?"}])
    assert other.usage.cache_read_input_tokens == written


def test_one_hour_and_five_minute_split(server: LiveServer) -> None:
    sys_text = SYSTEM + "The oldest book is a herbal from 1712."
    messages = [
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": "Here is the catalogue of new arrivals: a cookbook, an atlas, two novels.",
                    "cache_control": EPHEMERAL,
                },
                {"type": "text", "text": " Which one is the atlas?"},
            ],
        }
    ]
    first = ask(server, system=system(sys_text, HOUR), messages=messages)
    split = first.usage.cache_creation
    assert split.ephemeral_1h_input_tokens > 32 and split.ephemeral_5m_input_tokens > 5
    assert first.usage.cache_read_input_tokens == 0
    # The system prefix alone is stored too: a different message reads it back.
    again = ask(server, system=system(sys_text, HOUR), messages=[{"role": "user", "content": "Hello"}])
    assert again.usage.cache_read_input_tokens == split.ephemeral_1h_input_tokens
    both = ask(server, system=system(sys_text, HOUR), messages=messages)
    assert both.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert both.usage.cache_creation_input_tokens == 0


def test_conversation_reads_the_previous_turns_prefix(server: LiveServer) -> None:
    turn1: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": SYSTEM + "I would like to borrow a book about birds.",
                    "cache_control": EPHEMERAL,
                }
            ],
        }
    ]
    first = ask(server, messages=turn1)
    stored = first.usage.cache_creation_input_tokens
    assert stored > 32
    turn2 = [
        {"role": "user", "content": [{"type": "text", "text": turn1[0]["content"][0]["text"]}]},
        {"role": "assistant", "content": "We have two of them."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Which is the shorter one?", "cache_control": EPHEMERAL}],
        },
    ]
    second = ask(server, messages=turn2)
    assert second.usage.cache_read_input_tokens == stored
    assert second.usage.cache_creation_input_tokens > 0


def test_top_level_cache_control_caches_up_to_the_last_block(server: LiveServer) -> None:
    messages = [{"role": "user", "content": SYSTEM + "Please recommend a book for a rainy day."}]
    first = ask(server, messages=messages, cache_control=EPHEMERAL)
    total = first.usage.input_tokens + first.usage.cache_creation_input_tokens
    # Everything up to the end of the user's text is written; only the turn's closing and the
    # assistant opening stay uncached input.
    assert first.usage.cache_creation_input_tokens > 32 and 0 < first.usage.input_tokens < 8
    second = ask(server, messages=messages, cache_control=EPHEMERAL)
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.input_tokens + second.usage.cache_read_input_tokens == total


def test_tool_breakpoint(server: LiveServer) -> None:
    tool = {
        "name": "find_book",
        "description": "Find a book in the catalogue by title or author and tell where it stands.",
        "input_schema": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
        "cache_control": EPHEMERAL,
    }
    messages = [{"role": "user", "content": "Where is Moby Dick?"}]
    first = ask(server, tools=[tool], messages=messages, tool_choice={"type": "none"})
    assert first.usage.cache_creation_input_tokens > 32
    second = ask(
        server,
        tools=[tool],
        messages=[{"role": "user", "content": "Is Emma in?"}],
        tool_choice={"type": "none"},
    )
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens


def test_prefix_below_the_minimum_is_not_cached(server: LiveServer) -> None:
    message = ask(server, system=system("Be brief."), messages=[{"role": "user", "content": "Hi"}])
    assert message.usage.cache_creation_input_tokens == 0 and message.usage.cache_read_input_tokens == 0


def test_message_start_carries_the_cache_usage(server: LiveServer) -> None:
    sys_text = SYSTEM + "Streaming readers are welcome."
    with server.client().messages.stream(
        model=EMBEDDED_MODEL,
        max_tokens=4,
        system=system(sys_text),  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "Hello"}],
    ) as stream:
        start = next(event for event in stream if event.type == "message_start")
        for _ in stream:
            pass
        final = stream.get_final_message()
    assert start.message.usage.cache_creation_input_tokens == final.usage.cache_creation_input_tokens
    assert start.message.usage.input_tokens == final.usage.input_tokens
    assert final.usage.cache_creation_input_tokens + final.usage.cache_read_input_tokens > 32


def test_max_tokens_zero_writes_the_cache_and_generates_nothing(server: LiveServer) -> None:
    """SDK 2.10: "Set to 0 to populate the prompt cache without generating a response"."""
    sys_text = SYSTEM + "Today the library is closed for inventory."
    question = [{"role": "user", "content": "Is the library open?"}]
    warmed = ask(server, system=system(sys_text), messages=question, max_tokens=0)
    written = warmed.usage.cache_creation_input_tokens
    assert written > 32 and warmed.usage.cache_read_input_tokens == 0
    assert warmed.usage.output_tokens == 0
    assert warmed.stop_reason == "max_tokens"
    assert all(block.type == "text" and block.text == "" for block in warmed.content)
    answered = ask(server, system=system(sys_text), messages=question)
    assert (
        answered.usage.cache_read_input_tokens == written and answered.usage.cache_creation_input_tokens == 0
    )
    assert answered.usage.output_tokens > 0
