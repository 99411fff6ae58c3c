"""Files: metadata in the database, bytes in a :class:`BlobStore` (a local directory or S3).

An upload is received in two steps so that a failure leaves nothing behind::

    staged = await files.receive(principal, chunks)        # streamed to a temp file, limits enforced
    try:
        record = await files.commit(principal, staged, filename, content_type)
    finally:
        await files.discard(staged)                         # no-op once committed

``receive`` writes the bytes to a staging file inside the data directory while they arrive (memory stays
flat) and refuses them as soon as they pass the per-file limit (413) or the organization's storage quota
(400 ``storage_quota_exceeded``). The quota is *reserved* before the bytes are accepted, atomically
(``FileRepo.reserve``), growing ahead of them as they arrive — at once to the declared
``Content-Length`` when the request has one — so parallel uploads can never together pass it; the
reservation becomes the file's row at commit, in one transaction, and is given back on any failure.
``commit`` moves the staged bytes into the blob store and then inserts the row; when the insert fails
the blob is removed again. A process killed between those two steps can
leave an unreferenced blob, never a row without bytes; staging files left by a crash are removed at start.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread

from wisegate.domain.keys import Principal
from wisegate.domain.storable import storable_name
from wisegate.errors import ApiInternal, InvalidRequest, NotFound, RequestTooLarge
from wisegate.protocol.bounds import FILENAME_LENGTH, MIME_TYPE_LENGTH, echo
from wisegate.protocol.messages import new_id
from wisegate.records.files import FileRecord, Position
from wisegate.storage.files import FileRepo

CHUNK = 1024 * 1024
log = logging.getLogger("wisegate.files")
_BAD_FILENAME = re.compile(r'[<>:"|?*\\/\x00-\x1f\x7f]')


class BlobStore(Protocol):
    """Where file bytes live. Keys are relative paths such as ``wrkspc_…/file_…``."""

    async def put(self, key: str, staged: Path) -> None:
        """Store the staged file's bytes under ``key`` (all or nothing); the staged file is consumed."""
        ...

    def read(self, key: str) -> AsyncIterator[bytes]:
        """The bytes under ``key`` in chunks; ``FileNotFoundError`` when there are none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are not an error."""
        ...


class LocalBlobStore:
    """Blobs as files under ``root`` (the embedded default: ``<data_dir>/files``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"blob key outside the store: {key!r}")
        return path

    async def put(self, key: str, staged: Path) -> None:
        path = self._path(key)

        def move() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, path)  # staging lives on the same filesystem: an atomic rename
            _fsync_dir(path.parent)

        await anyio.to_thread.run_sync(move)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        async with await anyio.open_file(path, "rb") as handle:
            while chunk := await handle.read(CHUNK):
                yield chunk

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))


class S3BlobStore:
    """Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW …) through boto3.

    Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
    profiles, instance roles). Large blobs are uploaded as multipart uploads by boto3's transfer
    manager from the staged file, so memory stays bounded.
    """

    def __init__(
        self, bucket: str, *, prefix: str = "", endpoint_url: str | None = None, region: str | None = None
    ) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig

        self._bucket = bucket
        self._prefix = prefix
        self._client: Any = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
        self._transfer = TransferConfig(multipart_chunksize=8 * CHUNK, max_concurrency=2)

    async def put(self, key: str, staged: Path) -> None:
        await anyio.to_thread.run_sync(
            lambda: self._client.upload_file(
                str(staged), self._bucket, self._prefix + key, Config=self._transfer
            )
        )
        staged.unlink(missing_ok=True)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        from botocore.exceptions import ClientError

        try:
            response = await anyio.to_thread.run_sync(
                lambda: self._client.get_object(Bucket=self._bucket, Key=self._prefix + key)
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(key) from None
            raise
        body = response["Body"]
        try:
            while chunk := await anyio.to_thread.run_sync(body.read, CHUNK):
                yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        await anyio.to_thread.run_sync(
            lambda: self._client.delete_object(Bucket=self._bucket, Key=self._prefix + key)
        )


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass(slots=True)
class Staged:
    """Bytes received into a staging file; ``discard()`` removes it unless it was committed."""

    path: Path
    size_bytes: int
    reservation_id: str | None = None

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class Staging:
    """Temporary files for uploads in progress (inside the data directory, same filesystem as blobs)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def sweep(self, older_than: float = 0.0) -> int:
        """Remove staging files left behind by a crash; returns how many were removed."""
        if not self.directory.exists():
            return 0
        removed = 0
        cutoff = time.time() - older_than
        for path in self.directory.iterdir():
            if path.is_file() and path.stat().st_mtime <= cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    async def receive(self, chunks: AsyncIterator[bytes], limit: int, refuse: Any) -> Staged:
        """Write ``chunks`` to a new staging file; past ``limit`` bytes ``refuse()`` is raised.

        The file is fsynced before returning; on any failure (including cancellation when the client
        goes away) it is removed.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{new_id('upload')}.part"
        size = 0
        pending: list[bytes] = []
        pending_size = 0
        handle = await anyio.to_thread.run_sync(lambda: open(path, "wb"))  # noqa: SIM115
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise refuse()
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= CHUNK:
                    data = b"".join(pending)
                    pending, pending_size = [], 0
                    await anyio.to_thread.run_sync(handle.write, data)
            if pending:
                await anyio.to_thread.run_sync(handle.write, b"".join(pending))

            def finish() -> None:
                handle.flush()
                os.fsync(handle.fileno())
                handle.close()

            await anyio.to_thread.run_sync(finish)
        except BaseException:
            with anyio.CancelScope(shield=True):
                handle.close()
                path.unlink(missing_ok=True)
            raise
        return Staged(path, size)


def clean_filename(raw: str | None, mime_type: str) -> str:
    """The final path component of the part's filename; ``unnamed`` (+ extension) when empty."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name:
        return "unnamed" + (mimetypes.guess_extension(mime_type) or "")
    if len(name) > FILENAME_LENGTH:
        raise InvalidRequest(f"file: the filename must be between 1 and {FILENAME_LENGTH} characters long")
    if _BAD_FILENAME.search(name):
        raise InvalidRequest(
            'file: the filename must not contain control characters or any of < > : " | ? * \\ /'
        )
    return storable_name("file: the filename", name, FILENAME_LENGTH)  # no C1 control, no bidi override


