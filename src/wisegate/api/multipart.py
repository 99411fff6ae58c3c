"""A streaming ``multipart/form-data`` reader: parts arrive one at a time, their bytes as they are read.

Nothing is buffered beyond one network chunk, so an upload's size limit is enforced while reading and its
bytes can be streamed straight to storage::

    reader = MultipartReader(request, max_body=limit)
    while (part := await reader.next_part()) is not None:
        if part.name == "file":
            await store(reader.data())        # an async iterator over this part's bytes
        else:
            value = await reader.text()

``python-multipart``'s push parser does the parsing; malformed bodies are a 400, bodies past ``max_body``
a 413 (``request_too_large``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from wisegate.api.disposition import decode_header, disposition_params
from wisegate.errors import InvalidRequest, RequestTooLarge
from wisegate.protocol.bounds import echo
from wisegate.protocol.numbers import ascii_integer

_MAX_BOUNDARY = 70


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None


class _End:
    pass


_Event = Part | bytes | _End


class MultipartReader:
    def __init__(self, request: Request, max_body: int) -> None:
        content_type = request.headers.get("content-type", "")
        mime, params = parse_options_header(content_type)
        if mime != b"multipart/form-data" or not params.get(b"boundary"):
            raise InvalidRequest("The request body must be multipart/form-data (with a boundary).")
        if len(params[b"boundary"]) > _MAX_BOUNDARY:
            raise InvalidRequest(
                f"The multipart boundary is {len(params[b'boundary'])} characters long; RFC 2046 allows at "
                f"most {_MAX_BOUNDARY}."
            )
        declared = request.headers.get("content-length")
        if declared is not None and (ascii_integer(declared) or 0) > max_body:
            raise _too_large(max_body)
        self._request = request
        self._max_body = max_body
        self._events = self._parse(params[b"boundary"])
        self._in_part = False
        self._part_name = ""

    async def next_part(self) -> Part | None:
        """The next part's headers (skipping what is left of the current one), or ``None`` at the end."""
        async for event in self._events:
            if isinstance(event, Part):
                self._in_part = True
                self._part_name = event.name
                return event
            if isinstance(event, _End):
                self._in_part = False
        return None

    async def data(self) -> AsyncIterator[bytes]:
        """The current part's bytes, as they arrive."""
        while self._in_part:
            event = await anext(self._events, None)
            if event is None:
                return
            if isinstance(event, _End):
                self._in_part = False
                return
            if isinstance(event, bytes):
                if event:
                    yield event

    async def text(self, limit: int = 64 * 1024) -> str:
        """The current part as UTF-8 text (a plain form field)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.data():
            size += len(chunk)
            if size > limit:
                raise InvalidRequest(f"{echo(self._part_name)}: a form field is longer than {limit} bytes")
            chunks.append(chunk)
        try:
            return b"".join(chunks).decode()
        except UnicodeDecodeError:
            # Surrogates encoded as UTF-8 bytes (CESU-8) are refused here too: they are not UTF-8.
            raise InvalidRequest(f"{echo(self._part_name)}: the form field is not valid UTF-8") from None

    async def _parse(self, boundary: bytes) -> AsyncIterator[_Event]:
        pending: list[_Event] = []
        header_field: list[bytes] = []
        header_value: list[bytes] = []
        headers: dict[str, str] = {}
        finished = False

        def on_part_begin() -> None:
            headers.clear()

        def on_header_field(data: bytes, start: int, end: int) -> None:
            header_field.append(data[start:end])

        def on_header_value(data: bytes, start: int, end: int) -> None:
            header_value.append(data[start:end])

        def on_header_end() -> None:
            field = b"".join(header_field).decode("latin-1")
            headers[field.lower()] = decode_header(field, b"".join(header_value))
            header_field.clear()
            header_value.clear()

        def on_headers_finished() -> None:
            params = disposition_params(headers.get("content-disposition", ""))
            name = params.get("name")
            if name is None:
                raise InvalidRequest("A multipart part has no name in its Content-Disposition header.")
            pending.append(
                Part(name=name, filename=params.get("filename"), content_type=headers.get("content-type"))
            )

        def on_part_data(data: bytes, start: int, end: int) -> None:
            pending.append(data[start:end])

        def on_part_end() -> None:
            pending.append(_End())

        def on_end() -> None:
            nonlocal finished
            finished = True

        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": on_part_begin,
                "on_header_field": on_header_field,
                "on_header_value": on_header_value,
                "on_header_end": on_header_end,
                "on_headers_finished": on_headers_finished,
                "on_part_data": on_part_data,
                "on_part_end": on_part_end,
                "on_end": on_end,
            },
        )
        size = 0
        async for chunk in self._request.stream():
            size += len(chunk)
            if size > self._max_body:
                raise _too_large(self._max_body)
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise InvalidRequest(f"The multipart/form-data body is malformed: {exc}") from None
            for event in pending:
                yield event
            pending.clear()
        parser.finalize()
        for event in pending:
            yield event
        if not finished:
            raise InvalidRequest("The multipart/form-data body ended before its closing boundary.")


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"Request exceeds the maximum allowed number of bytes ({limit}) for this endpoint."
    )
