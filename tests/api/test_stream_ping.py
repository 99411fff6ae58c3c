"""Stream keep-alive: a silent stream gets pings (WISEGATE_STREAM_PING_SECONDS), so read timeouts hold.

The scripted backend is made slow (``token_delay``: each word waits that long) and the clients are given
a read timeout shorter than that wait: without pings they give up, with them the answer arrives whole.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anthropic
import httpx
import httpx2
import openai
import pytest

from tests.conftest import SCRIPTED_MODEL, LiveServer, scripted_settings, serve
from wisegate.api.sse import SSEResponse
from wisegate.backends.scripted import ScriptedBackend
from wisegate.domain.drain import Drain
from wisegate.errors import Overloaded

WORD_WAIT = 0.8  # seconds between two words of an answer
PING = 0.2  # WISEGATE_STREAM_PING_SECONDS of the pinging server
READ_TIMEOUT = 0.5  # seconds: longer than a ping's gap, shorter than a word's


def _slow_server(tmp_path: Path, ping_seconds: float) -> Iterator[LiveServer]:
    backend = ScriptedBackend(options={"token_delay": WORD_WAIT})
    settings = scripted_settings(tmp_path, stream_ping_seconds=ping_seconds)
    yield from serve(settings, backends={"scripted": backend})


@pytest.fixture(scope="module")
def pinging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _slow_server(tmp_path_factory.mktemp("pinging"), PING)


def _stream_lines(server: LiveServer, path: str, body: dict[str, object], auth: dict[str, str]) -> list[str]:
    with httpx.stream(
        "POST", server.base_url + path, headers=auth, json=body, timeout=READ_TIMEOUT
    ) as response:
        assert response.status_code == 200
        return list(response.iter_lines())


def test_raw_stream_pings_between_slow_events(pinging: LiveServer) -> None:
    lines = _stream_lines(
        pinging,
        "/v1/messages",
        {"model": SCRIPTED_MODEL, "max_tokens": 10, "stream": True,
         "messages": [{"role": "user", "content": "one two"}]},
        {"x-api-key": pinging.key},
    )  # fmt: skip
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    # each word waits WORD_WAIT: at least two pings (every PING seconds) before each of the two deltas
    deltas = [i for i, event in enumerate(events) if event == "content_block_delta"]
    assert len(deltas) == 2
    assert events[deltas[0] - 2 : deltas[0]] == ["ping", "ping"]
    assert events[deltas[1] - 2 : deltas[1]] == ["ping", "ping"]
    pings = [i for i, line in enumerate(lines) if line == "event: ping"]
    assert all(lines[i + 1] == 'data: {"type":"ping"}' and lines[i + 2] == "" for i in pings)


def test_sdk_stream_outlives_its_read_timeout(pinging: LiveServer) -> None:
    client = pinging.client(timeout=READ_TIMEOUT)
    with client.messages.stream(
        model=SCRIPTED_MODEL, max_tokens=10, messages=[{"role": "user", "content": "slow but steady"}]
    ) as stream:
        message = stream.get_final_message()
    assert message.content[0].type == "text" and message.content[0].text == "slow but steady"
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 3


def test_openai_stream_pings_with_a_comment_the_sdk_skips(pinging: LiveServer) -> None:
    lines = _stream_lines(
        pinging,
        "/v1/chat/completions",
        {"model": SCRIPTED_MODEL, "stream": True, "messages": [{"role": "user", "content": "one two"}]},
        {"authorization": f"Bearer {pinging.key}"},
    )
    assert lines.count(": ping") >= 4 and not any(line.startswith("event:") for line in lines)
    client = openai.OpenAI(
        base_url=pinging.base_url + "/v1", api_key=pinging.key, timeout=READ_TIMEOUT, max_retries=0
    )
    chunks = list(
        client.chat.completions.create(
            model=SCRIPTED_MODEL, stream=True, messages=[{"role": "user", "content": "still here"}]
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "still here"


def test_zero_sends_no_pings(tmp_path: Path) -> None:
    for server in _slow_server(tmp_path, 0):
        # the read timeout fires between two words: before the response (wrapped by the SDK) or while
        # the events are read (httpx2's own)
        with pytest.raises((anthropic.APITimeoutError, httpx2.ReadTimeout)):
            with server.client(timeout=READ_TIMEOUT).messages.stream(
                model=SCRIPTED_MODEL, max_tokens=10, messages=[{"role": "user", "content": "one two"}]
            ) as stream:
                stream.get_final_message()


@pytest.fixture(scope="module")
def slow_to_start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Each answer's first event comes WORD_WAIT late (a long prefill, a slow upstream)."""
    backend = ScriptedBackend(options={"delay": WORD_WAIT})
    settings = scripted_settings(tmp_path_factory.mktemp("slow-start"), stream_ping_seconds=PING)
    yield from serve(settings, backends={"scripted": backend})


