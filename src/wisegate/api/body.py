"""Reading request bodies within an endpoint's size limit, and parsing them into protocol models.

Every JSON body is refused (400) as soon as it nests arrays and objects deeper than
``MAX_JSON_DEPTH``, while it arrives and before a parser builds anything from it.
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from wisegate.errors import InvalidRequest, RequestTooLarge, from_validation_error
from wisegate.protocol.json_depth import DepthGuard, NotFinite, TooDeep
from wisegate.protocol.numbers import ascii_integer
from wisegate.protocol.surrogates import find_lone_surrogate, position, problem, surrogate_path

M = TypeVar("M", bound=BaseModel)


def too_deep(exc: TooDeep, where: str = "The request body") -> InvalidRequest:
    return InvalidRequest(
        f"{where} nests JSON arrays and objects deeper than {exc.limit} levels, the most this server accepts."
    )


def not_finite(exc: NotFinite, where: str = "The request body") -> InvalidRequest:
    return InvalidRequest(f"{where} is not valid JSON: {exc}")


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"Request exceeds the maximum allowed number of bytes ({limit}) for this endpoint."
    )


async def read_json(request: Request, limit: int) -> bytes:
    """The JSON body, refused with 413 as soon as it passes ``limit`` bytes (never buffered beyond
    it) and with 400 as soon as it nests deeper than ``MAX_JSON_DEPTH``."""
    declared = request.headers.get("content-length")
    if declared is not None and (ascii_integer(declared) or 0) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    guard = DepthGuard(finite=True)
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        try:
            guard.feed(chunk)
        except TooDeep as exc:
            raise too_deep(exc) from None
        except NotFinite as exc:
            raise not_finite(exc) from None
        chunks.append(chunk)
    return b"".join(chunks)


async def parse(request: Request, model: type[M], limit: int) -> M:
    """Read and validate a JSON body; 400 ``invalid_request_error`` naming the field otherwise."""
    return (await parse_with_bytes(request, model, limit))[0]


async def parse_with_bytes(request: Request, model: type[M], limit: int) -> tuple[M, bytes]:
    """``parse``, also returning the bytes as received (for lossless passthrough)."""
    body = await read_json(request, limit)
    if not body.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        return model.model_validate_json(body), body
    except ValidationError as exc:
        surrogate = _lone_surrogate(body) if _escape_error(exc) else None
        raise surrogate or from_validation_error(exc) from None


def _escape_error(exc: ValidationError) -> bool:
    """Whether the parser stopped at a ``\\u`` escape (where a lone surrogate stops it)."""
    first = exc.errors(include_url=False)[0]
    return first["type"] == "json_invalid" and "escape" in str(first.get("ctx", {}).get("error", ""))


def _lone_surrogate(body: bytes) -> InvalidRequest | None:
    """The 400 for a JSON body whose strings hold a lone UTF-16 surrogate (``"\\ud800"``), naming the
    field and the place; ``None`` when there is none. Called once parsing has failed: costs nothing on
    the way of a valid body."""
    found = find_lone_surrogate(body)
    if found is None:
        return None
    offset, code = found
    message = f"{problem(code)}: {position(body, offset)}"
    try:
        located = surrogate_path(json.loads(body))  # the standard parser keeps lone surrogates
    except ValueError:  # RecursionError cannot happen: the depth is bounded while reading
        located = None
    if located is not None and located[0]:
        message = f"{located[0]}: {message}"
    return InvalidRequest(message)
