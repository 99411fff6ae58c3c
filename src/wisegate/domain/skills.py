"""Skills: bundles of files under one top-level folder with a ``SKILL.md``, versioned per upload.

A version is identified by the Unix epoch time of its upload in microseconds (``"1759178010641129"``),
strictly increasing per skill. Its files are kept as one zip archive in the blob store (served by
``GET …/versions/{version}/content``); the ``SKILL.md`` front matter (``name``, ``description``) and body
are kept in the database for use in Messages (see :mod:`wisegate.domain.attachments`).
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
import anyio.to_thread
import yaml

from wisegate.domain.files import BlobStore, Staging
from wisegate.domain.keys import Principal
from wisegate.domain.storable import storable, storable_name
from wisegate.errors import ApiInternal, Conflict, InvalidRequest, NotFound
from wisegate.protocol import cursors
from wisegate.protocol.bounds import NAME_LENGTH, SKILL_DESCRIPTION_LENGTH, SKILL_DIRECTORY_LENGTH, echo
from wisegate.protocol.messages import new_id
from wisegate.records.files import Position, SkillRecord, SkillVersionRecord
from wisegate.storage.files import NameTaken, SkillRepo

NAME = re.compile(r"^[a-z0-9-]{1,64}$")
RESERVED = ("anthropic", "claude")
XML_TAG = re.compile(r"<[^>]*>")


@dataclass(frozen=True, slots=True)
class SkillFile:
    """One uploaded file: its relative path (``my_skill/SKILL.md``) and bytes."""

    path: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Bundle:
    """A validated upload."""

    directory: str
    name: str
    description: str
    instructions: str
    files: list[SkillFile]

    @property
    def size_bytes(self) -> int:
        return sum(len(f.data) for f in self.files)


def parse_bundle(files: list[SkillFile]) -> Bundle:
    """Check the folder layout and the ``SKILL.md`` front matter; 400 naming what is wrong otherwise."""
    if not files:
        raise InvalidRequest("files: at least one file is required, including SKILL.md")
    directories = set()
    for item in files:
        parts = item.path.replace("\\", "/").split("/")
        if item.path.startswith("/") or "\x00" in item.path or any(p in ("", ".", "..") for p in parts):
            raise InvalidRequest(f"files: invalid file path '{echo(item.path)}'")
        if len(parts) < 2:
            raise InvalidRequest(
                f"files: '{echo(item.path)}' is not inside a folder; all files must be in the same top-level "
                "directory, which must contain SKILL.md"
            )
        directories.add(parts[0])
    if len(directories) != 1:
        raise InvalidRequest(
            "files: all files must be in the same top-level directory (found "
            + ", ".join(sorted(directories))
            + ")"
        )
    directory = storable_name(
        "files: the top-level directory name", directories.pop(), SKILL_DIRECTORY_LENGTH
    )
    paths = [f.path for f in files]
    if len(paths) != len(set(paths)):
        raise InvalidRequest("files: the same path appears more than once")
    skill_md = next((f for f in files if f.path == f"{directory}/SKILL.md"), None)
    if skill_md is None:
        raise InvalidRequest(
            f"files: SKILL.md is required at the root of the top-level directory '{echo(directory)}'"
        )
    name, description, instructions = parse_skill_md(skill_md.data)
    return Bundle(directory, name, description, instructions, files)


_MAX_FRONT_MATTER_DEPTH = 32


class _FrontMatterLoader(yaml.SafeLoader):
    """``SafeLoader`` refusing nesting past ``_MAX_FRONT_MATTER_DEPTH`` (its composer recurses once
    per level: 10,000 levels of ``[[[…`` would exhaust the interpreter's stack)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > _MAX_FRONT_MATTER_DEPTH:
                raise yaml.YAMLError(f"nested deeper than {_MAX_FRONT_MATTER_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def parse_skill_md(data: bytes) -> tuple[str, str, str]:
    """``(name, description, body)`` from a SKILL.md with YAML front matter."""
    try:
        text = data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError:
        raise InvalidRequest("SKILL.md: must be UTF-8 text") from None
    storable("SKILL.md", text, len(text))  # no NUL: its text is stored
    match = re.match(r"^---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|$)(.*)$", text, re.DOTALL)
    if match is None:
        raise InvalidRequest(
            "SKILL.md: must start with YAML front matter between '---' lines, with 'name' and 'description'"
        )
    try:
        front = yaml.load(match.group(1), Loader=_FrontMatterLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"SKILL.md: the front matter is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(front, dict):
        raise InvalidRequest(
            "SKILL.md: the front matter must be a YAML mapping with 'name' and 'description'"
        )
    name, description = front.get("name"), front.get("description")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("SKILL.md: front matter 'name' is required (a string)")
    storable("SKILL.md: front matter 'name'", name, len(name))  # YAML escapes ("\\0", "\\ud800")
    if not NAME.fullmatch(name):
        raise InvalidRequest(
            f"SKILL.md: name '{echo(name)}' must be at most 64 characters of lowercase letters, digits "
            "and hyphens"
        )
    for word in RESERVED:
        if word in name:
            raise InvalidRequest(f"SKILL.md: name '{echo(name)}' must not contain the reserved word '{word}'")
    if not isinstance(description, str) or not description.strip():
        raise InvalidRequest("SKILL.md: front matter 'description' is required (a non-empty string)")
    storable("SKILL.md: front matter 'description'", description, len(description))
    if len(description) > SKILL_DESCRIPTION_LENGTH:
        raise InvalidRequest(
            f"SKILL.md: description is {len(description)} characters; at most {SKILL_DESCRIPTION_LENGTH} "
            "are allowed"
        )
    if XML_TAG.search(description) or XML_TAG.search(name):
        raise InvalidRequest("SKILL.md: name and description must not contain XML tags")
    return name, description.strip(), match.group(2).strip()


def encode_cursor(value: str) -> str:
    """An opaque ``page_…`` cursor."""
    return cursors.encode(value, prefix="page_")


def decode_cursor(page: str) -> str:
    value = cursors.decode(page, prefix="page_")
    if value is None:
        raise InvalidRequest(cursors.problem("page", page))
    return value


def position_cursor(created_at: datetime, item_id: str) -> str:
    """A cursor for newest-first listings; stays valid when the item it names is deleted."""
    return encode_cursor(f"{created_at.isoformat()}|{item_id}")


_ID_TAIL = re.compile(r"_01[1-9A-HJ-NP-Za-km-z]{1,60}")  # what follows the kind in an id we issue


def decode_position(page: str, kind: str) -> Position:
    """The position a ``position_cursor`` of a list of ``kind`` ids (``file``, ``skill``) names; 400 for
    a token that is not one: hand-built, or another list's."""
    created, _, item_id = decode_cursor(page).partition("|")
    moment = cursors.moment(created)
    if moment is None or not _ID_TAIL.fullmatch(item_id.removeprefix(kind)) or not item_id.startswith(kind):
        raise InvalidRequest(cursors.problem("page", page))
    return moment, item_id


def decode_version(page: str) -> str:
    """The version a skill's versions cursor names (the digits of ``_epoch_micros``)."""
    version = decode_cursor(page)
    if cursors.integer(version) is None:
        raise InvalidRequest(cursors.problem("page", page))
    return version


class SkillService:
    def __init__(self, repo: SkillRepo, blobs: BlobStore, staging: Staging, max_bytes: int) -> None:
        self._repo = repo
        self._blobs = blobs
        self._staging = staging
        self.max_bytes = max_bytes

    async def create(
        self, principal: Principal, files: list[SkillFile], display_name: str | None
    ) -> SkillRecord:
        bundle = parse_bundle(files)
        title = (display_name or "").strip() or bundle.name
        if len(title) > 255 or "\n" in title:
            raise InvalidRequest("display_name: must be a single line of at most 255 characters")
        storable_name("display_name", title, NAME_LENGTH)
        now = datetime.now(UTC)
        skill = SkillRecord(
            id=new_id("skill"),
            organization_id=principal.organization_id,
            workspace_id=principal.workspace_id,
            name=bundle.name,
            display_name=title,
            created_at=now,
            updated_at=now,
            latest_version=None,
        )
        version = await self._store(skill.workspace_id, skill.id, bundle, _epoch_micros(None))
        try:
            await self._repo.create(skill, version)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await self._blobs.delete(version.blob_key)
            if isinstance(exc, NameTaken):
                raise Conflict(
                    f"A skill named '{bundle.name}' already exists in this workspace; upload a new version "
                    "of it instead.",
                    details={"error_code": "skill_name_taken"},
                ) from None
            raise
        return await self.get(principal, skill.id)

    async def create_version(
        self, principal: Principal, skill_id: str, files: list[SkillFile]
    ) -> SkillVersionRecord:
        skill = await self.get(principal, skill_id)
        bundle = parse_bundle(files)
        if bundle.name != skill.name:
            raise InvalidRequest(
                f"SKILL.md: name '{bundle.name}' does not match the skill's name '{skill.name}'; every "
                "version of a skill must keep its name"
            )
        version = await self._store(skill.workspace_id, skill.id, bundle, _epoch_micros(skill.latest_version))
        try:
            await self._repo.add_version(version)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._blobs.delete(version.blob_key)
            raise
        return version

    async def get(self, principal: Principal, skill_id: str) -> SkillRecord:
        skill = await self._repo.get(principal.workspace_id, skill_id)
        if skill is None:
            raise NotFound(f"Skill not found: {echo(skill_id)}")
        return skill

    async def page(
        self, principal: Principal, limit: int, page: str | None, source: str | None
    ) -> tuple[list[SkillRecord], str | None]:
        if source not in (None, "", "custom", "anthropic"):
            raise InvalidRequest(f"source: must be 'custom' or 'anthropic', not '{echo(source)}'")
        if source == "anthropic":
            return [], None  # Wisegate ships no Anthropic-published skills
        after = decode_position(page, "skill") if page else None
        skills, has_more = await self._repo.page(principal.workspace_id, limit, after)
        last = skills[-1] if has_more and skills else None
        return skills, position_cursor(last.created_at, last.id) if last else None

    async def delete(self, principal: Principal, skill_id: str) -> None:
        deleted = await self._repo.delete(principal.workspace_id, skill_id)
        if deleted is None:
            raise NotFound(f"Skill not found: {echo(skill_id)}")
        if not deleted:
            raise InvalidRequest(
                f"Cannot delete skill {skill_id}: it still has versions. Delete all of its versions first."
            )

    async def version(self, principal: Principal, skill_id: str, version: str) -> SkillVersionRecord:
        skill = await self.get(principal, skill_id)
        wanted = skill.latest_version if version == "latest" else version
        record = await self._repo.version(skill.id, wanted) if wanted else None
        if record is None:
            raise NotFound(f"Skill version not found: {echo(skill_id)} version {echo(version)}")
        return record

    async def versions(
        self, principal: Principal, skill_id: str, limit: int, page: str | None
    ) -> tuple[list[SkillVersionRecord], str | None]:
        skill = await self.get(principal, skill_id)
        records, has_more = await self._repo.versions(skill.id, limit, decode_version(page) if page else None)
        return records, encode_cursor(records[-1].version) if has_more and records else None

    async def delete_version(self, principal: Principal, skill_id: str, version: str) -> SkillVersionRecord:
        if version == "latest":
            raise InvalidRequest("version: name the version to delete; 'latest' is not accepted here")
        skill = await self.get(principal, skill_id)
        record = await self._repo.delete_version(skill.id, version)
        if record is None:
            raise NotFound(f"Skill version not found: {echo(skill_id)} version {echo(version)}")
        await self._blobs.delete(record.blob_key)
        return record

    async def archive(self, principal: Principal, skill_id: str, version: str) -> AsyncIterator[bytes]:
        """The version's files as a zip archive."""
        record = await self.version(principal, skill_id, version)
        chunks = self._blobs.read(record.blob_key)
        try:
            first = await anext(chunks, b"")
        except FileNotFoundError:
            raise ApiInternal(
                f"The archive of skill {skill_id} version {version} is missing from storage."
            ) from None

        async def replay() -> AsyncIterator[bytes]:
            yield first
            async for chunk in chunks:
                yield chunk

        return replay()

    async def _store(
        self, workspace_id: str, skill_id: str, bundle: Bundle, version: str
    ) -> SkillVersionRecord:
        archive = await anyio.to_thread.run_sync(_zip, bundle)

        async def chunks() -> AsyncIterator[bytes]:
            yield archive

        staged = await self._staging.receive(chunks(), len(archive), lambda: InvalidRequest("archive"))
        key = f"{workspace_id}/skills/{skill_id}/{version}.zip"
        try:
            await self._blobs.put(key, staged.path)
        finally:
            staged.discard()
        return SkillVersionRecord(
            skill_id=skill_id,
            version=version,
            name=bundle.name,
            description=bundle.description,
            directory=bundle.directory,
            instructions=bundle.instructions,
            paths=json.dumps([f.path for f in bundle.files]),
            size_bytes=bundle.size_bytes,
            blob_key=key,
            created_at=datetime.now(UTC),
        )


def _zip(bundle: Bundle) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in bundle.files:
            archive.writestr(item.path, item.data)
    return buffer.getvalue()


def _epoch_micros(latest: str | None) -> str:
    """Now in epoch microseconds, strictly after ``latest``."""
    now = time.time_ns() // 1000
    if latest is not None and latest.isdigit():
        now = max(now, int(latest) + 1)
    return str(now)