def mime_type_of(content_type: str | None, filename: str | None) -> str:
    """The part's declared type, or a guess from the filename when it declares none (or octet-stream)."""
    declared = (content_type or "").split(";", 1)[0].strip().lower()
    if declared and declared != "application/octet-stream":
        return declared
    guessed = mimetypes.guess_type(filename or "")[0]
    return guessed or "application/octet-stream"


# Reserve up to this much ahead of an upload's bytes; a reservation not renewed for RESERVATION_STALE
# (its process died mid-upload) no longer counts against the quota.
_RESERVE_AHEAD = 4 * 1024 * 1024
RESERVATION_STALE = timedelta(hours=1)


class FileService:
    """Upload, list, read and delete files within the caller's workspace."""

    def __init__(
        self,
        repo: FileRepo,
        blobs: BlobStore,
        staging: Staging,
        *,
        max_file_bytes: int,
        quota_bytes: int,
        downloadable_uploads: bool = False,
    ) -> None:
        self._repo = repo
        self.blobs = blobs
        self.staging = staging
        self.max_file_bytes = max_file_bytes
        self.quota_bytes = quota_bytes
        self._downloadable_uploads = downloadable_uploads

    async def receive(
        self, principal: Principal, chunks: AsyncIterator[bytes], declared_bytes: int | None = None
    ) -> Staged:
        """Stage an upload's bytes under the per-file limit and a reservation of the storage quota.

        ``declared_bytes`` (the request's ``Content-Length``, an upper bound) is reserved at once when
        it fits, so that parallel uploads are refused up front; otherwise the reservation grows with
        the bytes. On failure (the client gone included) the reservation is given back.
        """
        reservation = _Reservation(
            self._repo, principal.organization_id, self.quota_bytes, self.max_file_bytes, declared_bytes
        )

        async def reserved() -> AsyncIterator[bytes]:
            total = 0
            async for chunk in chunks:
                total += len(chunk)
                if total <= self.max_file_bytes:  # past it the staging refuses with 413
                    await reservation.cover(total)
                yield chunk

        def refuse() -> Exception:
            return RequestTooLarge(
                f"file: the file exceeds the maximum size of {self.max_file_bytes} bytes per file."
            )

        try:
            staged = await self.staging.receive(reserved(), self.max_file_bytes, refuse)
            await reservation.cover(staged.size_bytes)  # an empty file holds nothing, but is checked too
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._repo.release(reservation.id)
            raise
        staged.reservation_id = reservation.id
        return staged

    async def discard(self, staged: Staged) -> None:
        """Remove an uncommitted upload's staging file and give back its reservation."""
        staged.discard()
        if staged.reservation_id is not None:
            with anyio.CancelScope(shield=True):
                await self._repo.release(staged.reservation_id)

    async def commit(
        self,
        principal: Principal,
        staged: Staged,
        filename: str | None,
        content_type: str | None,
        *,
        expires_in_seconds: int | None = None,
        downloadable: bool | None = None,
    ) -> FileRecord:
        """Move the staged bytes into the blob store and record them; all or nothing."""
        mime = storable_name(
            "file: the part's Content-Type", mime_type_of(content_type, filename), MIME_TYPE_LENGTH
        )
        name = clean_filename(filename, mime)
        if expires_in_seconds is not None and not 3600 <= expires_in_seconds <= 7_776_000:
            raise InvalidRequest(
                "expires_in_seconds: must be between 3600 (one hour) and 7776000 (ninety days)"
            )
        now = datetime.now(UTC)
        file_id = new_id("file")
        record = FileRecord(
            id=file_id,
            organization_id=principal.organization_id,
            workspace_id=principal.workspace_id,
            filename=name,
            mime_type=mime,
            size_bytes=staged.size_bytes,
            downloadable=self._downloadable_uploads if downloadable is None else downloadable,
            blob_key=f"{principal.workspace_id}/{file_id}",
            created_at=now,
            expires_at=now + timedelta(seconds=expires_in_seconds) if expires_in_seconds else None,
        )
        await self.blobs.put(record.blob_key, staged.path)
        try:
            await self._repo.add(record, staged.reservation_id)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.blobs.delete(record.blob_key)
            raise
        return record

    async def get(self, principal: Principal, file_id: str) -> FileRecord:
        record = await self._repo.get(principal.workspace_id, file_id)
        if record is None:
            raise NotFound(f"File not found: {echo(file_id)}")
        return record

    async def page(
        self,
        principal: Principal,
        limit: int,
        *,
        after_id: str | None = None,
        before_id: str | None = None,
        after: Position | None = None,
        ids: list[str] | None = None,
    ) -> tuple[list[FileRecord], bool]:
        """Newest first, after a position (a page cursor) or after/before a file of the workspace."""
        if after_id:
            after = await self._position(principal, "after_id", after_id)
        before = await self._position(principal, "before_id", before_id) if before_id else None
        return await self._repo.page(principal.workspace_id, limit, after=after, before=before, ids=ids)

    async def _position(self, principal: Principal, field: str, file_id: str) -> Position:
        record = await self._repo.get(principal.workspace_id, file_id)
        if record is None:
            raise InvalidRequest(f"{field}: unknown file '{echo(file_id)}'")
        return record.created_at, record.id

    async def download(self, principal: Principal, file_id: str) -> tuple[FileRecord, AsyncIterator[bytes]]:
        """The file and its bytes, when it is downloadable (files Wisegate produced, or by setting)."""
        record = await self.get(principal, file_id)
        if not record.downloadable:
            raise InvalidRequest(
                f"File {echo(file_id)} is not downloadable: only files produced by the platform can be "
                "downloaded, uploaded files cannot.",
                details={"error_code": "file_not_downloadable"},
            )
        _check_expiry(record)
        return record, await _opened(record, self.blobs.read(record.blob_key))

    async def read_bytes(self, principal: Principal, file_id: str, limit: int) -> tuple[FileRecord, bytes]:
        """The whole content of a file for use in a message (at most ``limit`` bytes)."""
        record = await self.get(principal, file_id)
        _check_expiry(record)
        if record.size_bytes > limit:
            raise InvalidRequest(
                f"File {echo(file_id)} is {record.size_bytes} bytes; files used in a message may be at most "
                f"{limit} bytes."
            )
        chunks = [chunk async for chunk in await _opened(record, self.blobs.read(record.blob_key))]
        return record, b"".join(chunks)

    async def delete(self, principal: Principal, file_id: str) -> FileRecord:
        record = await self._repo.delete(principal.workspace_id, file_id)
        if record is None:
            raise NotFound(f"File not found: {echo(file_id)}")
        await self.blobs.delete(record.blob_key)
        return record


