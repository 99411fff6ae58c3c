"""Rendering a relayed upstream answer: its JSON body as is, or its SSE bytes as they arrive."""

from __future__ import annotations

from starlette.responses import Response

from wisegate.api.sse import SSEResponse
from wisegate.domain.drain import Drain
from wisegate.domain.relay import RelayedResponse


def relayed_response(
    relayed: RelayedResponse, headers: dict[str, str] | None, drain: Drain, ping_seconds: float = 0.0
) -> Response:
    if relayed.chunks is None:
        return Response(
            relayed.body or b"", status_code=relayed.status, media_type=relayed.content_type, headers=headers
        )
    return SSEResponse(
        relayed.chunks, relayed, headers, drain, content_type=relayed.content_type, ping_seconds=ping_seconds
    )
