"""Containers: a directory per container on the node that created it, and its database record.

``open`` finds the container a request names (404 for an unknown, expired or other workspace's id; a
clear 400 for one that lives on another node) or creates one, and mounts the request's skills in it.
Every host-side file operation on a container's directories (placing ``container_upload`` files,
collecting outputs) works through directory file descriptors and ``O_NOFOLLOW``, never following a
link the sandboxed code may have planted.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import stat
import time
import zipfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import anyio.to_thread

from wisegate.domain.attachments import LoadedSkill
from wisegate.domain.code_execution.sandbox import Sandbox
from wisegate.domain.files import FileService
from wisegate.domain.keys import Principal
from wisegate.domain.skills import SkillService
from wisegate.errors import InvalidRequest, NotFound
from wisegate.protocol.bounds import echo
from wisegate.protocol.messages import new_id
from wisegate.protocol.resources import rfc3339
from wisegate.records.containers import ContainerRecord
from wisegate.records.files import FileRecord
from wisegate.storage.containers import ContainerRepo

_SWEEP_SECONDS = 60.0
_CHUNK = 1024 * 1024


@dataclass(slots=True)
class Container:
    id: str
    root: Path
    expires_at: datetime
    skills: list[dict[str, str]]
    created_at: datetime
    run_seconds: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def wire(self) -> dict[str, Any]:
        """The response's ``container`` object."""
        return {"id": self.id, "expires_at": rfc3339(self.expires_at), "skills": self.skills or None}


class ContainerService:
    def __init__(
        self,
        repo: ContainerRepo,
        sandbox: Sandbox,
        files: FileService,
        skills: SkillService,
        directory: Path,
        node: str,
        *,
        idle_seconds: int,
        max_age_seconds: int,
    ) -> None:
        self._repo = repo
        self.sandbox = sandbox
        self._files = files
        self._skills = skills
        self._directory = directory
        self.node = node
        self._idle = timedelta(seconds=idle_seconds)
        self._max_age = timedelta(seconds=max_age_seconds)
        self._locks: dict[str, asyncio.Lock] = {}
        self._swept = 0.0

    async def open(
        self, principal: Principal, param: str | dict[str, Any] | None, skills: Sequence[LoadedSkill]
    ) -> Container:
        """The container ``param`` names (``"id"`` or ``{"id"}``), or a new one; skills mounted."""
        await self.sweep()
        wanted = param if isinstance(param, str) else (param or {}).get("id")
        now = datetime.now(UTC)
        if wanted:
            record = await self._repo.get(principal.workspace_id, str(wanted))
            if record is None:
                raise NotFound(f"container: Container not found: {echo(wanted)}")
            if record.expires_at.replace(tzinfo=record.expires_at.tzinfo or UTC) <= now:
                raise NotFound(
                    f"container: Container {echo(wanted)} has expired; omit `container` to start a new one",
                    details={"error_code": "container_expired"},
                )
            if record.node != self.node:
                raise InvalidRequest(
                    f"container: Container {echo(wanted)} lives on node '{record.node}' and this is node "
                    f"'{self.node}'; send requests that reuse it to the node that created it",
                    details={"error_code": "container_on_other_node"},
                )
            created_at = record.created_at.replace(tzinfo=record.created_at.tzinfo or UTC)
            mounted = json.loads(record.skills)
        else:
            record = None
            created_at, mounted = now, []
            wanted = new_id("container")
        root = self._directory / str(wanted)
        await anyio.to_thread.run_sync(self.sandbox.prepare, root)
        if record is None:
            expires = self._expiry(now, created_at)
            await self._repo.add(
                ContainerRecord(
                    id=str(wanted),
                    organization_id=principal.organization_id,
                    workspace_id=principal.workspace_id,
                    node=self.node,
                    skills="[]",
                    created_at=now,
                    last_used_at=now,
                    expires_at=expires,
                )
            )
        mounted = await self._mount(principal, root, mounted, skills)
        lock = self._locks.setdefault(str(wanted), asyncio.Lock())
        return Container(str(wanted), root, self._expiry(now, created_at), mounted, created_at, lock=lock)

    async def close(self, container: Container) -> None:
        """Record the use: new expiry, skills, sandbox time."""
        now = datetime.now(UTC)
        container.expires_at = self._expiry(now, container.created_at)
        await self._repo.touch(
            container.id,
            now,
            container.expires_at,
            json.dumps(container.skills),
            int(container.run_seconds * 1000),
        )

    def _expiry(self, now: datetime, created_at: datetime) -> datetime:
        return min(now + self._idle, created_at + self._max_age)

    async def sweep(self, *, force: bool = False) -> int:
        """Delete this node's expired containers (rows and directories); at most once a minute."""
        if not force and time.monotonic() - self._swept < _SWEEP_SECONDS:
            return 0
        self._swept = time.monotonic()
        ids = await self._repo.expired(self.node, datetime.now(UTC))
        for container_id in ids:
            await anyio.to_thread.run_sync(_remove, self._directory / container_id)
            await self._repo.delete(container_id)
            self._locks.pop(container_id, None)
        return len(ids)

    async def _mount(
        self, principal: Principal, root: Path, mounted: list[dict[str, str]], skills: Sequence[LoadedSkill]
    ) -> list[dict[str, str]]:
        """Unpack each skill version not yet in the container under ``skills/<directory>``."""
        have = {(m["skill_id"], m["version"]) for m in mounted}
        for skill in skills:
            if (skill.skill_id, skill.version.version) in have:
                continue
            chunks = await self._skills.archive(principal, skill.skill_id, skill.version.version)
            data = b"".join([chunk async for chunk in chunks])
            target = root / "skills" / skill.version.directory
            await anyio.to_thread.run_sync(_unpack, data, skill.version.directory, target)
            mounted = [m for m in mounted if m["skill_id"] != skill.skill_id]
            mounted.append({"type": skill.type, "skill_id": skill.skill_id, "version": skill.version.version})
        return mounted

    async def upload(self, principal: Principal, container: Container, file_id: str) -> str:
        """Place a stored file into ``uploads/``; returns its name there."""
        record, data = await self._files.read_bytes(principal, file_id, self._files.max_file_bytes)
        uid = self.sandbox.uid if self.sandbox.as_other_user else None
        await anyio.to_thread.run_sync(_place, container.root / "uploads", record.filename, data, uid)
        return record.filename

    def snapshot(self, container: Container) -> dict[str, tuple[int, int]]:
        """``{relative path: (mtime_ns, size)}`` of the regular files in ``outputs/``."""
        return {path: (st.st_mtime_ns, st.st_size) for path, st in _regular_files(container.root / "outputs")}

    async def collect(
        self, principal: Principal, container: Container, before: dict[str, tuple[int, int]]
    ) -> list[FileRecord]:
        """Store the files created or changed in ``outputs/`` since ``before`` as downloadable Files."""
        after = await anyio.to_thread.run_sync(self.snapshot, container)
        records = []
        for path, key in sorted(after.items()):
            if before.get(path) == key:
                continue
            if key[1] > self._files.max_file_bytes:
                raise OutputTooLarge(path)
            staged = await self._files.receive(principal, _read_nofollow(container.root / "outputs", path))
            try:
                name = PurePosixPath(path).name
                records.append(await self._files.commit(principal, staged, name, None, downloadable=True))
            finally:
                staged.discard()
        return records

    def remove_since(self, container: Container, started: float) -> None:
        """Delete what the sandbox wrote since ``started`` (a call that went past the disk quota)."""
        for name in ("home", "tmp", "uploads", "outputs"):
            for path, st in _regular_files(container.root / name):
                if st.st_mtime >= started:
                    with contextlib.suppress(OSError):
                        os.unlink(container.root / name / path)


