"""``/v1/files``: upload (multipart, streamed to storage), list, metadata, content, delete."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from wisegate.api.auth import authenticate
from wisegate.api.disposition import attachment
from wisegate.api.multipart import MultipartReader
from wisegate.api.paging import list_limit
from wisegate.api.render import json_response
from wisegate.domain.files import Staged
from wisegate.domain.skills import decode_position, position_cursor
from wisegate.errors import InvalidRequest
from wisegate.protocol.files import CursorPage, DeletedFile, FileMetadata
from wisegate.protocol.numbers import ascii_integer
from wisegate.protocol.resources import rfc3339
from wisegate.records.files import FileRecord
from wisegate.services import services_of

# Room for the multipart framing and small form fields around the file part.
_FRAMING = 1024 * 1024


def metadata(record: FileRecord) -> FileMetadata:
    return FileMetadata(
        id=record.id,
        filename=record.filename,
        mime_type=record.mime_type,
        size_bytes=record.size_bytes,
        created_at=rfc3339(record.created_at),
        downloadable=record.downloadable,
        expires_at=rfc3339(record.expires_at) if record.expires_at else None,
    )


async def upload_file(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    files = services.files
    reader = MultipartReader(request, max_body=files.max_file_bytes + _FRAMING)
    staged: Staged | None = None
    filename: str | None = None
    content_type: str | None = None
    expires: int | None = None
    try:
        while (part := await reader.next_part()) is not None:
            if part.name == "file":
                if staged is not None:
                    raise InvalidRequest("file: send exactly one part named 'file'")
                filename, content_type = part.filename, part.content_type
                staged = await files.receive(principal, reader.data(), _declared(request))
            elif part.name == "expires_in_seconds":
                expires = ascii_integer((await reader.text()).strip())
                if expires is None:
                    raise InvalidRequest("expires_in_seconds: Input should be a valid integer")
        if staged is None:
            raise InvalidRequest("file: Field required (send the file as a multipart part named 'file')")
        record = await files.commit(principal, staged, filename, content_type, expires_in_seconds=expires)
    finally:
        if staged is not None:
            await files.discard(staged)
    return json_response(metadata(record))


def _declared(request: Request) -> int | None:
    """The request's ``Content-Length``: an upper bound of the file's size, reserved up front."""
    length = request.headers.get("content-length", "")
    return int(length) if length.isascii() and length.isdigit() else None


async def list_files(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    params = request.query_params
    limit = list_limit(request)
    before, after, page = params.get("before_id"), params.get("after_id"), params.get("page")
    if sum(1 for v in (before, after, page) if v) > 1:
        raise InvalidRequest("before_id, after_id and page cannot be combined")
    ids = [i for raw in params.getlist("ids[]") + params.getlist("ids") for i in raw.split(",") if i]
    if ids and len(set(ids)) > 100:
        raise InvalidRequest("ids: at most 100 ids")
    if params.get("scope_id"):
        records: list[FileRecord] = []
        has_more = False  # Wisegate creates no session-scoped files
    else:
        records, has_more = await services.files.page(
            principal,
            limit,
            after_id=after,
            before_id=before,
            after=decode_position(page, "file") if page else None,
            ids=ids or None,
        )
    data = [metadata(r) for r in records]
    body = CursorPage[FileMetadata](
        data=data,
        has_more=has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        next_page=position_cursor(records[-1].created_at, records[-1].id)
        if has_more and not before
        else None,
    )
    return json_response(body)


async def get_file(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    return json_response(metadata(await services.files.get(principal, request.path_params["file_id"])))


async def file_content(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    record, chunks = await services.files.download(principal, request.path_params["file_id"])
    return StreamingResponse(
        chunks,
        media_type=record.mime_type,
        headers={
            "content-length": str(record.size_bytes),
            "content-disposition": attachment(record.filename),
        },
    )


async def delete_file(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    record = await services.files.delete(principal, request.path_params["file_id"])
    return json_response(DeletedFile(id=record.id))
