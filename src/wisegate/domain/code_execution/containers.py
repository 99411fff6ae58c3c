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
import errno
import io
import json
import os
import re
import shutil
import stat
import time
import zipfile
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import anyio.to_thread

from wisegate.domain.attachments import LoadedSkill
from wisegate.domain.code_execution.sandbox import SKILLS_DIR, Sandbox
from wisegate.domain.files import FileService
from wisegate.domain.keys import Principal
from wisegate.domain.skills import SkillService
from wisegate.errors import InvalidRequest, NotFound, RateLimited
from wisegate.protocol.bounds import FILENAME_LENGTH, echo
from wisegate.protocol.messages import CONTAINER_SHAPE, new_id
from wisegate.protocol.resources import rfc3339
from wisegate.records.containers import ContainerRecord
from wisegate.records.files import FileRecord
from wisegate.storage.containers import ContainerRepo

_SWEEP_SECONDS = 60.0
# What the Files API refuses in a name: controls (C0, DEL, C1), bidi overrides and < > : " | ? * \\ /.
_REFUSED = re.compile(r'[<>:"|?*\\/\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]')
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
    new: bool = False  # created by this request: its id is not known to the client yet
    workspace_id: str = ""

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
        per_workspace: int = 10,
        total_bytes: int = 16 * 1024**3,
        max_output_files: int = 100,
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
        self._per_workspace = per_workspace
        self._total_bytes = total_bytes
        self.max_output_files = max_output_files
        self._creating = asyncio.Lock()

    async def open(
        self, principal: Principal, param: str | dict[str, Any] | None, skills: Sequence[LoadedSkill]
    ) -> Container:
        """The container ``param`` names (``"id"`` or ``{"id"}``), or a new one; skills mounted."""
        await self.sweep()
        wanted = container_id(param)
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
        if record is None:
            async with self._creating:
                await self._admit(principal, now)
                await anyio.to_thread.run_sync(self.sandbox.prepare, root)
                await self._repo.add(
                    ContainerRecord(
                        id=str(wanted),
                        organization_id=principal.organization_id,
                        workspace_id=principal.workspace_id,
                        node=self.node,
                        skills="[]",
                        created_at=now,
                        last_used_at=now,
                        expires_at=self._expiry(now, created_at),
                    )
                )
        else:
            await anyio.to_thread.run_sync(self.sandbox.prepare, root)
        lock = self._locks.setdefault(str(wanted), asyncio.Lock())
        container = Container(
            str(wanted),
            root,
            self._expiry(now, created_at),
            mounted,
            created_at,
            lock=lock,
            new=record is None,
            workspace_id=principal.workspace_id,
        )
        try:
            container.skills = await self._mount(principal, root, mounted, skills)
        except BaseException:
            await self.abandon(container)
            raise
        return container

    async def abandon(self, container: Container) -> None:
        """Delete a container this request created (row, disk) when the request fails before the
        client could learn its id, so that it does not count against the workspace; else nothing."""
        if not container.new:
            return
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.sandbox.release, container.root)
            await self._repo.delete(container.id)
            self._locks.pop(container.id, None)

    async def _admit(self, principal: Principal, now: datetime) -> None:
        """429 when a new container would pass the workspace's count or this node's total bytes."""
        live = await self._repo.count_live(now, workspace_id=principal.workspace_id)
        if live >= self._per_workspace:
            raise RateLimited(
                f"container: this workspace has {live} live containers, the limit "
                f"(WISEGATE_CONTAINERS_PER_WORKSPACE) is {self._per_workspace}; reuse one by passing its id "
                "as `container`, or wait for one to expire",
                retry_after=60,
                details={"error_code": "too_many_containers"},
            )
        on_node = await self._repo.count_live(now, node=self.node)
        quota = self.sandbox.limits.disk_bytes
        if (on_node + 1) * quota > self._total_bytes:
            raise RateLimited(
                f"container: the live containers on this server reserve {on_node * quota} bytes of disk "
                f"({quota} each) and the limit (WISEGATE_CONTAINER_TOTAL_BYTES) is {self._total_bytes}; "
                "reuse a container by passing its id as `container`, or wait for containers to expire",
                retry_after=60,
                details={"error_code": "container_capacity_exceeded"},
            )

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
        for expired in ids:
            await anyio.to_thread.run_sync(self.sandbox.release, self._directory / expired)
            await self._repo.delete(expired)
            self._locks.pop(expired, None)
        return len(ids)

    async def _mount(
        self, principal: Principal, root: Path, mounted: list[dict[str, str]], skills: Sequence[LoadedSkill]
    ) -> list[dict[str, str]]:
        """Unpack each skill version not yet in the container under ``skills/<directory>``."""
        have = {(m["skill_id"], m["version"]) for m in mounted}
        check_folders(skills)
        for skill in skills:
            target = root / "skills" / skill.version.directory
            others = [m["skill_id"] for m in mounted if m["skill_id"] != skill.skill_id]
            if others and all(m["skill_id"] != skill.skill_id for m in mounted) and target.exists():
                raise InvalidRequest(
                    f"container.skills: skill {echo(skill.skill_id)} unpacks into the folder "
                    f"'{echo(skill.version.directory)}', which a skill already mounted in this container "
                    f"uses (one of {', '.join(others)}); start a new container for it, or rename its folder"
                )
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
        quota = self.sandbox.limits.disk_bytes
        await anyio.to_thread.run_sync(_place, container.root / "uploads", record.filename, data, uid, quota)
        return record.filename

    def snapshot(self, container: Container) -> dict[str, tuple[int, int]]:
        """``{relative path: (mtime_ns, size)}`` of the regular files in ``outputs/``."""
        return {path: (st.st_mtime_ns, st.st_size) for path, st in _regular_files(container.root / "outputs")}

    async def collect(
        self, principal: Principal, container: Container, before: dict[str, tuple[int, int]]
    ) -> tuple[list[FileRecord], list[str], list[str]]:
        """Store the files created or changed in ``outputs/`` since ``before`` as downloadable Files,
        at most ``max_output_files`` of them; returns the Files, the paths skipped past that cap, and
        notes on the paths skipped because no File can carry their name (all or nothing otherwise:
        on a failure the Files stored so far are deleted).

        A File is named for the output's base name, or for its path under ``outputs/`` when two outputs
        of the call share a base name; bytes that are not UTF-8 and characters the Files API refuses
        (controls, ``< > : " | ? * \\ /``) become ``_`` or U+FFFD."""
        after = await anyio.to_thread.run_sync(self.snapshot, container)
        changed = [(path, key) for path, key in sorted(after.items()) if before.get(path) != key]
        kept, skipped = changed[: self.max_output_files], [p for p, _ in changed[self.max_output_files :]]
        for path, key in kept:
            if key[1] > self._files.max_file_bytes:
                raise OutputTooLarge(path)
        bases = Counter(PurePosixPath(path).name for path, _ in kept)
        records: list[FileRecord] = []
        refused: list[str] = []
        try:
            for path, _key in kept:
                base = PurePosixPath(path).name
                name = output_name(base if bases[base] == 1 else path)
                staged = await self._files.receive(
                    principal, _read_nofollow(container.root / "outputs", path)
                )
                try:
                    records.append(await self._files.commit(principal, staged, name, None, downloadable=True))
                except InvalidRequest as exc:
                    await self._files.discard(staged)
                    refused.append(f"{shown_path(path)} ({exc.message.removeprefix('file: ')})")
                else:
                    staged.discard()
        except BaseException:
            with anyio.CancelScope(shield=True):
                for record in records:
                    with contextlib.suppress(Exception):
                        await self._files.delete(principal, record.id)
            raise
        return records, [shown_path(p) for p in skipped], refused

    def remove_since(self, container: Container, started: float) -> None:
        """Delete what the sandbox wrote since ``started`` (a call that went past the disk quota)."""
        for name in ("home", "tmp", "uploads", "outputs"):
            for path, st in _regular_files(container.root / name):
                if st.st_mtime >= started:
                    with contextlib.suppress(OSError):
                        os.unlink(container.root / name / path)


