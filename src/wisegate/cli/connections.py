"""What one TCP connection may cost the HTTP server before the app sees a request.

uvicorn's httptools protocol, bounded (``run_server`` installs it; docs/operations.md, "Limits on
requests"):

- the request head (request line and headers) is at most ``max_header_bytes``: past it the
  connection gets 431 ``request_header_fields_too_large`` and is closed, so the parser never holds
  more than that per connection;
- the head must arrive within ``header_timeout_seconds`` of the connection opening (or of the first
  byte of the next request on a kept-alive connection): a slow sender is answered 408 and closed, a
  connection that sends nothing is closed;
- the body must keep arriving: no gap longer than ``body_timeout_seconds`` between two of its bytes,
  and, past its first ``body_timeout_seconds``, at least ``body_min_bytes_per_second`` on average (so a
  large upload on a good link is never cut, and a body trickled a byte at a time is): otherwise 408
  and closed (closed only, if the app has already answered). The clock stops while the server itself
  is not reading (the app has not yet taken what arrived);
- a request the parser cannot read (a malformed request line or header, ``HTTP/9``) is answered 400
  ``invalid_request_error`` and closed, instead of uvicorn's plain-text 400 — also on a kept-alive
  connection, and after the answers to the requests pipelined before it;
- a kept-alive connection idle for ``keep_alive_seconds`` after a response is closed (uvicorn's own);
- at most ``max_connections`` are open at once: one more is answered 529 ``overloaded_error`` with
  ``retry-after`` and closed at once.

These answers carry Anthropic's error envelope and a ``request-id``, like every other.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from wisegate.protocol.messages import new_id
from wisegate.protocol.numbers import seconds
from wisegate.protocol.resources import error_envelope

log = logging.getLogger("wisegate.server")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_header_bytes: int = 64 * 1024
    header_timeout_seconds: float = 10.0
    keep_alive_seconds: float = 5.0
    max_connections: int = 1024
    body_timeout_seconds: float = 30.0
    body_min_bytes_per_second: int = 16 * 1024


_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    529: "Overloaded",
}


def _refusal(status: int, error_type: str, message: str, retry_after: int | None = None) -> bytes:
    request_id = new_id("req")
    body = json.dumps(error_envelope(error_type, message, request_id)).encode()
    head = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        f"request-id: {request_id}",
        "connection: close",
    ]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class LimitedHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` within ``limits`` (set on the subclass ``protocol_for`` makes)."""

    limits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_started = 0.0  # loop time the body's clock started (or restarted)
        self._body_last = 0.0  # loop time of its latest byte (or of the start)
        self._body_bytes = 0  # bytes since the clock started
        self._refusal_pending: bytes | None = None  # a 400 to send once the requests before it are answered
        self._reset_head()

    def _reset_head(self) -> None:
        self._in_head = True  # bytes received are counted against max_header_bytes
        self._head_bytes = 0
        self._head_started = False  # a byte of the request has arrived

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            log.warning("connection refused: %d connections are open", self.limits.max_connections)
            self._refuse(
                _refusal(
                    529,
                    "overloaded_error",
                    f"The server has its maximum of {self.limits.max_connections} connections open; "
                    "retry shortly.",
                    retry_after=1,
                )
            )
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        self._disarm_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal_pending is not None:
            return  # past bytes the parser could not read: nothing after them is a request
        if self._in_head:
            room = self.limits.max_header_bytes - self._head_bytes
            if len(data) > room:
                # The head may end inside what fits: parse that much, and the rest only if it did.
                super().data_received(data[: max(room, 0)])
                if self._in_head and not self.transport.is_closing():
                    self._refuse(
                        _refusal(
                            431,
                            "request_header_fields_too_large",
                            f"The request line and headers exceed {self.limits.max_header_bytes} bytes.",
                        )
                    )
                    return
                data = data[max(room, 0) :]
                if self.transport.is_closing() or not data:
                    return
            else:
                self._head_bytes += len(data)
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True
        if self._head_timer is None:  # the next request on a kept-alive connection
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm_head_timer()
        super().on_headers_complete()
        # A request without a body completes at once (on_message_complete disarms this again).
        self._body_started = self._body_last = self.loop.time()
        self._body_bytes = 0
        self._arm_body_timer(self.limits.body_timeout_seconds)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        self._body_last = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm_body_timer()
        super().on_message_complete()
        # What follows is the next request's head; until its first byte uvicorn's keep-alive
        # timeout bounds the wait.
        self._reset_head()

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.limits.header_timeout_seconds, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        if not self._head_started:
            self.transport.close()  # nothing was sent: nobody to answer
            return
        self._refuse(
            _refusal(
                408,
                "timeout_error",
                f"The request line and headers did not arrive within {self.limits.header_timeout_seconds:g} "
                "seconds.",
            )
        )

    def _arm_body_timer(self, delay: float) -> None:
        self._disarm_body_timer()
        self._body_timer = self.loop.call_later(delay, self._body_check)

    def _disarm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_check(self) -> None:
        """The body's deadline as of now: the latest byte plus the idle bound, and the start plus the
        idle bound plus what the bytes so far earn at the minimum rate; re-armed until one passes."""
        self._body_timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        limits = self.limits
        waiting_on_us = self.flow.read_paused or (
            self.cycle is not None and self.cycle.waiting_for_100_continue
        )
        if waiting_on_us:  # the app has not taken what came, or not asked for it: not the client's delay
            self._body_started = self._body_last = now
            self._body_bytes = 0
            self._arm_body_timer(limits.body_timeout_seconds)
            return
        idle_until = self._body_last + limits.body_timeout_seconds
        rate_until = (
            self._body_started
            + limits.body_timeout_seconds
            + self._body_bytes / limits.body_min_bytes_per_second
        )
        if now < min(idle_until, rate_until):
            self._arm_body_timer(min(idle_until, rate_until) - now)
            return
        if now >= idle_until:
            message = f"No byte of the request body arrived for {seconds(limits.body_timeout_seconds)}."
        else:
            message = (
                f"The request body arrived slower than {limits.body_min_bytes_per_second} bytes per second "
                f"(the least this server accepts after the first {seconds(limits.body_timeout_seconds)})."
            )
        log.warning("request body timed out: %s", message)
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # the app has answered: nothing more to say
            return
        self._refuse(_refusal(408, "timeout_error", message))

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes its parser cannot read, as Anthropic's envelope.

        The parser reads ahead of the app: the bytes it cannot read may follow requests it has read
        whole (pipelined on a kept-alive connection) whose answers are still to come. Those are
        answered first, in order, and the 400 after the last of them; nothing after the bad bytes is
        read. Only when the request being read is itself malformed is it answered at once (or the
        connection closed, if its app has already begun a response)."""
        if self._refusal_pending is not None:
            return
        refusal = _refusal(
            400,
            "invalid_request_error",
            "The request is not valid HTTP/1.1: its request line or a header is malformed.",
        )
        cycle = self.cycle
        if cycle is not None and not cycle.more_body and (not cycle.response_complete or self.pipeline):
            self._refusal_pending = refusal  # sent by on_response_complete after the last answer
            self._disarm_head_timer()
            self._disarm_body_timer()
            return
        if cycle is not None and cycle.more_body and cycle.response_started:
            self.transport.close()
            return
        self._refuse(refusal)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refusal_pending is not None and not self.pipeline and not self.transport.is_closing():
            if self.cycle is None or self.cycle.response_complete:
                self._refuse(self._refusal_pending)

    def _refuse(self, response: bytes) -> None:
        self._disarm_head_timer()
        self._disarm_body_timer()
        self.transport.write(response)
        self.transport.close()


def protocol_for(limits: ConnectionLimits) -> type[LimitedHttpProtocol]:
    """The protocol class uvicorn is given (``Config(http=...)``), bound to ``limits``."""
    return type("LimitedHttpProtocol", (LimitedHttpProtocol,), {"limits": limits})