async def _opened(record: FileRecord, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` with its first chunk already read, so a missing blob fails before a response starts."""
    try:
        first = await anext(chunks, b"")
    except FileNotFoundError:
        log.error("blob missing for a stored file", extra={"file_id": record.id, "blob_key": record.blob_key})
        raise ApiInternal(f"The content of file {record.id} is missing from storage.") from None

    async def replay() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in chunks:
            yield chunk

    return replay()


def _check_expiry(record: FileRecord) -> None:
    if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
        raise NotFound(f"File {record.id} has expired.", details={"error_code": "file_expired"})


class _Reservation:
    """The storage quota one upload holds, grown ahead of its bytes (few writes for a large file)."""

    def __init__(
        self, repo: FileRepo, organization_id: str, quota: int, max_bytes: int, declared: int | None
    ) -> None:
        self.id = new_id("upload")
        self._repo, self._organization_id = repo, organization_id
        self._quota, self._max_bytes = quota, max_bytes
        self._hint = min(declared, max_bytes) if declared else 0
        self.bytes = -1  # nothing reserved yet (0 bytes is a reservation too)

    async def cover(self, total: int) -> None:
        """Hold at least ``total`` bytes; ``storage_quota_exceeded`` when the quota has no room for them."""
        if total <= self.bytes:
            return
        ahead = min(self._max_bytes, max(total, self._hint, 2 * self.bytes), total + _RESERVE_AHEAD)
        now = datetime.now(UTC)
        for size in dict.fromkeys((ahead, total)):  # ahead when it fits, else exactly what arrived
            if await self._repo.reserve(
                self.id, self._organization_id, size, self._quota, now, now - RESERVATION_STALE
            ):
                self.bytes, self._hint = size, 0
                return
        raise _quota_exceeded(self._quota)


def _quota_exceeded(quota: int) -> InvalidRequest:
    return InvalidRequest(
        f"The organization's file storage quota of {quota} bytes is exhausted. Delete files to free up "
        "space, then retry the upload.",
        details={"error_code": "storage_quota_exceeded"},
    )