def _remove(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


class OutputTooLarge(Exception):
    """A file in ``outputs/`` is larger than a File may be."""


def _regular_files(directory: Path) -> list[tuple[str, os.stat_result]]:
    found = []
    for parent, _dirs, files in os.walk(directory):  # does not descend into linked directories
        for name in files:
            full = os.path.join(parent, name)
            with contextlib.suppress(OSError):
                st = os.lstat(full)
                if stat.S_ISREG(st.st_mode):
                    found.append((os.path.relpath(full, directory), st))
    return found


async def _read_nofollow(directory: Path, relative: str) -> AsyncIterator[bytes]:
    def opened() -> int:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            for part in PurePosixPath(relative).parts[:-1]:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = inner
            name = PurePosixPath(relative).name
            return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        finally:
            os.close(fd)

    handle = await anyio.to_thread.run_sync(opened)
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            return
        while chunk := await anyio.to_thread.run_sync(os.read, handle, _CHUNK):
            yield chunk
    finally:
        os.close(handle)


def _place(directory: Path, filename: str, data: bytes, uid: int | None) -> None:
    """Write ``data`` as ``directory/filename``, replacing whatever is there (a planted link included)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    temp = f".upload-{new_id('tmp')}"
    try:
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd)
        try:
            _write_all(out, data)
            if uid is not None:
                os.fchown(out, uid, uid)
        finally:
            os.close(out)
        try:
            os.rename(temp, filename, src_dir_fd=fd, dst_dir_fd=fd)
        except OSError:
            os.unlink(temp, dir_fd=fd)
            raise InvalidRequest(
                f"container_upload: '{echo(filename)}' cannot be placed in the container (a directory "
                "of that name is in the way)"
            ) from None
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _unpack(archive: bytes, directory: str, target: Path) -> None:
    """Unpack a skill version's zip under ``target`` as regular files only (links are never made)."""
    shutil.rmtree(target, ignore_errors=True)
    with zipfile.ZipFile(io.BytesIO(archive)) as bundle:
        for info in bundle.infolist():
            parts = PurePosixPath(info.filename).parts
            if info.is_dir() or not parts or parts[0] != directory:
                continue
            if PurePosixPath(info.filename).is_absolute() or any(p in ("..", ".", "") for p in parts):
                continue
            path = target.joinpath(*parts[1:])
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o755)
            try:
                _write_all(fd, bundle.read(info))
            finally:
                os.close(fd)
