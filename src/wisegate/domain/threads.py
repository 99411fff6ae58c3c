"""Message threads: server-held conversation state for ``thread`` on ``POST /v1/messages``.

``{"type": "create"}`` answers the request as usual and stores its conversation (system, tools, the
messages and the response) under the response's id. ``{"type": "continue", "previous_message_id"}``
restores that conversation before the request's own messages, answers, and stores the result under
the new response's id. Each response can be continued once (``thread_already_continued``), one
request at a time (``thread_continue_in_flight``); an unknown, expired or other workspace's id is
``thread_not_found`` — the error codes the SDK's thread helper recovers from by replaying the full
conversation. ``system`` and ``tools`` are the thread's: a continue may repeat them unchanged, a
different value is ``thread_fingerprint_mismatch``, as is another model.

Threads work with every backend: the backend sees the full conversation. A request field whose
meaning a stored conversation cannot keep (``context_management``, which edits history upstream) is
refused with ``thread_unsupported_request`` and the ``unsupported`` list, on which the SDK can
continue unthreaded.

State is stored in the database (``message_threads``), held for ``thread_retention_seconds``, and
deleted with its workspace. Logs carry thread and message ids only, never conversation content.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio

from wisegate.domain.clock import Clock
from wisegate.domain.keys import Principal
from wisegate.domain.messages import MessageService, MessageStream, accumulate
from wisegate.errors import Conflict, InvalidRequest, NotFound
from wisegate.protocol.bounds import echo
from wisegate.protocol.events import MessageStop, StreamEvent
from wisegate.protocol.messages import Message, MessagesRequest, TextBlock, ThreadContinue
from wisegate.records.threads import ThreadRecord
from wisegate.storage.threads import ThreadRepo

log = logging.getLogger("wisegate.threads")

UNSUPPORTED_FIELDS = ("context_management",)
_CLAIM_STALE = timedelta(minutes=15)
_SWEEP_EVERY = 60.0


@dataclass(slots=True)
class ThreadTurn:
    """One threaded request: what it continues from and the conversation it sends to the model."""

    continues: str | None
    request: MessagesRequest
    stored: dict[str, Any]


class ThreadService:
    def __init__(
        self, repo: ThreadRepo, messages: MessageService, clock: Clock, retention_seconds: int
    ) -> None:
        self._repo, self._messages, self._clock = repo, messages, clock
        self._retention = timedelta(seconds=retention_seconds)
        self._last_sweep = 0.0

    async def open_stream(
        self, principal: Principal, request: MessagesRequest, request_id: str, *, streamed: bool
    ) -> ThreadedStream:
        """Answer a request with ``thread``: restore, generate, and store the turn at ``message_stop``."""
        turn = await self.begin(principal, request)
        try:
            call = await self._messages.call(principal, turn.request, request_id, streamed=streamed)
            stream = await self._messages.open_stream(call)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.abandon(turn)
            raise
        return ThreadedStream(self, principal, turn, stream)

    async def begin(self, principal: Principal, request: MessagesRequest) -> ThreadTurn:
        unsupported = [name for name in UNSUPPORTED_FIELDS if getattr(request, name) is not None]
        if unsupported:
            raise InvalidRequest(
                f"thread: {', '.join(unsupported)} cannot be used with a thread; "
                "send the full conversation without `thread`",
                details={"error_code": "thread_unsupported_request", "unsupported": unsupported},
            )
        thread = request.thread
        fields = request.model_dump(mode="json", exclude_unset=True, exclude={"thread"})
        if not isinstance(thread, ThreadContinue):
            await self._sweep()
            return ThreadTurn(None, _validated(fields), _conversation(fields))
        now = self._clock.now()
        claimed = await self._repo.claim(
            principal.workspace_id,
            thread.previous_message_id,
            now,
            now - _CLAIM_STALE,
            written_after=now - self._retention,  # today's retention, also for state written before it
        )
        if claimed == "not_found":
            raise NotFound(
                f"thread.previous_message_id: no thread state for '{echo(thread.previous_message_id)}'; "
                'replay the full conversation with thread: {"type": "create"}',
                details={"error_code": "thread_not_found"},
            )
        if claimed == "already_continued":
            raise Conflict(
                f"thread.previous_message_id: '{echo(thread.previous_message_id)}' has already been "
                "continued; continue from the thread's most recent response id",
                details={"error_code": "thread_already_continued"},
            )
        if claimed == "in_flight":
            raise Conflict(
                f"thread.previous_message_id: another request is continuing from "
                f"'{echo(thread.previous_message_id)}'; wait for it and continue from its response id",
                details={"error_code": "thread_continue_in_flight"},
            )
        try:
            return self._continued(claimed, fields, request)
        except BaseException:
            await self._repo.release(claimed.id)
            raise

    def _continued(
        self, record: ThreadRecord, fields: dict[str, Any], request: MessagesRequest
    ) -> ThreadTurn:
        stored = json.loads(record.state)
        mismatched: list[str] = [
            name for name in ("system", "tools") if name in fields and fields[name] != stored.get(name)
        ]
        if record.model != request.model:
            mismatched.insert(0, "model")
        if mismatched:
            raise InvalidRequest(
                f"thread: {', '.join(mismatched)} differ(s) from the value stored with the thread; send the "
                'stored value, or replay the full conversation with thread: {"type": "create"} to change it',
                details={"error_code": "thread_fingerprint_mismatch"},
            )
        full = {**fields, "messages": [*stored["messages"], *fields["messages"]]}
        for name in ("system", "tools"):
            if name in stored:
                full[name] = stored[name]
        _keep_breakpoints(full)
        return ThreadTurn(record.id, _validated(full), _conversation(full))

    async def finish(self, principal: Principal, turn: ThreadTurn, message: Message) -> None:
        """Store the conversation with ``message`` under ``message.id`` (and retire what it continued)."""
        state = dict(turn.stored)
        state["messages"] = [*_with_auto_breakpoint(turn), *_as_params(message)]
        now = self._clock.now()
        record = ThreadRecord(
            message.id,
            principal.organization_id,
            principal.workspace_id,
            turn.request.model,
            json.dumps(state, ensure_ascii=False),
            now,
            now + self._retention,
        )
        await self._repo.add(record, continues=turn.continues)
        log.info(
            "thread turn stored",
            extra={"thread_message_id": message.id, "thread_continues": turn.continues},
        )

    async def abandon(self, turn: ThreadTurn) -> None:
        if turn.continues is not None:
            await self._repo.release(turn.continues)

    async def forget_workspace(self, workspace_id: str) -> None:
        await self._repo.delete_workspace(workspace_id)

    async def _sweep(self) -> None:
        """Delete expired thread state (at most once a minute per process)."""
        if time.monotonic() - self._last_sweep < _SWEEP_EVERY:
            return
        self._last_sweep = time.monotonic()
        now = self._clock.now()
        removed = await self._repo.delete_expired(now, written_before=now - self._retention)
        if removed:
            log.info("expired thread state deleted", extra={"threads_deleted": removed})


class ThreadedStream:
    """A :class:`MessageStream` whose turn is stored before ``message_stop`` leaves; closed before
    that, the claim on the continued response is given back (nothing half-written is stored)."""

    def __init__(
        self, service: ThreadService, principal: Principal, turn: ThreadTurn, stream: MessageStream
    ) -> None:
        self._service, self._principal, self._turn, self._stream = service, principal, turn, stream
        self.rate_limits = stream.rate_limits
        self._stored = False
        self._events = self._run()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._events

    async def _run(self) -> AsyncGenerator[StreamEvent]:
        seen: list[StreamEvent] = []
        async for event in self._stream:
            seen.append(event)
            if isinstance(event, MessageStop):
                message = await accumulate(_replay(seen))
                with anyio.CancelScope(shield=True):
                    await self._service.finish(self._principal, self._turn, message)
                self._stored = True
            yield event

    def abort(self, error_type: str) -> None:
        """Why the response ends before the backend finished (see ``MessageStream.abort``)."""
        self._stream.abort(error_type)

    async def aclose(self) -> None:
        await self._events.aclose()
        await self._stream.aclose()
        if not self._stored:
            self._stored = True
            with anyio.CancelScope(shield=True):
                await self._service.abandon(self._turn)


async def _replay(events: list[StreamEvent]) -> AsyncGenerator[StreamEvent]:
    for event in events:
        yield event


def _validated(fields: dict[str, Any]) -> MessagesRequest:
    return MessagesRequest.model_validate(fields)


def _conversation(fields: dict[str, Any]) -> dict[str, Any]:
    """What a thread keeps between turns: system, tools and the messages."""
    kept: dict[str, Any] = {name: fields[name] for name in ("system", "tools") if name in fields}
    kept["messages"] = list(fields["messages"])
    if "cache_control" in fields:
        kept["cache_control"] = fields["cache_control"]
    return kept


def _with_auto_breakpoint(turn: ThreadTurn) -> list[dict[str, Any]]:
    """The turn's messages, the top-level ``cache_control`` made explicit on the block it applied to,
    so the next turn reads the prefix this one cached."""
    messages = [dict(m) for m in turn.stored["messages"]]
    auto = turn.stored.get("cache_control")
    if auto is None or not messages:
        return messages
    last = messages[-1]
    content = last["content"]
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    content = [dict(b) for b in content]
    for block in reversed(content):
        if block.get("type") not in ("thinking", "redacted_thinking"):
            block.setdefault("cache_control", auto)
            break
    last["content"] = content
    return messages


def _keep_breakpoints(fields: dict[str, Any], limit: int = 4) -> None:
    """Drop the oldest message breakpoints past the API's four, newest kept (they cache the most)."""
    spots: list[dict[str, Any]] = []
    for message in fields["messages"]:
        if isinstance(message.get("content"), list):
            spots += [b for b in message["content"] if isinstance(b, dict) and "cache_control" in b]
    fixed = int("cache_control" in fields)
    for name in ("system", "tools"):
        value = fields.get(name)
        if isinstance(value, list):
            fixed += sum(1 for b in value if isinstance(b, dict) and b.get("cache_control"))
    excess = len(spots) + fixed - limit
    for block in spots[: max(0, excess)]:
        del block["cache_control"]


def _as_params(message: Message) -> list[dict[str, Any]]:
    """The response as the assistant turn a continuation replays: its empty text blocks left out (the
    API refuses them in a request), and no turn at all for a response without content."""
    content = [
        b.model_dump(mode="json", exclude_none=True)
        for b in message.content
        if not isinstance(b, TextBlock) or b.text
    ]
    for block in content:
        block.pop("citations", None)
    return [{"role": "assistant", "content": content}] if content else []
