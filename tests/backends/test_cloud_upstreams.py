"""Bedrock and Vertex backends against local fakes speaking their wire formats, driven by the SDK.

Bedrock: the fake checks the SigV4 signature with botocore, answers InvokeModel JSON and AWS
event-stream frames (built here byte by byte: prelude, headers, payload, CRC32s). Vertex: the fake
checks the rawPredict / streamRawPredict URLs, the body's ``anthropic_version`` and the bearer token
(also one obtained by google-auth from a service-account key against a fake token endpoint).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.backends.fakes import Answer, FakeUpstream, Seen, run_fake, transcript
from tests.backends.test_anthropic_upstream import MESSAGE_JSON
from tests.conftest import LiveServer, serve, settings_for
from wisegate.settings import BackendConfig, ModelConfig, RoutingConfig

AKID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
BEDROCK_MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
VERTEX_MODEL = "claude-sonnet-4-5@20250929"


def _header(name: str, value: str) -> bytes:
    raw = value.encode()
    return bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(raw)) + raw


def event_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message (application/vnd.amazon.eventstream)."""
    encoded = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


def chunk_frame(event_json: bytes) -> bytes:
    payload = json.dumps({"bytes": base64.b64encode(event_json).decode(), "p": "abcdefgh"}).encode()
    return event_frame(
        {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}, payload
    )


def frames_from_sse(sse: bytes) -> list[bytes]:
    return [chunk_frame(line[6:]) for line in sse.split(b"\n") if line.startswith(b"data: ")]


