"""Reading request bodies within an endpoint's size limit, and parsing them into protocol models."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from wisegate.errors import InvalidRequest, RequestTooLarge, from_validation_error

M = TypeVar("M", bound=BaseModel)


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"Request exceeds the maximum allowed number of bytes ({limit}) for this endpoint."
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes (never buffered beyond it)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def parse(request: Request, model: type[M], limit: int) -> M:
    """Read and validate a JSON body; 400 ``invalid_request_error`` naming the field otherwise."""
    return (await parse_with_bytes(request, model, limit))[0]


async def parse_with_bytes(request: Request, model: type[M], limit: int) -> tuple[M, bytes]:
    """``parse``, also returning the bytes as received (for lossless passthrough)."""
    body = await read_body(request, limit)
    if not body.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        return model.model_validate_json(body), body
    except ValidationError as exc:
        raise from_validation_error(exc) from None
