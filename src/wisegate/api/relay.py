"""Rendering a relayed upstream answer: its JSON body as is, or its SSE bytes as they arrive."""

from __future__ import annotations

import asyncio
import logging

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from wisegate.domain.drain import Drain, ShuttingDown
from wisegate.domain.relay import RelayedResponse
from wisegate.errors import ApiError
from wisegate.protocol.events import ErrorBody, ErrorEvent, encode_sse

log = logging.getLogger("wisegate.messages")


def relayed_response(relayed: RelayedResponse, headers: dict[str, str] | None, drain: Drain) -> Response:
    if relayed.chunks is None:
        return Response(
            relayed.body or b"", status_code=relayed.status, media_type=relayed.content_type, headers=headers
        )
    return RelayedSSEResponse(relayed, headers, drain)


class RelayedSSEResponse(Response):
    """The upstream's SSE bytes, untouched; a disconnect closes the upstream, usage is always settled."""

    def __init__(self, relayed: RelayedResponse, headers: dict[str, str] | None, drain: Drain) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", relayed.content_type.encode()),
            (b"cache-control", b"no-cache"),
            *((k.encode(), v.encode()) for k, v in (headers or {}).items()),
        ]
        self._relayed = relayed
        self._drain = drain
        self._ended = False  # the last body message is being (or was) sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # One plain watcher task instead of a task group: this runs once per relayed stream, and
        # anyio's task group and cancel scopes cost more than the relay itself.
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        pump = asyncio.current_task()
        assert pump is not None
        gone = cut_off = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            pump.cancel()  # stop waiting on the upstream: the client left

        def cut() -> None:
            nonlocal cut_off
            if not gone and not self._ended:
                cut_off = True
                self._relayed.abort(ShuttingDown.type)  # before the upstream is closed and settled
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
                error = ShuttingDown()
                event = ErrorEvent(error=ErrorBody(type=error.type, message=error.message))
                await send({"type": "http.response.body", "body": encode_sse(event), "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            unsubscribe()
            await self._relayed.aclose()

    async def _pump(self, send: Send) -> None:
        assert self._relayed.chunks is not None
        try:
            async for chunk in self._relayed.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except ApiError as exc:
            error = ErrorEvent(error=ErrorBody(type=exc.type, message=exc.message))
            await send({"type": "http.response.body", "body": encode_sse(error), "more_body": True})
        except Exception:
            log.exception("relayed stream failed after it started")
            error = ErrorEvent(error=ErrorBody(type="api_error", message="Internal server error"))
            await send({"type": "http.response.body", "body": encode_sse(error), "more_body": True})
        self._ended = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