def verify_sigv4(seen: Seen, base_url: str, region: str) -> None:
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=(\w+)/(\d{8})/([\w-]+)/bedrock/aws4_request, "
        r"SignedHeaders=([\w;-]+), Signature=([0-9a-f]{64})",
        seen.headers["authorization"],
    )
    assert match, seen.headers["authorization"]
    assert match[1] == AKID and match[3] == region
    names = match[4].split(";")
    assert "host" in names and "x-amz-date" in names
    request = AWSRequest(
        method="POST",
        url=base_url + seen.raw_path,
        data=seen.body,
        headers={n: seen.headers[n] for n in names},
    )
    request.context["timestamp"] = seen.headers["x-amz-date"]
    signer = SigV4Auth(Credentials(AKID, SECRET), "bedrock", region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    assert match[5] == expected, "the SigV4 signature does not verify"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    yield from run_fake(FakeUpstream())


@pytest.fixture(scope="module")
def server(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    once = RoutingConfig(retries=0)
    settings = settings_for(
        tmp_path_factory.mktemp("cloud"),
        backends={
            "bedrock": BackendConfig(
                type="bedrock",
                options={
                    "region": "eu-west-1",
                    "endpoint_url": fake.base_url,
                    "access_key_id": AKID,
                    "secret_access_key": SECRET,
                },
            ),
            "vertex": BackendConfig(
                type="vertex",
                options={
                    "project": "acme-prod",
                    "region": "us-east5",
                    "endpoint_url": fake.base_url,
                    "access_token": "ya29.static-token",
                },
            ),
        },
        models=[
            ModelConfig(
                id="claude-on-bedrock", backend="bedrock", upstream_model=BEDROCK_MODEL, routing=once
            ),
            ModelConfig(id="claude-on-vertex", backend="vertex", upstream_model=VERTEX_MODEL, routing=once),
        ],
    )
    yield from serve(settings)


@pytest.fixture(autouse=True)
def _reset(fake: FakeUpstream) -> None:
    fake.reset()


def test_bedrock_invoke(server: LiveServer, fake: FakeUpstream) -> None:
    fake.answer(body=MESSAGE_JSON)
    raw = server.client().messages.with_raw_response.create(
        model="claude-on-bedrock",
        max_tokens=64,
        messages=[{"role": "user", "content": "Hi"}],
        extra_headers={"anthropic-beta": "context-1m-2025-08-07"},
    )
    assert raw.http_response.content == MESSAGE_JSON
    (seen,) = fake.seen
    assert seen.raw_path == "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
    sent = json.loads(seen.body)
    assert sent == {
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hi"}],
        "anthropic_version": "bedrock-2023-05-31",
        "anthropic_beta": ["context-1m-2025-08-07"],
    }
    verify_sigv4(seen, fake.base_url, "eu-west-1")
    record = server.run(server.services.usage.for_request(raw.headers["request-id"]))
    assert (record.input_tokens, record.output_tokens, record.cache_read_input_tokens) == (21, 9, 100)


def test_bedrock_event_stream_becomes_the_same_sse(server: LiveServer, fake: FakeUpstream) -> None:
    golden = transcript("anthropic_thinking.sse")
    frames = b"".join(frames_from_sse(golden))
    cut = [frames[i : i + 97] for i in range(0, len(frames), 97)]  # frames split across reads
    fake.answer(Answer(content_type="application/vnd.amazon.eventstream", chunks=cut))
    body = {
        "model": "claude-on-bedrock",
        "max_tokens": 4096,
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    with httpx.stream(
        "POST", server.base_url + "/v1/messages", json=body, headers={"x-api-key": server.key}
    ) as r:
        received = b"".join(r.iter_bytes())
        request_id = r.headers["request-id"]
    assert received == golden
    (seen,) = fake.seen
    assert seen.raw_path.endswith("/invoke-with-response-stream")
    assert "stream" not in json.loads(seen.body)
    verify_sigv4(seen, fake.base_url, "eu-west-1")
    record = server.run(server.services.usage.for_request(request_id))
    assert (record.output_tokens, record.cache_read_input_tokens, record.stop_reason) == (
        312,
        2048,
        "end_turn",
    )


def test_bedrock_stream_through_sdk_and_exception_frame(server: LiveServer, fake: FakeUpstream) -> None:
    fake.answer(
        Answer(
            content_type="application/vnd.amazon.eventstream",
            chunks=frames_from_sse(transcript("anthropic_tool_use.sse")),
        )
    )
    with server.client().messages.stream(
        model="claude-on-bedrock",
        max_tokens=100,
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        messages=[{"role": "user", "content": "x"}],
    ) as stream:
        message = stream.get_final_message()
    assert message.content[1].input == {"location": "San Francisco, CA"}  # type: ignore[union-attr]

    head = frames_from_sse(transcript("anthropic_text.sse"))[:2]
    throttled = event_frame(
        {
            ":message-type": "exception",
            ":exception-type": "throttlingException",
            ":content-type": "application/json",
        },
        b'{"message":"Too many tokens, please wait before trying again."}',
    )
    fake.answer(Answer(content_type="application/vnd.amazon.eventstream", chunks=[*head, throttled]))
    with pytest.raises(anthropic.APIStatusError) as failed:
        with server.client().messages.stream(
            model="claude-on-bedrock", max_tokens=100, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            stream.get_final_message()
    assert "Too many tokens" in str(failed.value)


def test_bedrock_count_tokens_and_errors(server: LiveServer, fake: FakeUpstream) -> None:
    fake.answer(body=b'{"inputTokens": 77}')
    count = server.client().messages.count_tokens(
        model="claude-on-bedrock", messages=[{"role": "user", "content": "x"}]
    )
    assert count.input_tokens == 77
    (seen,) = fake.seen
    assert seen.raw_path.endswith("/count-tokens")
    invoke = json.loads(base64.b64decode(json.loads(seen.body)["input"]["invokeModel"]["body"]))
    assert invoke["anthropic_version"] == "bedrock-2023-05-31" and "model" not in invoke

    fake.answer(status=429, body=b'{"message":"Too many requests, please wait before trying again."}')
    with pytest.raises(anthropic.RateLimitError):
        server.client().messages.create(
            model="claude-on-bedrock", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    fake.answer(status=403, body=b'{"message":"The security token included in the request is invalid."}')
    with pytest.raises(anthropic.InternalServerError):
        server.client().messages.create(
            model="claude-on-bedrock", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )


def test_vertex_raw_and_stream_raw_predict(server: LiveServer, fake: FakeUpstream) -> None:
    fake.answer(body=MESSAGE_JSON)
    message = server.client().messages.create(
        model="claude-on-vertex", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
    )
    assert message.content[-1].text == "Hi there"  # type: ignore[union-attr]
    golden = transcript("anthropic_text.sse")
    fake.sse(golden)
    body = {
        "model": "claude-on-vertex",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    with httpx.stream(
        "POST",
        server.base_url + "/v1/messages",
        json=body,
        headers={"x-api-key": server.key, "anthropic-beta": "token-efficient-tools-2025-02-19"},
    ) as r:
        assert b"".join(r.iter_bytes()) == golden
    plain, streamed = fake.seen
    prefix = (
        "/v1/projects/acme-prod/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929"
    )
    assert plain.path == prefix + ":rawPredict" and streamed.path == prefix + ":streamRawPredict"
    assert json.loads(plain.body) == {
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hi"}],
        "anthropic_version": "vertex-2023-10-16",
    }
    assert json.loads(streamed.body)["stream"] is True
    assert streamed.headers["authorization"] == "Bearer ya29.static-token"
    assert streamed.headers["anthropic-beta"] == "token-efficient-tools-2025-02-19"

    fake.answer(body=b'{"input_tokens": 9}')
    count = server.client().messages.count_tokens(
        model="claude-on-vertex", messages=[{"role": "user", "content": "x"}]
    )
    assert count.input_tokens == 9
    assert fake.seen[-1].path.endswith("/publishers/anthropic/models/count-tokens:rawPredict")
    assert json.loads(fake.seen[-1].body)["model"] == VERTEX_MODEL


@pytest.fixture
def service_account(tmp_path: Path) -> Iterator[tuple[LiveServer, FakeUpstream]]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    for fake in run_fake(FakeUpstream()):
        info: dict[str, Any] = {
            "type": "service_account",
            "project_id": "acme-prod",
            "private_key_id": "k1",
            "private_key": pem,
            "client_email": "wisegate@acme-prod.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": fake.base_url + "/token",
        }
        path = tmp_path / "sa.json"
        path.write_text(json.dumps(info))
        options = {"project": "acme-prod", "endpoint_url": fake.base_url, "credentials_file": str(path)}
        settings = settings_for(
            tmp_path / "data",
            backends={"vertex": BackendConfig(type="vertex", options=options)},
            models=[ModelConfig(id="claude-on-vertex", backend="vertex", upstream_model=VERTEX_MODEL)],
        )
        for live in serve(settings):
            yield live, fake


def test_vertex_service_account_token(service_account: tuple[LiveServer, FakeUpstream]) -> None:
    server, fake = service_account
    fake.answer(body=b'{"access_token": "ya29.minted", "expires_in": 3600, "token_type": "Bearer"}')
    fake.answer(body=MESSAGE_JSON)
    fake.answer(body=MESSAGE_JSON)
    for _ in range(2):
        server.client().messages.create(
            model="claude-on-vertex", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    token, first, second = fake.seen
    assert token.path == "/token" and b"assertion=" in token.body  # a JWT grant signed with the key
    assert first.path.startswith("/v1/projects/acme-prod/locations/global/")
    assert first.headers["authorization"] == second.headers["authorization"] == "Bearer ya29.minted"
