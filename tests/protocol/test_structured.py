"""The structured-outputs request shapes: ``output_format`` as an alias, and what reaches upstreams."""

from __future__ import annotations

import pydantic
import pytest

from wisegate.protocol.messages import MessagesRequest

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
BASE = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}


def test_output_format_becomes_output_config_format_and_serialises_as_the_wire_shape() -> None:
    request = MessagesRequest.model_validate(
        {
            **BASE,
            "output_format": {"type": "json_schema", "schema": SCHEMA},
            "output_config": {"effort": "low"},
        }
    )
    dumped = request.model_dump(mode="json", exclude_unset=True)
    assert dumped["output_config"] == {"effort": "low", "format": {"type": "json_schema", "schema": SCHEMA}}
    assert "output_format" not in dumped


def test_both_spellings_at_once_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="Both output_format and output_config.format"):
        MessagesRequest.model_validate(
            {
                **BASE,
                "output_format": {"type": "json_schema", "schema": SCHEMA},
                "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
            }
        )


def test_a_continue_may_send_only_tool_results() -> None:
    request = MessagesRequest.model_validate(
        {
            **BASE,
            "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]}],
            "tool_choice": {"type": "tool", "name": "from_the_thread"},
            "thread": {"type": "continue", "previous_message_id": "msg_1"},
        }
    )
    assert request.thread is not None and request.thread.type == "continue"
