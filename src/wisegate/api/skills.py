"""``/v1/skills`` and ``/v1/skills/{id}/versions``: multipart ``files[]`` uploads, cursor-paged lists."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from wisegate.api.auth import authenticate
from wisegate.api.disposition import attachment
from wisegate.api.multipart import MultipartReader
from wisegate.api.paging import list_limit
from wisegate.api.render import json_response
from wisegate.domain.skills import SkillFile
from wisegate.errors import InvalidRequest, RequestTooLarge
from wisegate.protocol.files import (
    CursorPage,
    DeletedSkill,
    DeletedSkillVersion,
    Skill,
    SkillSource,
    SkillVersion,
)
from wisegate.protocol.resources import rfc3339
from wisegate.records.files import SkillRecord, SkillVersionRecord
from wisegate.services import services_of


def _skill(record: SkillRecord) -> Skill:
    latest = record.latest_version or ""
    return Skill(
        id=record.id,
        source=SkillSource(type="custom"),
        display_name=record.display_name,
        latest_version_id=latest,
        created_at=rfc3339(record.created_at),
        updated_at=rfc3339(record.updated_at),
        display_title=record.display_name,
        latest_version=latest,
    )


def _version(record: SkillVersionRecord) -> SkillVersion:
    return SkillVersion(
        id=record.version,
        skill_id=record.skill_id,
        name=record.name,
        description=record.description,
        created_at=rfc3339(record.created_at),
        version=record.version,
        directory=record.directory,
    )


async def _read_upload(request: Request, max_bytes: int) -> tuple[list[SkillFile], str | None]:
    """The ``files[]`` parts (path from each part's filename) and an optional ``display_name``."""
    reader = MultipartReader(request, max_body=max_bytes + 256 * 1024)
    files: list[SkillFile] = []
    display_name: str | None = None
    total = 0
    while (part := await reader.next_part()) is not None:
        if part.name in ("files[]", "files"):
            if not part.filename:
                raise InvalidRequest("files: every file part needs a filename (its path inside the skill)")
            chunks = []
            async for chunk in reader.data():
                total += len(chunk)
                if total > max_bytes:
                    raise RequestTooLarge(f"files: a skill upload may total at most {max_bytes} bytes")
                chunks.append(chunk)
            files.append(SkillFile(part.filename, b"".join(chunks)))
        elif part.name in ("display_name", "display_title"):
            display_name = await reader.text()
    if not files:
        raise InvalidRequest(
            "files: Field required (send the skill's files as multipart parts named 'files[]')"
        )
    return files, display_name


async def create_skill(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    files, display_name = await _read_upload(request, services.skills.max_bytes)
    return json_response(_skill(await services.skills.create(principal, files, display_name)))


async def list_skills(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    params = request.query_params
    skills, next_page = await services.skills.page(
        principal, list_limit(request), params.get("page"), params.get("source")
    )
    data = [_skill(s) for s in skills]
    return json_response(
        CursorPage[Skill](
            data=data,
            has_more=next_page is not None,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            next_page=next_page,
        )
    )


async def get_skill(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    return json_response(_skill(await services.skills.get(principal, request.path_params["skill_id"])))


async def delete_skill(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    skill_id = request.path_params["skill_id"]
    await services.skills.delete(principal, skill_id)
    return json_response(DeletedSkill(id=skill_id))


async def create_version(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    skill_id = request.path_params["skill_id"]
    await services.skills.get(principal, skill_id)  # 404 before reading the upload
    files, _ = await _read_upload(request, services.skills.max_bytes)
    return json_response(_version(await services.skills.create_version(principal, skill_id, files)))


async def list_versions(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    versions, next_page = await services.skills.versions(
        principal, request.path_params["skill_id"], list_limit(request), request.query_params.get("page")
    )
    data = [_version(v) for v in versions]
    return json_response(
        CursorPage[SkillVersion](
            data=data,
            has_more=next_page is not None,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            next_page=next_page,
        )
    )


async def get_version(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    params = request.path_params
    return json_response(
        _version(await services.skills.version(principal, params["skill_id"], params["version"]))
    )


async def delete_version(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    params = request.path_params
    record = await services.skills.delete_version(principal, params["skill_id"], params["version"])
    return json_response(DeletedSkillVersion(id=record.version))


async def version_content(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    params = request.path_params
    record = await services.skills.version(principal, params["skill_id"], params["version"])
    chunks = await services.skills.archive(principal, params["skill_id"], record.version)
    return StreamingResponse(
        chunks,
        media_type="application/zip",
        headers={"content-disposition": attachment(f"{record.name}.zip")},
    )
