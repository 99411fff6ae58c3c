"""Any Unicode filename survives the Files and Skills uploads and the download's Content-Disposition,
on SQLite and PostgreSQL: UTF-8 in ``filename="…"`` (what the SDK and browsers send) and RFC 5987
``filename*``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from tests.api.files_support import bundle
from tests.conftest import LiveServer, postgres_database, scripted_settings, serve
from wisegate.backends.scripted import ScriptedBackend

# ``;`` and ``=`` inside the quoted name must not end it; ``%22`` is how clients send a quote.
NAMES = ["日本語.txt", "📄 notes.txt", "résumé.txt", "a;b=c 100%22.txt", "Ünïcödé 🎉.md"]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = Path(tmp_path_factory.mktemp("filenames"))
    if request.param == "sqlite":
        settings = scripted_settings(data_dir, files_downloadable_uploads=True)
        yield from serve(settings, backends={"scripted": ScriptedBackend()})
        return
    with postgres_database() as url:
        settings = scripted_settings(data_dir, files_downloadable_uploads=True, database_url=url)
        yield from serve(settings, backends={"scripted": ScriptedBackend()})


def downloaded_name(header: str) -> str:
    """The filename a client reads from Content-Disposition: ``filename*`` when present (RFC 6266)."""
    extended = re.search(r"filename\*=UTF-8''([^;\s]+)", header)
    assert extended is not None, header
    return unquote(extended.group(1), errors="strict")


@pytest.mark.parametrize("name", NAMES)
def test_sdk_upload_keeps_the_name_and_the_download_names_it(live: LiveServer, name: str) -> None:
    client = live.client()
    uploaded = client.beta.files.upload(file=(name, b"hello", "text/plain"))
    assert uploaded.filename == name
    assert client.beta.files.retrieve_metadata(uploaded.id).filename == name
    assert name in [f.filename for f in client.beta.files.list(limit=100)]
    response = client.beta.files.download(uploaded.id)
    assert response.read() == b"hello"
    header = response.headers["content-disposition"]
    assert header.isascii() and header.startswith('attachment; filename="')
    assert downloaded_name(header) == name


def multipart(disposition: bytes, boundary: bytes = b"b0undary") -> tuple[bytes, dict[str, str]]:
    body = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; ' + disposition + b"\r\n"
        b"Content-Type: text/plain\r\n\r\nhello\r\n--" + boundary + b"--\r\n"
    )
    return body, {"content-type": f"multipart/form-data; boundary={boundary.decode()}"}


def upload_raw(live: LiveServer, disposition: bytes, boundary: bytes = b"b0undary") -> httpx.Response:
    body, headers = multipart(disposition, boundary)
    return httpx.post(
        f"{live.base_url}/v1/files", content=body, headers={"x-api-key": live.key, **headers}, timeout=30
    )


def test_rfc_5987_filename_wins_over_the_plain_one(live: LiveServer) -> None:
    response = upload_raw(live, b"filename=\"ete.txt\"; filename*=UTF-8''%C3%A9t%C3%A9%20%E2%82%AC.txt")
    assert response.status_code == 200, response.text
    assert response.json()["filename"] == "été €.txt"
    latin1 = upload_raw(live, b"filename*=iso-8859-1'fr'd%E9j%E0.txt")
    assert latin1.json()["filename"] == "déjà.txt"


def test_raw_utf8_filenames_and_part_headers_that_are_not_text(live: LiveServer) -> None:
    assert upload_raw(live, 'filename="名前.txt"'.encode()).json()["filename"] == "名前.txt"
    # Not UTF-8 (RFC 7578 says it is): a 400, not a guess at what the client meant.
    for disposition in (b'filename="r\xe9sum\xe9.txt"', b'filename="a\xed\xa0\x80.txt"'):
        response = upload_raw(live, disposition)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == {
            "type": "invalid_request_error",
            "message": "A multipart part's Content-Disposition header is not valid UTF-8.",
        }
    for content_type in (b"text/plain\x1b[2J", "text/\u0085plain".encode(), b"text/plain\x7f"):
        body, headers = multipart(b'filename="a.txt"')
        body = body.replace(b"Content-Type: text/plain", b"Content-Type: " + content_type)
        response = httpx.post(
            f"{live.base_url}/v1/files", content=body, headers={"x-api-key": live.key, **headers}, timeout=30
        )
        assert response.status_code == 400, response.text
        message = response.json()["error"]["message"]
        assert message == "A multipart part's Content-Type header must not contain control characters.", (
            message
        )
    for disposition in ('filename="invoice\u202etxt.exe"'.encode(), b"filename*=UTF-8''a%C2%85b.txt"):
        response = upload_raw(live, disposition)
        assert response.status_code == 400 and "file: the filename" in response.text, response.text


@pytest.mark.parametrize(
    "disposition",
    [
        b"filename*=UTF-8''%FF%FE.txt",
        b"filename*=UTF-8''a%ED%A0%80.txt",  # a lone surrogate, encoded: no UTF-8 and no text
        b"filename*=koi8-r''%E1.txt",
        b"filename*=no-quotes.txt",
    ],
)
def test_malformed_rfc_5987_filename_is_400(live: LiveServer, disposition: bytes) -> None:
    response = upload_raw(live, disposition)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "filename*" in error["message"]


def test_a_boundary_longer_than_the_parser_takes_is_400(live: LiveServer) -> None:
    response = upload_raw(live, b'filename="a.txt"', boundary=b"x" * 300)
    assert response.status_code == 400, response.text
    assert "boundary" in response.json()["error"]["message"]


def test_skill_folder_with_a_unicode_name(live: LiveServer) -> None:
    client = live.client()
    skill = client.beta.skills.create(files=bundle("名前", name="namae", description="Unicode folder"))
    version = client.beta.skills.versions.retrieve(skill.latest_version or "", skill_id=skill.id)
    assert version.directory == "名前"


def test_unicode_digits_are_not_a_number(live: LiveServer) -> None:
    for value in ("³⁴⁵⁶", "٣٤", "１２"):
        body = (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nhi\r\n'
            b'--b\r\nContent-Disposition: form-data; name="expires_in_seconds"\r\n\r\n'
            + value.encode()
            + b"\r\n--b--\r\n"
        )
        response = httpx.post(
            f"{live.base_url}/v1/files",
            content=body,
            headers={"x-api-key": live.key, "content-type": "multipart/form-data; boundary=b"},
        )
        assert response.status_code == 400, (value, response.text)
        assert response.json()["error"]["message"] == "expires_in_seconds: Input should be a valid integer"
