"""Files and skills on S3-compatible storage, against moto's S3 server (the real S3 wire protocol)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.api.files_support import blob_files, bundle
from tests.conftest import LiveServer, free_port, scripted_settings, serve
from wisegate.backends.scripted import ScriptedBackend
from wisegate.protocol.content import DocumentBlockParam, PlainTextSource

BUCKET = "wisegate-test"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.endpoint = f"http://127.0.0.1:{port}"
        yield client
    finally:
        server.stop()


@pytest.fixture
def s3_server(s3: Any, tmp_path: Path) -> Iterator[LiveServer]:
    settings = scripted_settings(
        tmp_path,
        files_store="s3",
        files_s3_bucket=BUCKET,
        files_s3_prefix="wg/",
        files_s3_endpoint_url=s3.endpoint,
        files_s3_region="us-east-1",
        files_downloadable_uploads=True,
    )
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


def keys(s3: Any) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_files_live_in_the_bucket(s3: Any, s3_server: LiveServer) -> None:
    client = s3_server.client()
    data = bytes(range(256)) * (20 * 4096)  # 20 MiB: a multipart upload to S3
    uploaded = client.beta.files.upload(file=("big.bin", data, "application/octet-stream"))
    workspace = s3_server.run(
        s3_server.services.keys.default_workspace(s3_server.services.organization_id)
    ).id
    assert keys(s3) == [f"wg/{workspace}/{uploaded.id}"]
    assert s3.head_object(Bucket=BUCKET, Key=keys(s3)[0])["ContentLength"] == len(data)
    assert client.beta.files.download(uploaded.id).read() == data
    assert blob_files(s3_server.settings.data_dir) == []  # nothing kept locally, staging cleaned

    text = client.beta.files.upload(file=("n.txt", b"from the bucket", "text/plain"))
    client.beta.messages.create(
        model="scripted-1",
        max_tokens=5,
        messages=[
            {
                "role": "user",
                "content": [{"type": "document", "source": {"type": "file", "file_id": text.id}}],
            }
        ],
    )
    block = s3_server.backend.calls[-1].messages[0].content[0]
    assert isinstance(block, DocumentBlockParam) and isinstance(block.source, PlainTextSource)
    assert block.source.data == "from the bucket"

    client.beta.files.delete(uploaded.id)
    client.beta.files.delete(text.id)
    assert keys(s3) == []
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.download(uploaded.id)


def test_skill_archives_live_in_the_bucket(s3: Any, s3_server: LiveServer) -> None:
    client = s3_server.client()
    skill = client.beta.skills.create(files=bundle())
    assert len(keys(s3)) == 1 and keys(s3)[0].endswith(f"/skills/{skill.id}/{skill.latest_version_id}.zip")
    archive = client.beta.skills.versions.download(skill.latest_version_id, skill_id=skill.id).read()
    assert archive.startswith(b"PK")
    client.beta.skills.versions.delete(skill.latest_version_id, skill_id=skill.id)
    assert keys(s3) == []
