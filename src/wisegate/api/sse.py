"""The one SSE writer: a response's encoded events as they come, cut short the same way everywhere.

:class:`SSEResponse` sends ``chunks`` (already encoded: the typed path's events, a relayed upstream's
bytes, OpenAI chunks). When the client disconnects it stops waiting on them; when the server's drain
cuts the stream it tells the source why (``abort``) and ends with an error event; a failure mid-stream
ends with an error event too. Either way the source is closed (``aclose``), which stops the backend and
settles usage exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from wisegate.domain.drain import Drain, ShuttingDown
from wisegate.errors import ApiError
from wisegate.protocol.events import ErrorBody, ErrorEvent, encode_sse

log = logging.getLogger("wisegate.messages")

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


class Source(Protocol):
    """What the chunks come from: told why it ends early, then always closed."""

    def abort(self, error_type: str) -> None: ...

    async def aclose(self) -> None: ...


def error_event(error: ApiError) -> bytes:
    """The Claude API's ``error`` event ending a stream."""
    return encode_sse(ErrorEvent(error=ErrorBody(type=error.type, message=error.message)))


class SSEResponse(Response):
    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        source: Source,
        headers: dict[str, str] | None,
        drain: Drain,
        *,
        content_type: str = SSE_CONTENT_TYPE,
        error_tail: Callable[[ApiError], bytes] = error_event,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = [(b"content-type", content_type.encode()), (b"cache-control", b"no-cache")]
        self.raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        self._chunks = chunks
        self._source = source
        self._drain = drain
        self._error_tail = error_tail
        self._ended = False  # the last body message is being (or was) sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # One plain watcher task instead of a task group: this runs once per stream, and anyio's task
        # group and cancel scopes cost more than relaying a stream does.
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        pump = asyncio.current_task()
        assert pump is not None
        gone = cut_off = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            pump.cancel()  # stop waiting on the source: the client left

        def cut() -> None:
            nonlocal cut_off
            if not gone and not self._ended:
                cut_off = True
                self._source.abort(ShuttingDown.type)  # before the source is closed and settled
                pump.cancel()

        watcher = asyncio.create_task(watch())
        unsubscribe = self._drain.subscribe(cut)
        try:
            await self._pump(send)
        except asyncio.CancelledError:
            if not (gone or cut_off):
                raise
            pump.uncancel()
            if cut_off:  # the drain's deadline: the client learns why its stream ends here
                self._ended = True
                tail = self._error_tail(ShuttingDown())
                await send({"type": "http.response.body", "body": tail, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            unsubscribe()
            with anyio.CancelScope(shield=True):
                await self._source.aclose()

    async def _pump(self, send: Send) -> None:
        try:
            async for chunk in self._chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except ApiError as exc:
            await send({"type": "http.response.body", "body": self._error_tail(exc), "more_body": True})
        except Exception:
            log.exception("stream failed after it started")
            tail = self._error_tail(ApiError("Internal server error"))
            await send({"type": "http.response.body", "body": tail, "more_body": True})
        self._ended = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
