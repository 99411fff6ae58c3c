"""The code execution tool loop inside one ``/v1/messages`` call, for backends that do not run it.

The backend sees the code execution tool as ordinary tools (``bash_code_execution`` and
``text_editor_code_execution``, or ``code_execution`` for the 20250522 tool) and earlier server-tool
blocks as ``tool_use``/``tool_result`` turns. Its calls of those tools reach the client as
``server_tool_use`` blocks, each followed by its result block; then the backend is asked again with
the results, until it answers without calling them (its ``stop_reason``), calls a client tool
(``tool_use``), or ``max_rounds`` rounds ran (``pause_turn``: the client sends the turn back to go
on). The request's ``max_tokens`` bounds the output of all rounds together: each round may use what
the earlier ones left, and the turn ends with ``max_tokens`` once it is spent. A round cut off by a
limit (``max_tokens``, ``model_context_window_exceeded``) may hold a call whose input is unfinished:
its calls are returned as generated and not run, and the turn ends with that reason. One
``message_start``, one ``message_delta`` with the usage of all rounds, one ``message_stop``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from wisegate.backends.base import Backend, ModelRoute, tallied
from wisegate.domain.attachments import LoadedSkill
from wisegate.domain.code_execution.containers import (
    Container,
    ContainerService,
    check_folders,
    container_id,
)
from wisegate.domain.code_execution.sandbox import MOUNTS, SKILLS_DIR
from wisegate.domain.code_execution.tools import EDITOR_COMMANDS, execute
from wisegate.domain.keys import Principal
from wisegate.errors import InvalidRequest
from wisegate.protocol.code_execution import (
    BASH,
    CODE_EXECUTION_TOOLS,
    PYTHON,
    RESULT_TYPES,
    TEXT_EDITOR,
    TOOL_NAMES,
    CodeExecutionResultBlock,
    ServerToolUseBlock,
)
from wisegate.protocol.content import MessageParam, TextBlockParam, ToolResultBlockParam, ToolUseBlockParam
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
    StreamEvent,
    TextDelta,
)
from wisegate.protocol.json_depth import parse_json
from wisegate.protocol.messages import (
    CustomTool,
    MessagesRequest,
    ServerTool,
    TextBlock,
    ToolChoiceAuto,
    ToolChoiceTool,
    ToolUseBlock,
    Usage,
    new_id,
)

_ECHO = re.compile(r"<tool_response>.*?(?:</tool_response>|\Z)|</?tool_call>|</tool_response>", re.DOTALL)
# Stop reasons of a round that ended mid-generation: a call in it may be unfinished.
_CUT_OFF = frozenset({"max_tokens", "model_context_window_exceeded"})

LoadSkills = Callable[[Principal, Any], Awaitable[Sequence[LoadedSkill]]]
AdmitRound = Callable[[MessagesRequest, int], Awaitable[Any]]
FinishRound = Callable[[Any, int], Awaitable[None]]

_SCHEMAS: dict[str, dict[str, Any]] = {
    BASH: {
        "description": "Run a bash command in the sandboxed container; returns stdout, stderr, exit code.",
        "input_schema": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
    },
    TEXT_EDITOR: {
        "description": "View, create or edit (str_replace) a text file in the container.",
        "input_schema": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "enum": list(EDITOR_COMMANDS)},
                "path": {"type": "string"},
                "file_text": {"type": "string"},
                "old_str": {"type": "string"},
                "new_str": {"type": "string"},
            },
            "required": ["command", "path"],
        },
    },
    PYTHON: {
        "description": "Run Python code in the sandboxed container; returns stdout, stderr, exit code.",
        "input_schema": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
    },
}


def code_tool(request: MessagesRequest) -> ServerTool | None:
    """The request's code execution tool, if any."""
    for tool in request.tools or []:
        if isinstance(tool, ServerTool) and tool.type in CODE_EXECUTION_TOOLS:
            return tool
    return None


