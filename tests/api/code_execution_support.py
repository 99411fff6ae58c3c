"""Helpers for the code execution tests: a scripted server with a sandbox, and calls through the SDK."""

from __future__ import annotations

import json
from typing import Any

import anthropic

from tests.conftest import SCRIPTED_MODEL, LiveServer

TOOL = {"type": "code_execution_20250825", "name": "code_execution"}
BETAS = ["code-execution-2025-08-25", "skills-2025-10-02", "files-api-2025-04-14"]


def call(tool: str, **given: Any) -> str:
    """A user turn that makes the scripted backend call ``tool`` with ``given``."""
    return f"call {tool} {json.dumps(given)}"


def bash(client: anthropic.Anthropic, command: str, **kwargs: Any) -> Any:
    """One request whose model runs ``command``; returns the SDK's message."""
    return run(client, call("bash_code_execution", command=command), **kwargs)


def run(client: anthropic.Anthropic, content: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("max_tokens", 200)
    kwargs.setdefault("tools", [TOOL])
    return client.beta.messages.create(
        model=SCRIPTED_MODEL, messages=[{"role": "user", "content": content}], betas=BETAS, **kwargs
    )


def result_of(message: Any, index: int = 0) -> Any:
    """The ``content`` of the message's ``index``-th tool result block."""
    results = [b for b in message.content if b.type.endswith("_tool_result")]
    return results[index].content


def still_serving(live: LiveServer) -> None:
    """The server answers a plain request."""
    reply = live.client().messages.create(
        model=SCRIPTED_MODEL, max_tokens=5, messages=[{"role": "user", "content": "still here"}]
    )
    assert reply.content[0].text == "still here"  # type: ignore[union-attr]
