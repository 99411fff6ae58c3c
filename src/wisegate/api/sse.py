"""The one SSE writer: a response's encoded events as they come, cut short the same way everywhere.

:class:`SSEResponse` sends ``chunks`` (already encoded: the typed path's events, a relayed upstream's
bytes, OpenAI chunks). When the client disconnects it stops waiting on them; when the server's drain
cuts the stream it tells the source why (``abort``) and ends with an error event; a failure mid-stream
ends with an error event too. Either way the source is closed (``aclose``), which stops the backend and
settles usage exactly once.

Keep-alive: when ``ping_seconds`` pass without a chunk (a long prefill, a slow upstream, a code-execution
call), the writer sends ``ping`` (the Claude API's ``event: ping``; an SSE comment for OpenAI streams) so
that proxies and clients with read timeouts keep the connection. A relayed upstream's bytes may stop
inside an event; a ping waits for the event's end (a blank line) so it never splits one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from wisegate.domain.drain import Drain, ShuttingDown
from wisegate.errors import ApiError
from wisegate.protocol.events import ErrorBody, ErrorEvent, Ping, encode_sse

log = logging.getLogger("wisegate.messages")

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
PING_EVENT = encode_sse(Ping())
PING_COMMENT = b": ping\n\n"  # what every SSE parser skips: for streams whose clients know no ping event
_EVENT_ENDS = (b"\n\n", b"\r\r", b"\r\n\r\n")


class Source(Protocol):
    """What the chunks come from: told why it ends early, then always closed."""

    def abort(self, error_type: str) -> None: ...

    async def aclose(self) -> None: ...


S = TypeVar("S", bound=Source)


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
        ping_seconds: float = 0.0,
        ping: bytes = PING_EVENT,
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
        self._ping_seconds = ping_seconds
        self._ping = ping
        self._sending = asyncio.Lock()  # the pump's chunks and the keep-alive's pings, one at a time
        self._last_sent = 0.0
        self._tail = b"\n\n"  # the end of what was sent: a ping goes only between events

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
        self._last_sent = asyncio.get_running_loop().time()
        pinger = asyncio.create_task(self._keep_alive(send)) if self._ping_seconds > 0 else None
        try:
            await self._pump(send)
        except asyncio.CancelledError:
            if not (gone or cut_off):
                raise
            pump.uncancel()
            if pinger is not None:  # no ping after the tail
                pinger.cancel()
                await asyncio.wait([pinger])
            if cut_off:  # the drain's deadline: the client learns why its stream ends here
                self._ended = True
                tail = self._error_tail(ShuttingDown())
                await send({"type": "http.response.body", "body": tail, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            if pinger is not None:
                pinger.cancel()
            unsubscribe()
            with anyio.CancelScope(shield=True):
                await self._source.aclose()

    async def _pump(self, send: Send) -> None:
        try:
            async for chunk in self._chunks:
                await self._send(send, chunk)
        except ApiError as exc:
            await self._send(send, self._error_tail(exc))
        except Exception:
            log.exception("stream failed after it started")
            await self._send(send, self._error_tail(ApiError("Internal server error")))
        async with self._sending:
            self._ended = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send(self, send: Send, chunk: bytes) -> None:
        async with self._sending:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            self._last_sent = asyncio.get_running_loop().time()
            if chunk:
                self._tail = (self._tail + chunk)[-4:]

    async def _keep_alive(self, send: Send) -> None:
        """Send a ping whenever ``ping_seconds`` pass without a chunk, between events only."""
        loop = asyncio.get_running_loop()
        try:
            while not self._ended:
                await asyncio.sleep(self._last_sent + self._ping_seconds - loop.time())
                async with self._sending:
                    if self._ended or loop.time() - self._last_sent < self._ping_seconds:
                        continue  # a chunk went out meanwhile
                    if self._tail.endswith(_EVENT_ENDS):
                        await send({"type": "http.response.body", "body": self._ping, "more_body": True})
                    self._last_sent = loop.time()
        except OSError:  # the connection is gone; the pump learns it from the disconnect
            log.debug("keep-alive stopped: the connection is gone")


async def open_sse(
    opening: Coroutine[Any, Any, S],
    render: Callable[[S], AsyncIterator[bytes]],
    headers: Callable[[S], dict[str, str] | None],
    drain: Drain,
    *,
    ping_seconds: float,
    error_tail: Callable[[ApiError], bytes] = error_event,
    ping: bytes = PING_EVENT,
) -> SSEResponse:
    """The SSE response of a stream being opened (``opening``: admission and the first event).

    When the stream opens within ``ping_seconds``, a failure before it is still an HTTP status (with
    ``retry-after`` on a 429 or 529) and the response carries ``headers(stream)``. When it does not (a
    long prefill, an upstream slow to answer), the response starts without it so that pings keep the
    connection, and a failure is the stream's error event."""
    task = asyncio.ensure_future(opening)
    if ping_seconds > 0:
        try:
            await asyncio.wait([task], timeout=ping_seconds)
        except asyncio.CancelledError:  # the server is stopping: the stream, once open, is closed
            task.add_done_callback(_close_when_open)
            raise
    options: dict[str, Any] = {"error_tail": error_tail, "ping_seconds": ping_seconds, "ping": ping}
    if ping_seconds <= 0 or task.done():
        stream = await task
        return SSEResponse(render(stream), stream, headers(stream), drain, **options)
    late = _Late(task)
    return SSEResponse(late.chunks(render), late, None, drain, **options)


def _close_when_open(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is None:
        _closing.add(closing := asyncio.ensure_future(task.result().aclose()))
        closing.add_done_callback(_closing.discard)


_closing: set[asyncio.Future[None]] = set()  # strong references until they finish (asyncio keeps weak ones)


class _Late(Generic[S]):
    """A stream whose opening is still under way as its response starts. The opening is never
    cancelled: a client that leaves, or a drain that cuts the response, closes the stream once it is
    open, so that its admission is always settled by the stream itself."""

    def __init__(self, opening: asyncio.Future[S]) -> None:
        self._opening = opening
        self._stream: S | None = None
        self._aborted: str | None = None

    async def chunks(self, render: Callable[[S], AsyncIterator[bytes]]) -> AsyncIterator[bytes]:
        self._stream = await asyncio.shield(self._opening)  # an ApiError: the error event
        async for chunk in render(self._stream):
            yield chunk

    def abort(self, error_type: str) -> None:
        if self._stream is not None:
            self._stream.abort(error_type)
        else:
            self._aborted = error_type

    async def aclose(self) -> None:
        if self._stream is None:
            try:
                self._stream = await self._opening
            except Exception:  # opening failed: the opener settled it
                return
            if self._aborted is not None:
                self._stream.abort(self._aborted)
        await self._stream.aclose()