class CodeExecution:
    """Starts runs of the loop; one per app."""

    def __init__(self, containers: ContainerService, load_skills: LoadSkills, max_rounds: int) -> None:
        self.containers = containers
        self._load_skills = load_skills
        self._max_rounds = max_rounds

    async def begin(self, principal: Principal, request: MessagesRequest) -> tuple[Run, MessagesRequest]:
        """Open the container (mounting skills, placing uploads) and the request the backend sees."""
        tool = code_tool(request)
        assert tool is not None
        container_id(request.container)  # a 400 naming `container` for a malformed one
        problem = await anyio.to_thread.run_sync(self.containers.sandbox.available)
        if problem is not None:
            raise InvalidRequest(
                "tools: the code execution tool is not available on this server, its sandbox cannot run: "
                f"{problem}; the operator can run `wisegate sandbox check`",
                details={"error_code": "code_execution_unavailable"},
            )
        skills = await self._load_skills(principal, request.container)
        check_folders(skills)  # before a container is made
        container = await self.containers.open(principal, request.container, skills)
        names = TOOL_NAMES[tool.type]
        try:
            messages = [await self._message(principal, container, m) for m in request.messages]
        except BaseException:  # a container_upload of a missing file, say: no container is left behind
            await self.containers.abandon(container)
            raise
        tools: list[Any] = [t for t in request.tools or [] if t is not tool]
        tools += [CustomTool(name=n, **_SCHEMAS[n]) for n in names]
        choice = request.tool_choice
        if isinstance(choice, ToolChoiceTool) and choice.name == tool.name:
            choice = ToolChoiceTool(type="tool", name=names[0])
        system = [*request.system_text(), TextBlockParam(type="text", text=_environment(container, skills))]
        backend_request = request.model_copy(
            update={
                "messages": _for_backend(messages),
                "tools": tools,
                "tool_choice": choice,
                "system": system,
                "container": None,
            }
        )
        return Run(self, principal, container, frozenset(names), self._max_rounds), backend_request

    async def _message(
        self, principal: Principal, container: Container, message: MessageParam
    ) -> MessageParam:
        """``container_upload`` blocks placed in the container and replaced by a note saying where."""
        if isinstance(message.content, str):
            return message
        blocks: list[Any] = []
        for block in message.content:
            if block.type == "container_upload" and message.role == "user":
                file_id = getattr(block, "file_id", None)
                if not isinstance(file_id, str):
                    raise InvalidRequest("container_upload: file_id is required")
                name = await self.containers.upload(principal, container, file_id)
                note = f"[The file {file_id} is in the container at {MOUNTS['uploads']}/{name}]"
                blocks.append(TextBlockParam(type="text", text=note))
            else:
                blocks.append(block)
        return message.model_copy(update={"content": blocks})


