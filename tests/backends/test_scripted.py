"""The scripted backend's documented ``call <tool> <json>`` convention, through the official SDK.

The lines are read from docs/configuration.md ("The scripted backend"), so the example there runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.conftest import SCRIPTED_MODEL, LiveServer

DOCS = Path(__file__).parents[2] / "docs" / "configuration.md"


def _documented_lines() -> list[str]:
    section = DOCS.read_text().split("### The scripted backend", 1)[1]
    block = re.search(r"```text\n(.*?)```", section, re.S)
    assert block is not None, "the call example is missing from docs/configuration.md"
    lines = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) >= 2 and all(line.startswith("call ") for line in lines)
    return lines


def test_call_lines_are_answered_one_tool_call_at_a_time(scripted_server: LiveServer) -> None:
    lines = _documented_lines()
    client = scripted_server.client()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "\n".join(["Please:", *lines])}]
    for number, line in enumerate(lines):
        _, name, given = line.split(" ", 2)
        message = client.messages.create(model=SCRIPTED_MODEL, max_tokens=50, messages=messages)  # type: ignore[arg-type]
        assert message.stop_reason == "tool_use"
        (call,) = message.content
        assert call.type == "tool_use" and call.name == name and call.input == json.loads(given)
        messages += [
            {"role": "assistant", "content": [call.to_dict()]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": f"r{number}"}],
            },
        ]
    final = client.messages.create(model=SCRIPTED_MODEL, max_tokens=50, messages=messages)  # type: ignore[arg-type]
    assert final.stop_reason == "end_turn"
    assert final.content[0].type == "text" and final.content[0].text == f"r{len(lines) - 1}"
