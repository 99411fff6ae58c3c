"""Message Batches end to end through the official SDK, on the scripted backend."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import SCRIPTED_MODEL, LiveServer, make_key, scripted_settings, serve
from wisegate.backends.base import BackendItem, ModelRoute
from wisegate.backends.scripted import ScriptedBackend
from wisegate.domain.clock import ManualClock
from wisegate.protocol.messages import MessagesRequest


class GatedBackend(ScriptedBackend):
    """The scripted backend, but each request waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__("scripted")
        self.gate: asyncio.Event | None = None
        self.started = 0

    async def stream(
        self, request: MessagesRequest, route: ModelRoute, *, batch: bool = False
    ) -> AsyncGenerator[BackendItem]:
        self.started += 1
        if self.gate is None:
            self.gate = asyncio.Event()
        await self.gate.wait()
        async for item in super().stream(request, route, batch=batch):
            yield item


def _request(custom_id: str, text: str, model: str = SCRIPTED_MODEL) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": text}]},
    }


def wait_ended(client: anthropic.Anthropic, batch_id: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = scripted_settings(
        tmp_path_factory.mktemp("batches"), max_batch_requests=50, max_batch_request_bytes=256 * 1024
    )
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


def test_create_retrieve_results(server: LiveServer) -> None:
    client = server.client()
    requests = [_request(f"req-{i}", f"hello number {i}") for i in range(5)]
    requests.append(_request("unknown-model", "hi", model="no-such-model"))
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    assert batch.id.startswith("msgbatch_") and batch.type == "message_batch"
    assert batch.processing_status in ("in_progress", "ended")
    counts = batch.request_counts
    total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
    assert total == 6
    assert batch.expires_at - batch.created_at == __import__("datetime").timedelta(hours=24)
    ended = wait_ended(client, batch.id)
    assert ended.ended_at is not None and ended.results_url is not None
    assert ended.results_url == f"{server.base_url}/v1/messages/batches/{batch.id}/results"
    assert ended.request_counts.succeeded == 5 and ended.request_counts.errored == 1
    assert ended.request_counts.processing == 0
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert set(results) == {f"req-{i}" for i in range(5)} | {"unknown-model"}
    ok = results["req-3"]
    assert ok.type == "succeeded"
    assert ok.message.content[0].text == "hello number 3"  # type: ignore[union-attr]
    assert ok.message.usage.service_tier == "batch"
    bad = results["unknown-model"]
    assert bad.type == "errored"
    assert bad.error.error.type == "not_found_error"
    assert "no-such-model" in bad.error.error.message

    async def usage() -> list[Any]:
        return await server.services.usage.recent(limit=1000)

    records = [r for r in server.run(usage()) if r.request_id.startswith(batch.id)]
    assert len(records) == 6
    assert {r.service_tier for r in records} == {"batch"}
    assert sorted(r.request_id for r in records) == sorted(f"{batch.id}:{i}" for i in range(6))


def test_validation_names_the_bad_request(server: LiveServer) -> None:
    """Only the envelope is checked at submission: ``custom_id``, uniqueness, counts, the JSON."""
    client = server.client()
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.batches.create(requests=[_request("a", "x"), {"custom_id": "b"}])  # type: ignore[list-item]
    assert "requests.1 (custom_id 'b'): params: Field required" in info.value.message
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.batches.create(requests=[_request("same", "x"), _request("same", "y")])  # type: ignore[arg-type]
    assert "requests.1" in info.value.message and "unique" in info.value.message
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.batches.create(requests=[_request("not ok!", "x")])  # type: ignore[arg-type]
    assert "requests.0" in info.value.message and "custom_id" in info.value.message
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.batches.create(requests=[])
    assert "at least 1" in info.value.message
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.batches.create(requests=[_request(f"r{i}", "x") for i in range(51)])  # type: ignore[arg-type]
    assert "at most 50 requests" in info.value.message
    response = httpx.post(
        f"{server.base_url}/v1/messages/batches",
        headers={"x-api-key": server.key},
        content=b'{"requests": [1, 2',
    )
    assert response.status_code == 400 and response.json()["type"] == "error"


def test_invalid_params_end_as_errored_results(server: LiveServer) -> None:
    """``params`` is validated when the request runs: an invalid one does not refuse the batch; its
    result is the ``invalid_request_error`` ``/v1/messages`` gives for the same body, word for word."""
    client = server.client()
    hot = _request("hot", "x")
    hot["params"]["temperature"] = 5
    no_max = {
        "custom_id": "no-max",
        "params": {"model": SCRIPTED_MODEL, "messages": [{"role": "user", "content": "x"}]},
    }
    streamed = _request("streamed", "x")
    streamed["params"]["stream"] = True
    batch = client.messages.batches.create(  # type: ignore[arg-type]
        requests=[_request("fine", "all good"), hot, no_max, streamed]
    )
    assert batch.request_counts.processing == 4
    ended = wait_ended(client, batch.id)
    assert (ended.request_counts.succeeded, ended.request_counts.errored) == (1, 3)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["fine"].type == "succeeded"
    for custom_id, params in (("hot", hot["params"]), ("no-max", no_max["params"])):
        direct = httpx.post(f"{server.base_url}/v1/messages", headers={"x-api-key": server.key}, json=params)
        assert direct.status_code == 400
        result = results[custom_id]
        assert result.type == "errored", custom_id
        assert result.error.error.type == "invalid_request_error"  # type: ignore[union-attr]
        assert result.error.error.message == direct.json()["error"]["message"]  # type: ignore[union-attr]
    assert "temperature" in results["hot"].error.error.message  # type: ignore[union-attr]
    assert results["streamed"].type == "errored"
    assert results["streamed"].error.error.message == "stream: batch requests cannot be streamed"  # type: ignore[union-attr]


def test_body_limit_is_enforced_while_reading(server: LiveServer) -> None:
    """No content-length: the 256 KB limit (set for the test) cuts off a chunked upload while reading."""
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/messages/batches HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"x-api-key: " + server.key.encode() + b"\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        start = b'{"requests": [{"custom_id": "a", "params": {"model": "m", "max_tokens": 1, "messages": '
        start += b'[{"role": "user", "content": "'
        sock.sendall(b"%x\r\n" % len(start) + start + b"\r\n")
        chunk = b"x" * 16384
        reply = b""
        for _ in range(64):
            try:
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            except OSError:
                break
        while b"request_too_large" not in reply:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    assert reply.decode().startswith("HTTP/1.1 413")
    assert b'"request_too_large"' in reply


def test_list_and_pagination(server: LiveServer) -> None:
    client = server.client()
    ids = [client.messages.batches.create(requests=[_request("a", "x")]).id for _ in range(3)]  # type: ignore[list-item]
    page = client.messages.batches.list(limit=2)
    assert len(page.data) == 2 and page.has_more
    assert [b.id for b in page.data] == ids[::-1][:2]
    every = [b.id for b in client.messages.batches.list(limit=2)]
    assert every[:3] == ids[::-1] and len(every) == len(set(every))
    before = client.messages.batches.list(before_id=ids[0], limit=1)
    assert [b.id for b in before.data] == [ids[1]]


def test_workspace_isolation(server: LiveServer) -> None:
    client = server.client()
    batch = client.messages.batches.create(requests=[_request("a", "x")])  # type: ignore[list-item]

    async def other_workspace() -> str:
        org = await server.services.keys.bootstrap()
        workspace = await server.services.keys.create_workspace(org.id, "other")
        return workspace.id

    other_key = make_key(server.settings, workspace=server.run(other_workspace()))
    other = server.client(api_key=other_key)
    with pytest.raises(anthropic.NotFoundError):
        other.messages.batches.retrieve(batch.id)
    with pytest.raises(anthropic.NotFoundError):
        other.messages.batches.cancel(batch.id)
    with pytest.raises(anthropic.NotFoundError):
        other.messages.batches.delete(batch.id)
    assert batch.id not in [b.id for b in other.messages.batches.list()]


def test_delete_only_once_ended(server: LiveServer) -> None:
    client = server.client()
    batch = client.messages.batches.create(requests=[_request("a", "x")])  # type: ignore[list-item]
    wait_ended(client, batch.id)
    deleted = client.messages.batches.delete(batch.id)
    assert deleted.id == batch.id and deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[tuple[LiveServer, GatedBackend, ManualClock]]:
    backend = GatedBackend()
    clock = ManualClock()
    settings = scripted_settings(tmp_path, batch_concurrency=2)
    for live in serve(settings, backends={"scripted": backend}, clock=clock):
        yield live, backend, clock


def _open_gate(live: LiveServer, backend: GatedBackend) -> None:
    async def open_gate() -> None:
        if backend.gate is None:
            backend.gate = asyncio.Event()
        backend.gate.set()

    live.run(open_gate())


def test_cancel(gated: tuple[LiveServer, GatedBackend, ManualClock]) -> None:
    live, backend, _ = gated
    client = live.client()
    batch = client.messages.batches.create(requests=[_request(f"r{i}", "x") for i in range(20)])  # type: ignore[arg-type]
    deadline = time.monotonic() + 30
    while backend.started < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(batch.id)
    with pytest.raises(anthropic.AnthropicError, match="No `results_url`"):
        client.messages.batches.results(batch.id)
    canceled = client.messages.batches.cancel(batch.id)
    assert canceled.processing_status == "canceling" and canceled.cancel_initiated_at is not None
    assert canceled.request_counts.canceled >= 18 - 2  # not started: canceled at once
    _open_gate(live, backend)
    ended = wait_ended(client, batch.id)
    counts = ended.request_counts
    assert counts.succeeded == backend.started and counts.succeeded + counts.canceled == 20
    kinds = [r.result.type for r in client.messages.batches.results(batch.id)]
    assert sorted(set(kinds)) == ["canceled", "succeeded"] and len(kinds) == 20


def test_expiry(gated: tuple[LiveServer, GatedBackend, ManualClock]) -> None:
    live, backend, clock = gated
    client = live.client()
    batch = client.messages.batches.create(requests=[_request(f"r{i}", "x") for i in range(10)])  # type: ignore[arg-type]
    deadline = time.monotonic() + 30
    while backend.started < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    clock.advance(hours=24, seconds=1)
    ended = wait_ended(client, batch.id)
    assert ended.request_counts.expired == 10
    assert [r.result.type for r in client.messages.batches.results(batch.id)] == ["expired"] * 10
    _open_gate(live, backend)
    clock.advance(days=29)
    deadline = time.monotonic() + 30
    while client.messages.batches.retrieve(batch.id).archived_at is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(anthropic.NotFoundError, match="deleted"):
        list(client.messages.batches.results(batch.id))
