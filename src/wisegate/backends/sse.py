"""Reading Anthropic SSE as it goes by: usage on the side of a byte relay, or typed events.

``UsageTap`` looks only at the frames that carry usage (``message_start``, ``message_delta``) and
``error``; content deltas pass by unparsed. ``typed_events`` turns the same frames into protocol
events for the non-relay path (frames Wisegate has no model for are skipped there).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from pydantic import TypeAdapter, ValidationError

from wisegate.backends.base import RelayResponse
from wisegate.errors import (
    ApiError,
    ApiInternal,
    GatewayTimeout,
    InvalidRequest,
    NotFound,
    Overloaded,
    RateLimited,
    RequestTooLarge,
)
from wisegate.protocol.events import StreamEvent
from wisegate.protocol.messages import Usage

log = logging.getLogger("wisegate.upstream")

_EVENT = TypeAdapter[StreamEvent](StreamEvent)
_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
_ERRORS: dict[str, type[ApiError]] = {
    "invalid_request_error": InvalidRequest,
    "not_found_error": NotFound,
    "request_too_large": RequestTooLarge,
    "rate_limit_error": RateLimited,
    "overloaded_error": Overloaded,
    "timeout_error": GatewayTimeout,
    "api_error": ApiInternal,
}


def apply_usage(usage: Usage, fields: dict[str, Any]) -> None:
    """Copy an upstream ``usage`` object onto the tally (cumulative values overwrite)."""
    for name in _USAGE_FIELDS:
        value = fields.get(name)
        if isinstance(value, int):
            setattr(usage, name, value)
    creation = fields.get("cache_creation")
    if isinstance(creation, dict):
        counts = {
            name: creation[name]
            for name in ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")
            if isinstance(creation.get(name), int)
        }
        if counts:  # assigned, not changed in place: a usage report names the fields it sets
            usage.cache_creation = usage.cache_creation.model_copy(update=counts)
    tier = fields.get("service_tier")
    if tier in ("standard", "priority", "batch"):
        usage.service_tier = tier
    if isinstance(fields.get("server_tool_use"), dict):
        usage.server_tool_use = {k: v for k, v in fields["server_tool_use"].items() if isinstance(v, int)}


def error_from_event(error: dict[str, Any]) -> ApiError:
    kind = str(error.get("type", "api_error"))
    return _ERRORS.get(kind, ApiInternal)(str(error.get("message", "upstream error")))


def _split(buffer: bytearray) -> list[bytes]:
    """Complete frames removed from the front of ``buffer`` (separator ``\\n\\n``; ``\\r\\n`` tolerated)."""
    if b"\r" in buffer:
        buffer[:] = buffer.replace(b"\r\n", b"\n")
    frames = []
    start = 0
    while True:
        end = buffer.find(b"\n\n", start)
        if end < 0:
            break
        frames.append(bytes(buffer[start:end]))
        start = end + 2
    if start:
        del buffer[:start]
    return frames


def _data_of(frame: bytes) -> bytes:
    lines = [line[5:].lstrip(b" ") for line in frame.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines)


def _name_of(frame: bytes) -> bytes:
    if frame.startswith(b"event:"):
        return frame[6 : frame.find(b"\n") if b"\n" in frame else None].strip()
    return b""


_STOP = b"event: message_stop\n"


class UsageTap:
    """Fed the relayed bytes; keeps ``response.usage``, ``stop_reason`` and ``error_type`` current.

    Only the few frames that matter are located (by their ``event:`` line) and parsed; the content
    deltas in between are never split or decoded. Only an unfinished frame is kept between chunks.
    """

    __slots__ = ("_response", "_tail")
    _WATCHED = (b"event: message_start", b"event: message_delta", b"event: error")

    def __init__(self, response: RelayResponse) -> None:
        self._response = response
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        data = self._tail + chunk if self._tail else chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self._tail = data
            return
        complete, self._tail = data[: end + 2], data[end + 2 :]
        # Only at a frame's start: text the model wrote is inside a JSON string, where a line break is
        # escaped, so it can never put "\n\nevent: message_stop" into the bytes.
        if complete.startswith(_STOP) or b"\n\n" + _STOP in complete:
            self._response.stopped = True
        for marker in self._WATCHED:
            at = complete.find(marker)
            while at >= 0:
                stop = complete.find(b"\n\n", at)
                self._frame(complete[at:stop])
                at = complete.find(marker, stop)

    def _frame(self, frame: bytes) -> None:
        try:
            event = json.loads(_data_of(frame))
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "message_start" and isinstance(event.get("message"), dict):
            apply_usage(self._response.usage, event["message"].get("usage") or {})
        elif kind == "message_delta":
            apply_usage(self._response.usage, event.get("usage") or {})
            delta = event.get("delta") or {}
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self._response.stop_reason = str(delta["stop_reason"])
        elif kind == "error":
            error = event.get("error") or {}
            self._response.error_type = (
                str(error.get("type", "api_error")) if isinstance(error, dict) else None
            )


async def typed_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[StreamEvent | Usage]:
    """Protocol events from Anthropic SSE bytes, each ``message_start`` and ``message_delta`` preceded
    by the usage so far (``Backend.stream``'s usage reports).

    An ``error`` event is raised as the matching :mod:`wisegate.errors` exception. Content blocks of
    types Wisegate has no model for (server-tool results …) are left out and the blocks after them
    renumbered, so the typed stream stays consistent; the relay path is the lossless one.
    """
    buffer = bytearray()
    usage = Usage()
    blocks: dict[object, int | None] = {}  # upstream block index -> ours (None: left out)
    async for chunk in chunks:
        buffer += chunk
        for frame in _split(buffer):
            data = _data_of(frame)
            if not data:
                continue
            try:
                raw = json.loads(data)
            except ValueError:
                continue
            if isinstance(raw, dict) and raw.get("type") == "error":
                raise error_from_event(raw.get("error") or {})
            if isinstance(raw, dict) and raw.get("type") == "message_start":
                apply_usage(usage, (raw.get("message") or {}).get("usage") or {})
                yield usage.model_copy()
            elif isinstance(raw, dict) and raw.get("type") == "message_delta":
                apply_usage(usage, raw.get("usage") or {})
                yield usage.model_copy()
            elif isinstance(raw, dict) and str(raw.get("type", "")).startswith("content_block_"):
                upstream_index = raw.get("index")
                if raw["type"] == "content_block_start":
                    ours = sum(1 for v in blocks.values() if v is not None)
                    try:
                        event = _EVENT.validate_python({**raw, "index": ours})
                    except ValidationError:
                        blocks[upstream_index] = None
                        continue
                    blocks[upstream_index] = ours
                    yield event
                    continue
                mapped = blocks.get(upstream_index)
                if mapped is None:
                    continue
                raw = {**raw, "index": mapped}
            try:
                yield _EVENT.validate_python(raw)
            except ValidationError:
                log.debug("skipping an upstream event Wisegate has no type for: %s", raw.get("type"))
