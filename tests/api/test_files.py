"""The Files API through the official SDK (``client.beta.files``) against a live server."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anthropic
import httpx
import pytest
from anthropic.types import FileNotDownloadableError, StorageQuotaExceededError
from sqlalchemy import func, select

from tests.api.files_support import blob_files, other_workspace_client
from tests.conftest import LiveServer, scripted_settings, serve
from wisegate.backends.scripted import ScriptedBackend
from wisegate.domain.files import FileService, LocalBlobStore, Staging
from wisegate.domain.keys import KeyService, Principal
from wisegate.records.files import FileRecord
from wisegate.storage.db import Database, migrate
from wisegate.storage.files import FileRepo
from wisegate.storage.repos import TenancyRepo
from wisegate.storage.tables import FileRow

MAX = 1024 * 1024


@pytest.fixture(scope="module")
def files_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = scripted_settings(tmp_path_factory.mktemp("files"), files_max_bytes=MAX)
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


def row_count(live: LiveServer) -> int:
    async def count() -> int:
        async with live.services.db.read() as session:
            return int((await session.execute(select(func.count()).select_from(FileRow))).scalar_one())

    result: int = live.run(count())
    return result


def test_upload_retrieve_list_delete(files_server: LiveServer) -> None:
    client = files_server.client()
    uploaded = client.beta.files.upload(file=("report.txt", b"quarterly numbers", "text/plain"))
    assert uploaded.id.startswith("file_")
    assert (uploaded.type, uploaded.filename, uploaded.mime_type) == ("file", "report.txt", "text/plain")
    assert uploaded.size_bytes == len(b"quarterly numbers")
    assert uploaded.downloadable is False
    assert uploaded.created_at.tzinfo is not None

    again = client.beta.files.retrieve_metadata(uploaded.id)
    assert again == uploaded
    assert uploaded.id in [f.id for f in client.beta.files.list()]

    deleted = client.beta.files.delete(uploaded.id)
    assert (deleted.id, deleted.type) == (uploaded.id, "file_deleted")
    with pytest.raises(anthropic.NotFoundError) as info:
        client.beta.files.retrieve_metadata(uploaded.id)
    assert info.value.type == "not_found_error"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.delete(uploaded.id)


def test_anthropic_beta_header_is_accepted_never_required(files_server: LiveServer) -> None:
    client = files_server.client()
    with_beta = client.beta.files.upload(file=("a.txt", b"a", "text/plain"), betas=["files-api-2025-04-14"])
    without = client.beta.files.retrieve_metadata(with_beta.id)
    assert without.id == with_beta.id
    plain = httpx.get(
        f"{files_server.base_url}/v1/files/{with_beta.id}", headers={"x-api-key": files_server.key}
    )
    assert plain.status_code == 200 and plain.json()["id"] == with_beta.id


def test_filename_and_mime_type(files_server: LiveServer) -> None:
    client = files_server.client()
    nested = client.beta.files.upload(file=("dir/sub/photo.png", b"\x89PNG...", "image/png"))
    assert nested.filename == "photo.png" and nested.mime_type == "image/png"
    guessed = client.beta.files.upload(file=("notes.md", b"# hi", "application/octet-stream"))
    assert guessed.mime_type == "text/markdown"
    unnamed = client.beta.files.upload(file=("", b"%PDF-1.4", "application/pdf"))
    assert unnamed.filename == "unnamed.pdf"
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.files.upload(file=('bad"name?.txt', b"x", "text/plain"))
    assert "filename" in info.value.message


def test_pagination_by_page_cursor_and_by_ids(files_server: LiveServer) -> None:
    client = other_workspace_client(files_server, "paging")
    ids = [client.beta.files.upload(file=(f"f{i}.txt", b"x", "text/plain")).id for i in range(5)]
    first = client.beta.files.list(limit=2)
    assert [f.id for f in first.data] == ids[::-1][:2]
    assert first.next_page is not None
    walked = [f.id for f in client.beta.files.list(limit=2)]  # the SDK follows next_page
    assert walked == ids[::-1]
    client.beta.files.delete(first.data[-1].id)  # the cursor stays valid when its file is gone
    assert [f.id for f in first.get_next_page().data] == ids[::-1][2:4]
    ids.remove(first.data[-1].id)
    chosen = client.beta.files.list(ids=[ids[1], ids[3], "file_unknown"])
    assert sorted(f.id for f in chosen.data) == sorted([ids[1], ids[3]])


def test_pagination_by_before_and_after_id(files_server: LiveServer) -> None:
    client = other_workspace_client(files_server, "ids")
    ids = [client.beta.files.upload(file=(f"f{i}.txt", b"x", "text/plain")).id for i in range(4)]
    newest_first = ids[::-1]
    key = client.api_key

    def page(**params: str | int) -> dict[str, object]:
        response = httpx.get(f"{files_server.base_url}/v1/files", params=params, headers={"x-api-key": key})
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body

    after = page(after_id=newest_first[0], limit=2)
    assert [f["id"] for f in after["data"]] == newest_first[1:3]  # type: ignore[union-attr]
    assert after["has_more"] is True and after["last_id"] == newest_first[2]
    before = page(before_id=newest_first[3], limit=2)
    assert [f["id"] for f in before["data"]] == newest_first[1:3]  # type: ignore[union-attr]
    assert before["has_more"] is True and before["first_id"] == newest_first[1]
    unknown = httpx.get(
        f"{files_server.base_url}/v1/files", params={"after_id": "file_nope"}, headers={"x-api-key": key}
    )
    assert unknown.status_code == 400 and "after_id" in unknown.json()["error"]["message"]
    last = page(after_id=newest_first[2])
    assert [f["id"] for f in last["data"]] == [newest_first[3]] and last["has_more"] is False  # type: ignore[union-attr]
    with pytest.raises(anthropic.BadRequestError):
        client.beta.files.list(limit=0)


def test_uploaded_files_are_not_downloadable(files_server: LiveServer) -> None:
    client = files_server.client()
    uploaded = client.beta.files.upload(file=("a.txt", b"secret", "text/plain"))
    with pytest.raises(FileNotDownloadableError) as info:
        client.beta.files.download(uploaded.id)
    assert info.value.status_code == 400 and info.value.error_code == "file_not_downloadable"


def test_downloadable_uploads_setting_streams_the_bytes_back(tmp_path: Path) -> None:
    settings = scripted_settings(tmp_path, files_downloadable_uploads=True)
    for live in serve(settings, backends={"scripted": ScriptedBackend()}):
        client = live.client()
        data = bytes(range(256)) * 4096  # 1 MiB, every byte value
        uploaded = client.beta.files.upload(file=("blob.bin", data, "application/octet-stream"))
        assert uploaded.downloadable is True
        response = client.beta.files.download(uploaded.id)
        assert response.read() == data
        assert response.headers["content-type"] == "application/octet-stream"
        for path in blob_files(tmp_path):
            path.unlink()  # the bytes vanish behind the server's back
        with pytest.raises(anthropic.InternalServerError) as info:
            client.beta.files.download(uploaded.id)
        assert "missing from storage" in info.value.message


def test_isolation_between_workspaces(files_server: LiveServer) -> None:
    mine = files_server.client()
    theirs = other_workspace_client(files_server, "isolated")
    file = mine.beta.files.upload(file=("mine.txt", b"only mine", "text/plain"))
    assert file.id not in [f.id for f in theirs.beta.files.list()]
    with pytest.raises(anthropic.NotFoundError):
        theirs.beta.files.retrieve_metadata(file.id)
    with pytest.raises(anthropic.NotFoundError):
        theirs.beta.files.delete(file.id)
    with pytest.raises(anthropic.NotFoundError):
        theirs.beta.files.download(file.id)
    with pytest.raises(anthropic.NotFoundError):
        theirs.beta.messages.create(
            model="scripted-1",
            max_tokens=5,
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "document", "source": {"type": "file", "file_id": file.id}}],
                }
            ],
        )
    assert mine.beta.files.retrieve_metadata(file.id).id == file.id


def test_missing_file_part_and_bad_bodies(files_server: LiveServer) -> None:
    url, headers = f"{files_server.base_url}/v1/files", {"x-api-key": files_server.key}
    rows_before = row_count(files_server)
    blobs_before = blob_files(files_server.settings.data_dir)
    missing = httpx.post(url, headers=headers, files={"other": ("a.txt", b"x")})
    assert missing.status_code == 400
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert "file" in missing.json()["error"]["message"]
    not_multipart = httpx.post(url, headers=headers, json={"file": "x"})
    assert not_multipart.status_code == 400 and "multipart" in not_multipart.json()["error"]["message"]
    truncated = httpx.post(
        url,
        headers={**headers, "content-type": "multipart/form-data; boundary=XYZ"},
        content=b'--XYZ\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nabc',
    )
    assert truncated.status_code == 400
    two = httpx.post(url, headers=headers, files=[("file", ("a.txt", b"a")), ("file", ("b.txt", b"b"))])
    assert two.status_code == 400
    assert row_count(files_server) == rows_before  # none of the refused uploads left a row
    assert blob_files(files_server.settings.data_dir) == blobs_before  # nor a blob or staging file
    unauthenticated = httpx.post(url, files={"file": ("a.txt", b"x")})
    assert unauthenticated.status_code == 401


def test_oversize_upload_is_413_and_leaves_nothing(files_server: LiveServer) -> None:
    client = files_server.client()
    rows_before = row_count(files_server)
    blobs_before = blob_files(files_server.settings.data_dir)
    with pytest.raises(anthropic.APIStatusError) as info:
        client.beta.files.upload(file=("big.bin", b"x" * (MAX + 1), "application/octet-stream"))
    assert info.value.status_code == 413 and info.value.type == "request_too_large"

    # A chunked upload (no content-length) is cut off while streaming, after part of it was staged.
    def body() -> Iterator[bytes]:
        yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
        for _ in range(40):
            yield b"y" * 65536
        yield b"\r\n--B--\r\n"

    response = httpx.post(
        f"{files_server.base_url}/v1/files",
        headers={"x-api-key": files_server.key, "content-type": "multipart/form-data; boundary=B"},
        content=body(),
    )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"
    assert row_count(files_server) == rows_before
    assert blob_files(files_server.settings.data_dir) == blobs_before
    exact = client.beta.files.upload(file=("fits.bin", b"z" * MAX, "application/octet-stream"))
    assert exact.size_bytes == MAX


def test_storage_quota_per_organization(tmp_path: Path) -> None:
    settings = scripted_settings(tmp_path, files_quota_bytes=3000)
    for live in serve(settings, backends={"scripted": ScriptedBackend()}):
        client, other = live.client(), other_workspace_client(live)
        client.beta.files.upload(file=("a.bin", b"a" * 2000, "application/octet-stream"))
        with pytest.raises(StorageQuotaExceededError) as info:
            other.beta.files.upload(file=("b.bin", b"b" * 1500, "application/octet-stream"))
        assert info.value.error_code == "storage_quota_exceeded"
        assert len(blob_files(tmp_path)) == 1 and row_count(live) == 1
        small = other.beta.files.upload(file=("c.bin", io.BytesIO(b"c" * 1000), "application/octet-stream"))
        assert small.size_bytes == 1000


def test_expires_in_seconds(files_server: LiveServer) -> None:
    client = files_server.client()
    expiring = client.beta.files.upload(file=("e.txt", b"e", "text/plain"), expires_in_seconds=3600)
    assert expiring.expires_at is not None
    assert 3590 < (expiring.expires_at - expiring.created_at).total_seconds() <= 3600
    with pytest.raises(anthropic.BadRequestError) as info:
        client.beta.files.upload(file=("e.txt", b"e", "text/plain"), expires_in_seconds=10)
    assert "expires_in_seconds" in info.value.message


def test_a_client_that_disconnects_mid_upload_leaves_nothing(
    files_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wisegate")
    rows_before = row_count(files_server)
    blobs_before = blob_files(files_server.settings.data_dir)
    host, port = files_server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/files HTTP/1.1\r\nhost: x\r\ncontent-type: multipart/form-data; boundary=B\r\n"
            b"x-api-key: " + files_server.key.encode() + b"\r\ncontent-length: 900000\r\n\r\n"
            b'--B\r\nContent-Disposition: form-data; name="file"; filename="cut.bin"\r\n\r\n' + b"q" * 300_000
        )
        deadline = time.monotonic() + 10
        while not any(p.parent.name == "files-staging" for p in blob_files(files_server.settings.data_dir)):
            assert time.monotonic() < deadline, "the upload never reached the staging directory"
            time.sleep(0.02)
    deadline = time.monotonic() + 10
    while blob_files(files_server.settings.data_dir) != blobs_before:
        assert time.monotonic() < deadline, "the staged part of the upload was not removed"
        time.sleep(0.05)
    assert row_count(files_server) == rows_before
    # Logged as what it is, a client that went away: info level, status 499, no traceback.
    deadline = time.monotonic() + 10
    while not any(r.getMessage() == "request" and getattr(r, "status", 0) == 499 for r in caplog.records):
        assert time.monotonic() < deadline, "the abandoned upload was never logged"
        time.sleep(0.05)
    gone = [r for r in caplog.records if r.getMessage() == "client disconnected before its request was read"]
    assert gone and all(r.levelno == logging.INFO for r in gone)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]


def test_a_failed_insert_removes_the_blob(tmp_path: Path) -> None:
    """Fault injection below the API: the row cannot be written, so the stored blob is deleted again."""

    class BrokenRepo(FileRepo):
        async def add(self, record: FileRecord, reservation_id: str | None = None) -> None:
            raise RuntimeError("database is gone")

    async def scenario() -> None:
        settings = scripted_settings(tmp_path)
        migrate(settings.resolved_database_url)
        db = Database(settings.resolved_database_url)
        try:
            keys = KeyService(TenancyRepo(db))
            org = await keys.bootstrap()
            key, _ = await keys.create_key((await keys.default_workspace(org.id)).id, "t")
            service = FileService(
                BrokenRepo(db),
                LocalBlobStore(tmp_path / "files"),
                Staging(tmp_path / "files-staging"),
                max_file_bytes=MAX,
                quota_bytes=10 * MAX,
            )

            async def chunks() -> AsyncIterator[bytes]:
                yield b"some bytes"

            staged = await service.receive(Principal(key), chunks())
            try:
                with pytest.raises(RuntimeError):
                    await service.commit(Principal(key), staged, "a.txt", "text/plain")
            finally:
                await service.discard(staged)
        finally:
            await db.close()

    asyncio.run(scenario())
    assert blob_files(tmp_path) == []
