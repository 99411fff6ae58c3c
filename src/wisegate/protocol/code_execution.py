"""Wire shapes of the code execution tool's output blocks (anthropic 2.10.0 ``types/beta``).

The model's calls are ``server_tool_use`` blocks (names ``bash_code_execution``,
``text_editor_code_execution`` for ``code_execution_20250825``; ``code_execution`` for
``code_execution_20250522``); each is answered by a result block whose ``content`` is one of the
result or error objects built by the functions below.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

CODE_EXECUTION_TOOLS = ("code_execution_20250825", "code_execution_20250522")
BASH = "bash_code_execution"
TEXT_EDITOR = "text_editor_code_execution"
PYTHON = "code_execution"
TOOL_NAMES = {"code_execution_20250825": (BASH, TEXT_EDITOR), "code_execution_20250522": (PYTHON,)}
"""The tools each version gives the model, by name: a client tool may not have one of these names."""
RESULT_TYPES = {
    BASH: "bash_code_execution_tool_result",
    TEXT_EDITOR: "text_editor_code_execution_tool_result",
    PYTHON: "code_execution_tool_result",
}

ResultType = Literal[
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "code_execution_tool_result",
]


class ServerToolUseBlock(BaseModel):
    type: Literal["server_tool_use"] = "server_tool_use"
    id: str
    name: str
    input: dict[str, Any]


class CodeExecutionResultBlock(BaseModel):
    """``bash_code_execution_tool_result``, ``text_editor_code_execution_tool_result`` or
    ``code_execution_tool_result``: ``content`` is a result or a typed error."""

    type: ResultType
    tool_use_id: str
    content: dict[str, Any]


class ContainerUploadBlock(BaseModel):
    type: Literal["container_upload"] = "container_upload"
    file_id: str


def run_result(tool: str, stdout: str, stderr: str, return_code: int, file_ids: list[str]) -> dict[str, Any]:
    """``bash_code_execution_result`` / ``code_execution_result`` with the files the call created."""
    kind = "bash_code_execution" if tool == BASH else "code_execution"
    return {
        "type": f"{kind}_result",
        "stdout": stdout,
        "stderr": stderr,
        "return_code": return_code,
        "content": [{"type": f"{kind}_output", "file_id": f} for f in file_ids],
    }


def tool_error(tool: str, error_code: str, message: str | None = None) -> dict[str, Any]:
    """The typed error of ``tool`` (``invalid_tool_input``, ``unavailable``, ``execution_time_exceeded``…)."""
    error: dict[str, Any] = {"type": f"{tool}_tool_result_error", "error_code": error_code}
    if tool == TEXT_EDITOR:
        error["error_message"] = message
    return error
