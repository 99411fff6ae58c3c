"""Lossless passthrough: a validated request whose backend relays bytes (``RawRelay``) goes up as the
client's own JSON and comes back as the upstream's own bytes; the usage record is settled from the
upstream's usage fields exactly as for the typed path (also when the client goes away mid-stream).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import TYPE_CHECKING

import anyio

from wisegate.backends.base import RelayRequest, relay_of
from wisegate.backends.upstream import rewrite_json
from wisegate.errors import ApiError, ApiInternal
from wisegate.protocol.content import FileSource
from wisegate.protocol.messages import Usage

if TYPE_CHECKING:
    from wisegate.backends.registry import ServedModel
    from wisegate.domain.call import Call, Wire
    from wisegate.domain.limits import RateLimitSnapshot
    from wisegate.domain.settlement import Settlement
    from wisegate.protocol.messages import CountTokensRequest, MessagesRequest


class RelayedResponse:
    """What goes back to the client: ``body`` (JSON) or ``chunks`` (SSE). Closing settles usage once."""

    def __init__(
        self,
        status: int,
        content_type: str,
        body: bytes | None,
        chunks: AsyncGenerator[bytes] | None,
        settle: Settlement,
        usage: Usage,
    ) -> None:
        self.status = status
        self.content_type = content_type
        self.body = body
        self.chunks = chunks
        self._settle = settle
        self._usage = usage  # the upstream's, kept current by the backend while ``chunks`` is read
        self.rate_limits: RateLimitSnapshot | None = settle.rate_limits

    def abort(self, error_type: str) -> None:
        """Record why the response ends before the upstream finished (settled by ``aclose``)."""
        self._settle.abort(error_type)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            if self.chunks is not None:
                await self.chunks.aclose()
            await self._settle.finish(self._usage)


async def relay(call: Call, settle: Settlement) -> RelayedResponse:
    """Send the call's bytes (``call.wire``) through its model's relay; ``settle`` receives the usage
    the upstream reports when the answer ends. Errors before the answer propagate, settled."""
    backend = relay_of(call.served.backend)
    wire = call.wire
    assert backend is not None and wire is not None
    request = call.request
    outgoing = RelayRequest(
        body=wire.body, stream=bool(request.stream), model=request.model, beta=wire.beta, version=wire.version
    )
    try:
        response = await backend.relay(outgoing, call.served.route)
    except BaseException as exc:
        settle.error_type = exc.type if isinstance(exc, ApiError) else "api_error"
        with anyio.CancelScope(shield=True):
            await settle.finish(Usage())
        raise
    if response.chunks is None:
        settle.stop_reason = response.stop_reason
        await settle.finish(response.usage)
        body = response.body
        if call.container is not None and body is not None and response.status == 200:
            body = rewrite_json(body, {"container": call.container})
        return RelayedResponse(response.status, response.content_type, body, None, settle, response.usage)

    upstream = response.chunks

    async def chunks() -> AsyncGenerator[bytes]:
        try:
            async for chunk in upstream:
                if response.stopped:
                    # Settled (journaled) before the end of the stream leaves, as on the typed path.
                    settle.stop_reason = response.stop_reason
                    await settle.finish(response.usage)
                yield chunk
        except ApiError as exc:
            settle.error_type = exc.type
            raise
        except Exception:
            settle.error_type = "api_error"
            raise
        finally:
            settle.stop_reason = response.stop_reason
            if response.error_type and not settle.error_type:
                settle.error_type = response.error_type
            with anyio.CancelScope(shield=True):
                await upstream.aclose()
                await settle.finish(response.usage)

    return RelayedResponse(response.status, response.content_type, None, chunks(), settle, response.usage)


def with_body(call: Call, request: MessagesRequest, fields: dict[str, object] | None = None) -> Call:
    """``call`` asking ``request`` instead; the bytes that go up follow: ``fields`` rewritten in them,
    or (without ``fields``) the whole request encoded again."""
    assert call.wire is not None
    body = rewrite_json(call.wire.body, fields) if fields is not None else request_bytes(request)
    return replace(call, request=request, wire=replace(call.wire, body=body))


def refers_to_stored(request: MessagesRequest) -> bool:
    """Whether the request names a stored file (``"source": {"type": "file"}``, also in a tool
    result) or loads skills (``container``); other requests go up without being re-encoded. Decided
    on the parsed request: JSON escapes (``"\\u0066ile"``) cannot hide an id from it."""
    return request.container is not None or any(
        isinstance(item.source, FileSource) for _, item in request.media()
    )


def request_bytes(request: MessagesRequest | CountTokensRequest) -> bytes:
    """A request as JSON with the fields the client sent (unknown ones included)."""
    document = request.model_dump(mode="json", exclude_unset=True)
    if document.get("container") is None:
        document.pop("container", None)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


async def count_relayed(served: ServedModel, request: CountTokensRequest, wire: Wire) -> int:
    """count_tokens through the relay: the client's bytes and betas go up, ``input_tokens`` comes back."""
    backend = relay_of(served.backend)
    assert backend is not None
    outgoing = RelayRequest(
        body=wire.body,
        stream=False,
        model=request.model,
        beta=wire.beta,
        version=wire.version,
        count_tokens=True,
    )
    response = await backend.relay(outgoing, served.route)
    try:
        return int(json.loads(response.body or b"{}")["input_tokens"])
    except (ValueError, KeyError, TypeError):
        raise ApiInternal("The upstream answered count_tokens without input_tokens.") from None