@dataclass
class Run:
    service: CodeExecution
    principal: Principal
    container: Container
    names: frozenset[str]
    max_rounds: int
    # Rate and spend limits for every round after the first (the first is the request's admission).
    rounds: tuple[AdmitRound, FinishRound] | None = None

    async def stream(
        self, backend: Backend, request: MessagesRequest, route: ModelRoute, usage: Usage, *, batch: bool
    ) -> AsyncGenerator[StreamEvent]:
        """The merged stream of every round (see the module docstring), its usage summed in ``usage``."""
        budget = request.max_tokens
        offset = 0
        rounds = calls = 0
        stop: str | None = None
        started = False
        try:
            while True:
                round_usage = Usage()
                blocks: dict[int, Any] = {}
                partial: dict[int, str] = {}
                stop = None
                request = request.model_copy(update={"max_tokens": budget - usage.output_tokens})
                admission = None
                if rounds and self.rounds is not None:
                    admission = await self.rounds[0](request, rounds + 1)
                events = tallied(backend.stream(request, route, batch=batch), round_usage)
                try:
                    async for event in events:
                        if isinstance(event, MessageStart):
                            if not started:
                                started = True
                                event.message.container = self.container.wire()
                                yield event
                        elif isinstance(event, ContentBlockStart):
                            block = event.content_block
                            if isinstance(block, ToolUseBlock) and block.name in self.names:
                                block = ServerToolUseBlock(id=new_id("srvtoolu"), name=block.name, input={})
                            blocks[event.index] = block.model_copy(deep=True)
                            yield ContentBlockStart(index=event.index + offset, content_block=block)
                        elif isinstance(event, ContentBlockDelta):
                            _apply(blocks, partial, event)
                            yield ContentBlockDelta(index=event.index + offset, delta=event.delta)
                        elif isinstance(event, ContentBlockStop):
                            yield ContentBlockStop(index=event.index + offset)
                        elif isinstance(event, MessageDelta):
                            stop = event.delta.stop_reason
                finally:
                    await events.aclose()
                    _add(usage, round_usage)
                    if admission is not None and self.rounds is not None:
                        with anyio.CancelScope(shield=True):
                            await self.rounds[1](admission, round_usage.input_tokens)
                for index, text in partial.items():
                    blocks[index].input = _parse(text)
                content = [blocks[i] for i in sorted(blocks)]
                offset += len(content)
                if stop in _CUT_OFF:
                    break
                server = [b for b in content if isinstance(b, ServerToolUseBlock)]
                results = []
                for call in server:
                    result = await execute(
                        self.service.containers, self.principal, self.container, call.name, call.input
                    )
                    block = CodeExecutionResultBlock(
                        type=RESULT_TYPES[call.name],
                        tool_use_id=call.id,
                        content=result,
                    )
                    results.append(block)
                    yield ContentBlockStart(index=offset, content_block=block)
                    yield ContentBlockStop(index=offset)
                    offset += 1
                calls += len(server)
                if not server or any(isinstance(b, ToolUseBlock) for b in content):
                    break
                rounds += 1
                if usage.output_tokens >= budget:
                    stop = "max_tokens"
                    break
                if rounds >= self.max_rounds:
                    stop = "pause_turn"
                    break
                turn = MessageParam(role="assistant", content=[*_echoes_dropped(content), *_params(results)])
                request = request.model_copy(
                    update={
                        "messages": _for_backend([*request.messages, turn]),
                        "tool_choice": None if request.tool_choice is None else ToolChoiceAuto(type="auto"),
                    }
                )
            usage.code_execution_requests = calls
            usage.server_tool_use = server_tool_use(usage, calls)
            usage.container_ms = int(self.container.run_seconds * 1000)
            yield MessageDelta(
                delta=MessageDeltaBody(stop_reason=stop or "end_turn"),
                usage=MessageDeltaUsage(
                    output_tokens=usage.output_tokens,
                    input_tokens=usage.input_tokens,
                    cache_read_input_tokens=usage.cache_read_input_tokens,
                    cache_creation_input_tokens=usage.cache_creation_input_tokens,
                    server_tool_use=usage.server_tool_use,
                ),
            )
            yield MessageStop()
        finally:
            usage.code_execution_requests = calls  # also when the client went away mid-turn
            usage.server_tool_use = server_tool_use(usage, calls)
            usage.container_ms = int(self.container.run_seconds * 1000)
            with anyio.CancelScope(shield=True):
                if started:
                    await self.service.containers.close(self.container)
                else:  # the request failed before the client saw the container's id
                    await self.service.containers.abandon(self.container)

    async def abandon(self) -> None:
        """The request failed before its stream started: a container it created is deleted."""
        await self.service.containers.abandon(self.container)


def server_tool_use(usage: Usage, calls: int) -> dict[str, int]:
    """``usage.server_tool_use`` as the SDK's ``ServerToolUsage`` has it (web search and web fetch
    counts, never run here, as reported by the backend), with the code execution calls added."""
    counts = {"web_search_requests": 0, "web_fetch_requests": 0, **(usage.server_tool_use or {})}
    counts["code_execution_requests"] = calls
    return counts


def _apply(blocks: dict[int, Any], partial: dict[int, str], event: ContentBlockDelta) -> None:
    block = blocks.get(event.index)
    if isinstance(event.delta, TextDelta) and isinstance(block, TextBlock):
        block.text += event.delta.text
    elif isinstance(event.delta, InputJsonDelta):
        partial[event.index] = partial.get(event.index, "") + event.delta.partial_json


