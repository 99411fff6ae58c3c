"""Reading a batch submission: incrementally, within its byte limit, envelope by envelope.

The body (up to 256 MB) is never held in memory: it is parsed as it arrives with ijson (nesting
bounded as in ``api/body.py``) and the requests
are spooled to a temporary file (in memory up to 8 MB, on disk past that) that storage then reads in
chunks. Only the envelope is checked here (JSON, the ``requests`` array, ``custom_id`` format and
uniqueness, counts and sizes); ``params`` is validated when the request runs, as the Claude API does,
and an invalid one ends as an ``errored`` result (``workers/batches.py``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import ijson
from pydantic import ValidationError
from starlette.requests import Request

from wisegate.api.body import not_finite, too_deep
from wisegate.errors import InvalidRequest, RequestTooLarge, from_validation_error
from wisegate.protocol.batches import BatchRequestEnvelope
from wisegate.protocol.bounds import echo
from wisegate.protocol.json_depth import DepthGuard, NotFinite, TooDeep
from wisegate.protocol.numbers import ascii_integer
from wisegate.protocol.surrogates import LoneSurrogate, SurrogateGuard

_SPOOL_IN_MEMORY = 8 * 1024 * 1024


class SpooledRequests:
    """``(custom_id, params_json)`` pairs in a temporary file; iterate, then close."""

    def __init__(self) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY, mode="w+b")
        self.count = 0

    def add(self, custom_id: str, params_json: str) -> None:
        self._file.write(f"{custom_id}\t{params_json}\n".encode())
        self.count += 1

    def __iter__(self) -> Iterator[tuple[str, str]]:
        self._file.seek(0)
        for line in self._file:
            custom_id, _, params = line.decode().rstrip("\n").partition("\t")
            yield custom_id, params

    def close(self) -> None:
        self._file.close()


class _Body:
    """The request stream as the ``async read`` ijson wants, refused past ``limit`` bytes and past
    ``MAX_JSON_DEPTH`` levels of nesting (before ijson sees the chunk: its memory grows with the
    square of the depth), and stopped just before a lone UTF-16 surrogate (which ijson's C backend
    would turn into ``?``, or fail on): ijson has then read what precedes the string that holds it."""

    def __init__(self, chunks: AsyncIterator[bytes], limit: int) -> None:
        self._chunks = chunks
        self._limit = limit
        self._size = 0
        self._guard = DepthGuard(finite=True)
        self._text = SurrogateGuard()

    async def read(self, n: int = -1) -> bytes:
        if n == 0:  # ijson probes the type of the stream with read(0)
            return b""
        async for chunk in self._chunks:
            if not chunk:
                continue
            self._size += len(chunk)
            if self._size > self._limit:
                raise _too_large(self._limit)
            try:
                self._guard.feed(chunk)
            except TooDeep as exc:
                raise too_deep(exc) from None
            except NotFinite as exc:
                raise not_finite(exc) from None
            clean = self._text.feed(chunk)
            if clean:
                return clean
        return self._text.end()


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"Request exceeds the maximum allowed number of bytes ({limit}) for this endpoint."
    )


async def read_batch(request: Request, max_bytes: int, max_requests: int) -> SpooledRequests:
    """Parse ``{"requests": [...]}``; 400 naming the first bad envelope, 413 past the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and (ascii_integer(declared) or 0) > max_bytes:
        raise _too_large(max_bytes)
    spool = SpooledRequests()
    try:
        await _parse(_Body(request.stream().__aiter__(), max_bytes), spool, max_requests)
    except BaseException:
        spool.close()
        raise
    return spool


async def _parse(body: _Body, spool: SpooledRequests, max_requests: int) -> None:
    seen: set[str] = set()
    has_requests = False
    builder: Any = None
    event = ""
    try:
        async for prefix, event, value in ijson.parse_async(body, use_float=True):
            if builder is not None:
                builder.event(event, value)
                if prefix == "requests.item" and event in ("end_map", "end_array"):
                    _add(builder.value, spool, seen, max_requests)
                    builder = None
            elif prefix == "":
                if event == "map_key":
                    if value != "requests":
                        raise InvalidRequest(f"{echo(value)}: Extra inputs are not permitted")
                    has_requests = True
                elif event not in ("start_map", "end_map"):
                    raise InvalidRequest("The request body must be a JSON object.")
            elif prefix == "requests":
                if event not in ("start_array", "end_array"):
                    raise InvalidRequest("requests: Input should be a valid list")
            elif prefix == "requests.item":
                if event in ("start_map", "start_array"):
                    builder = ijson.ObjectBuilder()
                    builder.event(event, value)
                else:
                    _add(value, spool, seen, max_requests)
    except ijson.JSONError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {_said(exc)}") from None
    except UnicodeDecodeError:
        raise InvalidRequest("The request body is not valid JSON: it is not UTF-8 text") from None
    except LoneSurrogate as exc:
        where = ".".join(["requests", str(spool.count), *_open_path(builder, event)]) if builder else ""
        raise InvalidRequest(
            f"{where}: {exc} (byte {exc.offset})" if where else f"{exc} (byte {exc.offset})"
        ) from None
    if not has_requests:
        raise InvalidRequest("requests: Field required")
    if spool.count == 0:
        raise InvalidRequest("requests: List should have at least 1 item after validation, not 0")


def _open_path(builder: Any, last_event: str) -> list[str]:
    """The path, inside the request being built, of the value ijson is about to read: each open
    container's place in its parent, then the pending key or the next index."""
    parts: list[str] = []
    containers: list[Any] = builder.containers
    for parent, child in zip(containers, containers[1:], strict=False):
        if isinstance(parent, list):
            parts.append(str(len(parent) - 1))
        else:
            parts.append(next(str(k) for k, v in reversed(parent.items()) if v is child))
    top = containers[-1] if containers else None
    if isinstance(top, list):
        parts.append(str(len(top)))
    elif last_event == "map_key":  # else the next thing in the object is a key: the object is the place
        parts.append(str(builder.key))
    return parts


def _add(item: object, spool: SpooledRequests, seen: set[str], max_requests: int) -> None:
    index = spool.count
    if index >= max_requests:
        raise InvalidRequest(f"requests: a batch may contain at most {max_requests} requests")
    custom_id = item.get("custom_id") if isinstance(item, dict) else None
    named = f"requests.{index}" + (f" (custom_id {echo(custom_id)!r})" if isinstance(custom_id, str) else "")
    try:
        envelope = BatchRequestEnvelope.model_validate(item)
    except ValidationError as exc:
        raise InvalidRequest(f"{named}: {from_validation_error(exc).message}") from None
    if envelope.custom_id in seen:
        raise InvalidRequest(
            f"{named}: custom_id {echo(envelope.custom_id)!r} is used by more than one request; "
            "each custom_id must be unique within the batch"
        )
    seen.add(envelope.custom_id)
    spool.add(envelope.custom_id, json.dumps(envelope.params, separators=(",", ":"), ensure_ascii=False))


def _said(exc: Exception) -> str:
    """What yajl says of a document, on one line: its message is ``parse error: …`` and then the text
    around the error with a caret under it, which a client's one-line error would show broken (and
    which repeats the body)."""
    lines = str(exc).strip().splitlines() or ["unreadable"]
    said = lines[0].removeprefix("parse error: ").strip()
    return "a number is out of range" if said == "integer overflow" else said