def test_a_slow_first_event_is_pinged_for(slow_to_start: LiveServer) -> None:
    """The response starts once the first event is a ping interval late, and pings until it comes."""
    client = slow_to_start.client(timeout=READ_TIMEOUT)
    with client.messages.stream(
        model=SCRIPTED_MODEL, max_tokens=10, messages=[{"role": "user", "content": "worth the wait"}]
    ) as stream:
        message = stream.get_final_message()
    assert message.content[0].type == "text" and message.content[0].text == "worth the wait"
    lines = _stream_lines(
        slow_to_start,
        "/v1/messages",
        {
            "model": SCRIPTED_MODEL,
            "max_tokens": 10,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
        {"x-api-key": slow_to_start.key},
    )
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert events[:2] == ["ping", "ping"] and events[-1] == "message_stop"
    assert events[events.index("message_start") - 1] == "ping"
    chat = openai.OpenAI(
        base_url=slow_to_start.base_url + "/v1",
        api_key=slow_to_start.key,
        timeout=READ_TIMEOUT,
        max_retries=0,
    ).chat.completions.create(
        model=SCRIPTED_MODEL, stream=True, messages=[{"role": "user", "content": "late but here"}]
    )
    assert "".join(c.choices[0].delta.content or "" for c in chat if c.choices) == "late but here"


def test_a_late_failure_is_the_streams_error_event(slow_to_start: LiveServer) -> None:
    """Past the ping interval the status is sent: a failure before the first event is an error event,
    and the request is settled as that error."""
    backend = slow_to_start.backend
    assert isinstance(backend, ScriptedBackend)
    backend.enqueue(error=Overloaded("Overloaded"))
    url = slow_to_start.base_url + "/v1/messages"
    body = {
        "model": SCRIPTED_MODEL,
        "max_tokens": 10,
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    with httpx.stream(
        "POST", url, headers={"x-api-key": slow_to_start.key}, json=body, timeout=10
    ) as response:
        assert response.status_code == 200
        request_id = response.headers["request-id"]
        lines = list(response.iter_lines())
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert events[0] == "ping" and events[-1] == "error", events
    assert any('"overloaded_error"' in line for line in lines)
    deadline = time.monotonic() + 10
    while (record := slow_to_start.run(slow_to_start.services.usage.for_request(request_id))) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert record.error_type == "overloaded_error" and record.output_tokens == 0


class _Relayed:
    def abort(self, error_type: str) -> None:
        return None

    async def aclose(self) -> None:
        return None


def test_a_ping_never_splits_a_relayed_event() -> None:
    """Relayed upstream bytes may pause inside an event: the ping waits for the event's end."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'event: content_block_delta\ndata: {"a":'
        await asyncio.sleep(0.35)
        yield b" 1}\n\n"
        await asyncio.sleep(0.35)
        yield b"event: message_stop\ndata: {}\n\n"

    async def run() -> bytes:
        sent: list[bytes] = []
        finished = asyncio.Event()

        async def receive() -> dict[str, object]:
            await finished.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, object]) -> None:
            body = message.get("body")
            if isinstance(body, bytes):
                sent.append(body)
            if message.get("more_body") is False:
                finished.set()

        response = SSEResponse(chunks(), _Relayed(), None, Drain(), ping_seconds=0.1)
        await response({"type": "http"}, receive, send)  # type: ignore[arg-type]
        return b"".join(sent)

    body = asyncio.run(run())
    assert body.startswith(b'event: content_block_delta\ndata: {"a": 1}\n\nevent: ping\n')
    assert body.endswith(b'event: ping\ndata: {"type":"ping"}\n\nevent: message_stop\ndata: {}\n\n')