def check_folders(skills: Sequence[LoadedSkill]) -> None:
    """A 400 naming both when two of a request's skills unpack into the same top-level folder."""
    seen: dict[str, str] = {}
    for skill in skills:
        folder = skill.version.directory
        first = seen.setdefault(folder, skill.skill_id)
        if first != skill.skill_id:
            raise InvalidRequest(
                f"container.skills: skills {echo(first)} and {echo(skill.skill_id)} both unpack into the "
                f"folder '{echo(folder)}' under {SKILLS_DIR}, so one would hide the other; use one of "
                "them per container, or rename one's top-level folder in a new version"
            )


def container_id(param: object) -> str | None:
    """The id a request's ``container`` names (``"id"`` or ``{"id": ...}``), ``None`` for none; a 400
    naming ``container`` for any other shape."""
    if param is None:
        return None
    if isinstance(param, dict):
        unknown = sorted(set(param) - {"id", "skills"})
        if unknown:
            raise InvalidRequest(
                f"container: unknown field {echo(unknown[0])}; expected `id` and/or `skills`"
            )
        param = param.get("id")
        if param is None:
            return None
    if not isinstance(param, str) or not param.strip():
        raise InvalidRequest(CONTAINER_SHAPE)
    return param


def shown_path(path: str) -> str:
    """An output's path as a tool result names it (bytes that are not UTF-8 shown as U+FFFD)."""
    return os.fsencode(path).decode("utf-8", "replace")


def output_name(path: str) -> str:
    """The File name for an output at ``path``: undecodable bytes as U+FFFD, refused characters as
    ``_``, cut to the Files API's length (its extension kept)."""
    name = _REFUSED.sub("_", shown_path(path)).strip() or "unnamed"
    if len(name) > FILENAME_LENGTH:
        stem, dot, extension = name.rpartition(".")
        keep = extension if dot and stem and len(extension) < 16 else ""
        name = name[: FILENAME_LENGTH - len(keep) - 1] + "." + keep if keep else name[:FILENAME_LENGTH]
    return name


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


def _place(directory: Path, filename: str, data: bytes, uid: int | None, quota: int) -> None:
    """Write ``data`` as ``directory/filename``, replacing whatever is there (a planted link included)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    temp = f".upload-{new_id('tmp')}"
    try:
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd)
        try:
            _write_all(out, data)
            if uid is not None:
                os.fchown(out, uid, uid)
        except OSError as exc:
            os.close(out)
            os.unlink(temp, dir_fd=fd)
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            if len(data) >= quota:
                raise InvalidRequest(
                    f"container_upload: '{echo(filename)}' ({len(data)} bytes) is larger than a "
                    f"container's whole disk (WISEGATE_SANDBOX_DISK_BYTES, {quota} bytes) and can never be "
                    "placed in one; upload it in smaller parts"
                ) from None
            raise InvalidRequest(
                f"container_upload: '{echo(filename)}' ({len(data)} bytes) does not fit in the container: "
                "its disk quota is reached; delete files in it or start a new container"
            ) from None
        else:
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
