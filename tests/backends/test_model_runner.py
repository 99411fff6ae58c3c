"""The embedded model runs in a supervised runner process: its crashes end only the requests it was
serving, it comes back by itself, and a request that crashed it 3 times is not run again.

One server (uvicorn in a thread) serves the embedded model and the scripted backend; its local
backend starts its own supervisor (no ``wisegate serve`` parent here). The runner is killed from the
test with real signals while it generates.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import EMBEDDED_MODEL, SCRIPTED_MODEL, LiveServer, serve, settings_for
from wisegate.backends.local import supervisor
from wisegate.backends.scripted import ScriptedBackend
from wisegate.settings import BackendConfig, ModelConfig, Settings

LONG = "Write a very long story about a dragon who learns to paint, with many chapters."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("runner")
    embedded = Settings(data_dir=data_dir).models[0]
    settings = settings_for(
        data_dir,
        backends={
            "local": BackendConfig(
                type="local", options={"restart_backoff_seconds": 0.5, "stall_seconds": 8}
            ),
            "scripted": BackendConfig(type="scripted"),
        },
        models=[embedded, ModelConfig(id=SCRIPTED_MODEL, backend="scripted", max_output_tokens=4096)],
    )
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


def _status(live: LiveServer) -> dict[str, Any]:
    path = live.services.registry.backends["local"].runner_socket  # type: ignore[attr-defined]
    answer = asyncio.run(supervisor.status(path))
    assert answer is not None, "the runner's supervisor does not answer"
    return answer


def _wait_up(live: LiveServer, *, other_than: int | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        state = _status(live)
        if state["state"] == "up" and state["pid"] != other_than:
            return state
        time.sleep(0.05)
    raise AssertionError(f"the runner did not come back: {_status(live)}")


def _sse(live: LiveServer, prompt: str, max_tokens: int, seen: list[tuple[str, Any]]) -> None:
    """One raw SSE stream on the embedded model; ``seen`` gets (event, data) as they arrive."""
    body = {"model": EMBEDDED_MODEL, "max_tokens": max_tokens, "stream": True, "temperature": 0}
    body["messages"] = [{"role": "user", "content": prompt}]
    headers = {"x-api-key": live.key}
    with httpx.stream("POST", f"{live.base_url}/v1/messages", json=body, headers=headers, timeout=300) as r:
        assert r.status_code == 200
        event = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                seen.append((event, json.loads(line[6:])))


def _wait_for(condition: Any, what: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_kill_9_under_load_ends_only_the_runners_requests(server: LiveServer) -> None:
    before = _wait_up(server)
    streams: list[list[tuple[str, Any]]] = [[] for _ in range(3)]
    threads = [
        threading.Thread(target=_sse, args=(server, f"{LONG} ({i})", 300, seen))
        for i, seen in enumerate(streams)
    ]
    for thread in threads:
        thread.start()

    # Everything else keeps answering: the scripted model through the SDK, and /health.
    others: list[tuple[str, bool]] = []
    not_ready: list[dict[str, Any]] = []
    stop = threading.Event()

    def other_traffic() -> None:
        client = server.client()
        while not stop.is_set():
            try:
                message = client.messages.create(
                    model=SCRIPTED_MODEL, max_tokens=8, messages=[{"role": "user", "content": "still here"}]
                )
                others.append(("scripted", message.content[0].text == "still here"))  # type: ignore[union-attr]
            except Exception as exc:  # any failure is the test's finding
                others.append((f"scripted: {exc!r}", False))
            response = httpx.get(f"{server.base_url}/health", timeout=5)
            others.append(("health", response.status_code == 200))
            ready = httpx.get(f"{server.base_url}/ready", timeout=5)
            if ready.status_code == 503:
                not_ready.append(ready.json())
            time.sleep(0.02)

    traffic = threading.Thread(target=other_traffic)
    traffic.start()
    try:
        # All three admitted (message_start), the first one generating.
        _wait_for(lambda: all(seen for seen in streams), "the streams to start")
        _wait_for(lambda: any(e == "content_block_delta" for s in streams for e, _ in s), "generated text")
        os.kill(before["pid"], signal.SIGKILL)
        for thread in threads:
            thread.join(300)
        after = _wait_up(server, other_than=before["pid"])
        time.sleep(0.5)  # some traffic after the restart too
    finally:
        stop.set()
        traffic.join(30)

    for seen in streams:
        assert seen[0][0] == "message_start"
        event, data = seen[-1]
        assert event == "error", seen[-3:]
        assert data["error"]["type"] == "api_error"
        assert "crashed" in data["error"]["message"]
        assert not any(e == "message_stop" for e, _ in seen)
    failures = [what for what, ok in others if not ok]
    assert not failures, failures
    assert sum(what == "scripted" for what, _ in others) >= 5
    assert any(body["checks"]["backend:local"].startswith("the model runner is") for body in not_ready), (
        "/ready never showed the runner down"
    )
    assert after["restarts"] == before["restarts"] + 1

    # Usage is recorded for what was produced before the crash.
    crashed: list[Any] = []
    deadline = time.monotonic() + 30
    while len(crashed) < 3 and time.monotonic() < deadline:  # settlements are committed in the background
        records = server.run(server.services.usage.recent(limit=50))
        crashed = [r for r in records if r.model == EMBEDDED_MODEL and r.error_type == "api_error"]
        time.sleep(0.1)
    assert len(crashed) == 3, [(r.model, r.error_type) for r in records]
    assert all(r.input_tokens > 0 for r in crashed)
    assert any(r.output_tokens > 0 for r in crashed)

    # The runner is back: the next embedded request succeeds.
    message = server.client().messages.create(
        model=EMBEDDED_MODEL, max_tokens=5, messages=[{"role": "user", "content": "Say hello."}]
    )
    assert message.stop_reason in ("end_turn", "max_tokens") and message.usage.output_tokens > 0


def test_a_runner_that_stops_making_progress_is_killed_and_its_requests_end(server: LiveServer) -> None:
    """A native call that never returns (SIGSTOP stands for it) would hold the model for good: after
    ``stall_seconds`` (8 here) of silence while generating, the supervisor kills the runner."""
    before = _wait_up(server)
    seen: list[tuple[str, Any]] = []
    thread = threading.Thread(target=_sse, args=(server, f"{LONG} {time.time_ns()}", 300, seen))
    thread.start()
    _wait_for(lambda: any(event == "content_block_delta" for event, _ in seen), "the first token")
    os.kill(before["pid"], signal.SIGSTOP)
    stopped = time.monotonic()
    thread.join(120)
    waited = time.monotonic() - stopped
    assert not thread.is_alive()
    assert seen[-1][0] == "error" and seen[-1][1]["error"]["type"] == "api_error", seen[-1]
    assert 7 < waited < 60, waited
    after = _wait_up(server, other_than=before["pid"])
    assert after["restarts"] > before["restarts"]
    message = server.client().messages.create(
        model=EMBEDDED_MODEL, max_tokens=3, messages=[{"role": "user", "content": "Say hi."}]
    )
    assert message.usage.output_tokens > 0


def test_a_request_that_crashed_the_runner_3_times_is_not_run_again(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    prompt = f"{LONG} Its name is {time.time_ns()}."  # a request no other test sent
    body = {"model": EMBEDDED_MODEL, "max_tokens": 300, "temperature": 0}
    body["messages"] = [{"role": "user", "content": prompt}]
    headers = {"x-api-key": server.key}
    answers: list[httpx.Response] = []
    caplog.set_level(logging.ERROR, logger="wisegate")
    for attempt in range(1, 4):
        before = _wait_up(server)
        thread = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"{server.base_url}/v1/messages", json=body, headers=headers, timeout=300)
            )
        )
        thread.start()
        _wait_for(lambda: _status(server)["serving"], f"attempt {attempt} to reach the runner")
        os.kill(before["pid"], signal.SIGSEGV)
        thread.join(300)
        assert answers[-1].status_code == 500
        assert answers[-1].json()["error"]["type"] == "api_error"
    assert "crashed the embedded model 3 times" in answers[-1].json()["error"]["message"]
    assert "retry" not in answers[-1].json()["error"]["message"]
    assert "restarts by itself" in answers[0].json()["error"]["message"]

    # A 4th attempt is refused at once; the runner is not touched (same process, no new restart).
    state = _wait_up(server)
    again = httpx.post(f"{server.base_url}/v1/messages", json=body, headers=headers, timeout=300)
    assert again.status_code == 500 and "3 times" in again.json()["error"]["message"]
    assert _status(server)["pid"] == state["pid"] and _status(server)["restarts"] == state["restarts"]
    # The log names the request ids (the response header carries each).
    logged = caplog.text
    for answer in (answers[-1], again):
        assert answer.headers["request-id"] in logged

    # Any other request still runs.
    other = httpx.post(
        f"{server.base_url}/v1/messages",
        json={**body, "max_tokens": 3, "messages": [{"role": "user", "content": "Say hi."}]},
        headers=headers,
        timeout=300,
    )
    assert other.status_code == 200, other.text


def test_a_batch_request_that_crashed_the_runner_3_times_ends_as_api_error(server: LiveServer) -> None:
    client = server.client()
    poison = {"model": EMBEDDED_MODEL, "max_tokens": 300, "temperature": 0}
    poison["messages"] = [{"role": "user", "content": f"{LONG} Its name is {time.time_ns()}."}]
    innocent = {"model": EMBEDDED_MODEL, "max_tokens": 3, "messages": [{"role": "user", "content": "Hi."}]}
    batch = client.messages.batches.create(
        requests=[{"custom_id": "poison", "params": poison}, {"custom_id": "innocent", "params": innocent}]  # type: ignore[list-item]
    )
    kills = 0
    deadline = time.monotonic() + 600
    while kills < 3:
        assert time.monotonic() < deadline, "the batch request did not reach the runner 3 times"
        state = _status(server)
        if state["state"] == "up" and f"{batch.id}:0" in state["serving"]:
            os.kill(state["pid"], signal.SIGSEGV)
            kills += 1
            _wait_up(server, other_than=state["pid"])
        time.sleep(0.01)
    while client.messages.batches.retrieve(batch.id).processing_status != "ended":
        assert time.monotonic() < deadline, "the batch did not end"
        time.sleep(0.2)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["poison"].type == "errored"
    assert results["poison"].error.error.type == "api_error"  # type: ignore[union-attr]
    assert "3 times" in results["poison"].error.error.message  # type: ignore[union-attr]
    assert results["innocent"].type == "succeeded"


def test_nodes_sharing_a_data_directory_each_reach_their_own_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes (hosts or containers) with one data volume: a supervisor unlinks its socket path as it
    starts and as it stops, so one shared path let a stopping node take the other's runner away."""
    paths = []
    for host in ("node-a", "node-b"):
        monkeypatch.setattr(socket, "gethostname", lambda host=host: host)
        paths.append(supervisor.runner_socket(tmp_path, "local"))
    assert paths[0] != paths[1]
    assert paths[0].parent.parent == paths[1].parent.parent == tmp_path.resolve() / "runners"
