"""``/health``, ``/ready`` and ``/metrics`` on real servers (uvicorn on a port), read with httpx and
the official SDK."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    SCRIPTED_MODEL,
    LiveServer,
    _pg_admin,
    free_port,
    postgres_database,
    scripted_settings,
    serve,
)
from wisegate.backends.scripted import ScriptedBackend


def samples(base_url: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(base_url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_health_is_ok_without_a_key(scripted_server: LiveServer) -> None:
    response = httpx.get(scripted_server.base_url + "/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["request-id"].startswith("req_")


def test_ready_names_every_check_and_turns_503_while_draining(scripted_server: LiveServer) -> None:
    response = httpx.get(scripted_server.base_url + "/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "backend:scripted": "ok"}}
    drain = scripted_server.services.drain
    # Only the flag /ready reads: begin() would also drain this shared server's batch worker for good.
    drain.draining = True
    try:
        response = httpx.get(scripted_server.base_url + "/ready")
    finally:
        drain.draining = False
    assert response.status_code == 503
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert body["error"]["message"].startswith("Not ready: process: draining")
    assert body["checks"]["database"] == "ok"


@pytest.fixture
def unreachable_redis(tmp_path: Path) -> Iterator[LiveServer]:
    settings = scripted_settings(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


def test_ready_is_503_naming_redis_when_it_does_not_answer(unreachable_redis: LiveServer) -> None:
    response = httpx.get(unreachable_redis.base_url + "/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["redis"].startswith("unavailable (")
    assert body["checks"]["database"] == "ok"
    assert "Not ready: redis: unavailable" in body["error"]["message"]
    assert "127.0.0.1" not in response.text  # no key is needed to read it: no internal addresses


@pytest.mark.postgres
def test_ready_is_503_naming_the_database_once_it_is_gone(tmp_path: Path) -> None:
    with postgres_database() as url:
        settings = scripted_settings(tmp_path, database_url=url)
        for server in serve(settings, backends={"scripted": ScriptedBackend()}):
            assert httpx.get(server.base_url + "/ready").status_code == 200
            name = url.rsplit("/", 1)[1]
            _pg_admin(f'DROP DATABASE "{name}" WITH (FORCE)')
            # /ready reuses a check's result for a quarter of a second: ask until that has passed.
            deadline = time.monotonic() + 10
            while (response := httpx.get(server.base_url + "/ready", timeout=10)).status_code == 200:
                assert time.monotonic() < deadline, "/ready still 200 after the database was dropped"
                time.sleep(0.1)
            assert response.status_code == 503
            assert response.json()["checks"]["database"] != "ok"
            assert response.json()["checks"]["backend:scripted"] == "ok"


def test_metrics_count_requests_tokens_and_streams_by_model(scripted_server: LiveServer) -> None:
    before = samples(scripted_server.base_url)
    client = scripted_server.client()
    client.messages.create(
        model=SCRIPTED_MODEL, max_tokens=50, messages=[{"role": "user", "content": "one two three"}]
    )
    with client.messages.stream(
        model="scripted-latest", max_tokens=50, messages=[{"role": "user", "content": "four five"}]
    ) as stream:
        stream.until_done()
    client.messages.count_tokens(model=SCRIPTED_MODEL, messages=[{"role": "user", "content": "x"}])
    httpx.post(
        scripted_server.base_url + "/v1/messages",
        headers={"x-api-key": scripted_server.key},
        json={"model": "no-such-model", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
    )
    httpx.get(scripted_server.base_url + "/no/such/path")
    after = samples(scripted_server.base_url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    messages = {"route": "/v1/messages", "status": "200", "model": SCRIPTED_MODEL}
    assert delta("wisegate_requests_total", **messages) == 2  # the alias counts as its model
    assert delta("wisegate_requests_total", route="/v1/messages", status="404", model="other") == 1
    assert delta("wisegate_requests_total", route="unmatched", status="404", model="") == 1
    counted = {"route": "/v1/messages/count_tokens", "status": "200", "model": SCRIPTED_MODEL}
    assert delta("wisegate_requests_total", **counted) == 1
    timing = {"route": "/v1/messages", "model": SCRIPTED_MODEL}
    assert delta("wisegate_request_duration_seconds_count", **timing) == 2
    assert delta("wisegate_time_to_first_byte_seconds_count", **timing) == 2
    workspace = {"model": SCRIPTED_MODEL}
    tokens = {
        kind: sum(
            v - value(before, n, **dict(labels))
            for (n, labels), v in after.items()
            if n == "wisegate_tokens_total" and dict(labels).get("kind") == kind
            and dict(labels)["model"] == workspace["model"]
        )
        for kind in ("input", "output")
    }  # fmt: skip
    assert tokens == {"input": 5, "output": 5}  # one token a word (scripted backend)
    assert value(after, "wisegate_requests_in_flight") >= 1  # the scrape itself
    assert value(after, "wisegate_streams_in_flight") == 0
    assert value(after, "wisegate_batch_requests", state="queued") >= 0
    assert not any("api_key" in dict(labels) or "key" in dict(labels) for _, labels in after)


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[LiveServer]:
    settings = scripted_settings(tmp_path, metrics_token="s3cret-token")
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


def test_metrics_token_is_required_when_set(guarded: LiveServer) -> None:
    refused = httpx.get(guarded.base_url + "/metrics")
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "authentication_error"
    assert "WISEGATE_METRICS_TOKEN" in refused.json()["error"]["message"]
    wrong = httpx.get(guarded.base_url + "/metrics", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert samples(guarded.base_url, authorization="Bearer s3cret-token")
    assert httpx.get(guarded.base_url + "/health").status_code == 200  # probes stay open
    assert httpx.get(guarded.base_url + "/ready").status_code == 200


def test_a_drain_cut_ends_a_stream_with_an_error_event_and_settles_it(tmp_path: Path) -> None:
    backend = ScriptedBackend(options={"token_delay": 0.05})
    for server in serve(scripted_settings(tmp_path), backends={"scripted": backend}):
        words = " ".join(f"w{i}" for i in range(200))
        with httpx.stream(
            "POST",
            server.base_url + "/v1/messages",
            headers={"x-api-key": server.key},
            json={"model": SCRIPTED_MODEL, "max_tokens": 500, "stream": True,
                  "messages": [{"role": "user", "content": words}]},
            timeout=30,
        ) as response:  # fmt: skip
            request_id = response.headers["request-id"]
            lines = response.iter_lines()
            for line in lines:
                if line.startswith("event: content_block_delta"):
                    break
            server.run(_cut(server))
            rest = list(lines)
        assert "event: error" in rest and "event: message_stop" not in rest
        assert any('"overloaded_error"' in line and "shutting down" in line for line in rest)
        record = server.run(server.services.usage.for_request(request_id))
        assert record.error_type == "overloaded_error" and 0 < record.output_tokens < 200


async def _cut(server: LiveServer) -> None:
    server.services.drain.cut()
    await asyncio.sleep(0)