def _parse(text: str) -> dict[str, Any]:
    try:
        value = parse_json(text) if text.strip() else {}
    except ValueError:  # a model's unfinished or unbounded JSON (deep, endless digits): no input
        return {}
    return value if isinstance(value, dict) else {}


def _add(total: Usage, part: Usage) -> None:
    total.input_tokens += part.input_tokens
    total.output_tokens += part.output_tokens
    total.cache_read_input_tokens += part.cache_read_input_tokens
    total.cache_creation_input_tokens += part.cache_creation_input_tokens


def _echoes_dropped(blocks: Sequence[Any]) -> list[Any]:
    """The round's blocks for the next round, tool-call markup the model wrote as text taken out.

    A small model sometimes echoes the prompt format (``<tool_response>…</tool_response>``, a stray
    ``</tool_call>``) in its answer; sent back as its own text, that would read as a tool result the
    next round never got from a tool."""
    params = _params(blocks)
    for param in params:
        if param.get("type") == "text":
            param["text"] = _ECHO.sub("", param["text"])
    return [p for p in params if p.get("type") != "text" or p["text"].strip()]


def _params(blocks: Sequence[Any]) -> list[Any]:
    return [b.model_dump(exclude_none=True) for b in blocks]


def _for_backend(messages: Sequence[MessageParam]) -> list[MessageParam]:
    """Server-tool turns as ``tool_use`` / ``tool_result`` turns; assistant turns split after results."""
    out: list[MessageParam] = []
    for message in messages:
        if isinstance(message.content, str) or message.role != "assistant":
            out.append(message)
            continue
        assistant: list[Any] = []
        results: list[Any] = []
        for raw in message.content:
            block = raw.model_dump(exclude_none=True) if hasattr(raw, "model_dump") else dict(raw)
            kind = block.get("type")
            if kind == "server_tool_use":
                if results:
                    out += _pair(assistant, results)
                    assistant, results = [], []
                assistant.append(
                    ToolUseBlockParam(
                        type="tool_use", id=block["id"], name=block["name"], input=block.get("input") or {}
                    )
                )
            elif kind in RESULT_TYPES.values():
                results.append(
                    ToolResultBlockParam(
                        type="tool_result", tool_use_id=block["tool_use_id"], content=_result_text(block)
                    )
                )
            else:
                if results:
                    out += _pair(assistant, results)
                    assistant, results = [], []
                assistant.append(raw)
        out += _pair(assistant, results)
    return out


def _pair(assistant: list[Any], results: list[Any]) -> list[MessageParam]:
    turns = [MessageParam(role="assistant", content=assistant)] if assistant else []
    if results:
        turns.append(MessageParam(role="user", content=results))
    return turns


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content") or {}
    kind = str(content.get("type", ""))
    if kind.endswith("_error"):
        return f"error: {content.get('error_code')} {content.get('error_message') or ''}".strip()
    if "stdout" in content:
        files = ", ".join(f["file_id"] for f in content.get("content", []) if "file_id" in f)
        text = (
            f"exit code {content.get('return_code')}\nstdout:\n{content.get('stdout')}"
            f"\nstderr:\n{content.get('stderr')}"
        )
        return text + (f"\nfiles created: {files}" if files else "")
    if "content" in content:
        return str(content["content"])
    return json.dumps(content)


def _environment(container: Container, skills: Sequence[LoadedSkill]) -> str:
    lines = [
        "You can run code in a sandboxed Linux container (no network access). The working directory is "
        f"{MOUNTS['home']}. Files the user uploads are in {MOUNTS['uploads']}/. Files you write to "
        f"{MOUNTS['outputs']}/ are returned to the user as downloadable files.",
    ]
    if skills:
        lines.append(
            "You have these skills. Each is a folder with a SKILL.md of instructions and possibly scripts; "
            "when a task matches a skill's description, read its SKILL.md first and follow it."
        )
        for skill in skills:
            v = skill.version
            lines.append(
                f'<skill name="{v.name}" location="{SKILLS_DIR}/{v.directory}/SKILL.md">'
                f"{json.dumps(v.description, ensure_ascii=False)}</skill>"
            )
    return "\n".join(lines)
