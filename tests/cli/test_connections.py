"""``wisegate serve``'s HTTP server bounds each connection: header size (431), time for the request
head (408), the pace of the body (408), idle keep-alive, and the number of connections (529), and answers
what HTTP cannot parse with the error envelope (400), over raw sockets."""

from __future__ import annotations

import gc
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SCRIPTED_MODEL, free_port, make_key, scripted_settings
from wisegate.app import create_app
from wisegate.backends.scripted import ScriptedBackend
from wisegate.cli.connections import ConnectionLimits
from wisegate.cli.server import _Server, server_config
from wisegate.storage.db import migrate

LIMITS = ConnectionLimits(
    max_header_bytes=4096,
    header_timeout_seconds=1.0,
    keep_alive_seconds=0.5,
    max_connections=3,
    body_timeout_seconds=1.0,
    body_min_bytes_per_second=1000,
)
GET = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
KEY: list[str] = []


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    settings = scripted_settings(Path(tmp_path_factory.mktemp("connections")))
    migrate(settings.resolved_database_url)
    KEY[:] = [make_key(settings)]
    app = create_app(settings, backends={"scripted": ScriptedBackend()})
    number = free_port()
    thresholds = gc.get_threshold()
    server = _Server(server_config(app, "127.0.0.1", number, LIMITS), None, 30, 0, None)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield number
    server.should_exit = True
    thread.join(30)
    gc.unfreeze()  # the server froze the heap at startup; later tests expect a fresh collector
    gc.set_threshold(*thresholds)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def status_and_body(reply: bytes) -> tuple[int, dict[str, object], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body), head


def test_an_ordinary_request_is_served(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(GET)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def test_headers_past_the_bound_are_431_and_the_connection_closes(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000)
        status, body, head = status_and_body(read_all(sock))  # closed without the rest of the header
    assert status == 431 and b"connection: close" in head and b"request-id: req_" in head
    assert body["type"] == "error"
    assert body["error"] == {
        "type": "request_header_fields_too_large",
        "message": "The request line and headers exceed 4096 bytes.",
    }


def test_a_head_that_does_not_arrive_in_time_is_408(port: int) -> None:
    with connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        status, body, _ = status_and_body(read_all(sock))
        waited = time.monotonic() - started
    assert status == 408 and 0.8 < waited < 5
    assert body["error"]["type"] == "timeout_error"  # type: ignore[index]
    with connect(port) as silent:  # a connection that sends nothing is simply closed
        started = time.monotonic()
        assert read_all(silent) == b""
        assert 0.8 < time.monotonic() - started < 5


def test_a_slow_sender_is_cut_off_even_while_bytes_trickle_in(port: int) -> None:
    with connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        try:
            for _ in range(20):
                sock.sendall(b"X-A: b\r\n")
                time.sleep(0.1)
        except OSError:
            pass  # closed under us: what we want
        reply = read_all(sock)
    assert reply.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 5


def _post_head(length: int) -> bytes:
    return (
        f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY[0]}\r\nanthropic-version: 2023-06-01\r\n"
        f"content-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    ).encode()


def test_a_stalled_body_is_408_and_the_connection_closes(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(_post_head(1000) + b'{"model": ')  # and nothing more
        started = time.monotonic()
        status, body, head = status_and_body(read_all(sock))
        waited = time.monotonic() - started
    assert status == 408 and b"connection: close" in head and 0.8 < waited < 5
    assert body["error"] == {
        "type": "timeout_error",
        "message": "No byte of the request body arrived for 1 second.",
    }


def test_a_body_trickled_byte_by_byte_is_cut_off(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(_post_head(1000))
        started = time.monotonic()
        try:
            for _ in range(40):  # 10 bytes a second: never idle for 1 s, far below 1,000 bytes a second
                sock.sendall(b" ")
                time.sleep(0.1)
        except OSError:
            pass  # closed under us: what we want
        status, body, _ = status_and_body(read_all(sock))
    assert status == 408 and time.monotonic() - started < 3.5
    assert body["error"]["type"] == "timeout_error"  # type: ignore[index]
    assert "slower than 1000 bytes per second" in body["error"]["message"]  # type: ignore[index]


def test_a_body_arriving_at_a_fair_rate_is_served_past_the_timeout(port: int) -> None:
    padding = "x" * 20_000
    payload = json.dumps(
        {"model": SCRIPTED_MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": padding}]}
    ).encode()
    with connect(port) as sock:
        sock.sendall(_post_head(len(payload)))
        started = time.monotonic()
        for offset in range(0, len(payload), 2000):  # ~10 KB a second for 2 s: twice the idle bound
            sock.sendall(payload[offset : offset + 2000])
            time.sleep(0.2)
        assert time.monotonic() - started > 1.5
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]


@pytest.mark.parametrize(
    "request_line", [b"GARBAGE\r\n\r\n", b"GET / HTTP/9\r\n\r\n", b"GET /\x00 HTTP/1.1\r\n\r\n"]
)
def test_what_http_cannot_parse_is_400_with_the_error_envelope(port: int, request_line: bytes) -> None:
    with connect(port) as sock:
        sock.sendall(request_line)
        status, body, head = status_and_body(read_all(sock))
    assert status == 400 and b"content-type: application/json" in head and b"connection: close" in head
    assert body["type"] == "error" and str(body["request_id"]).startswith("req_")
    assert body["error"] == {
        "type": "invalid_request_error",
        "message": "The request is not valid HTTP/1.1: its request line or a header is malformed.",
    }


BAD = b"GARBAGE\r\n\r\n"


def _replies(data: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each response in ``data``, in order (all have a content-length)."""
    replies = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        replies.append((int(head.split(b" ")[1]), rest[:length]))
        data = rest[length:]
    return replies


def test_a_malformed_request_on_a_kept_alive_connection_is_400(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(GET)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.sendall(BAD)
        status, body, _head = status_and_body(read_all(sock))
    assert status == 400 and body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


def test_requests_pipelined_before_a_malformed_one_are_answered_first(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(GET + GET + BAD + GET)  # one write: the parser reads all of it at once
        replies = _replies(read_all(sock))
    assert [status for status, _ in replies] == [200, 200, 400]
    assert json.loads(replies[2][1])["error"]["type"] == "invalid_request_error"
    payload = json.dumps(
        {"model": SCRIPTED_MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "pipelined"}]}
    ).encode()
    with connect(port) as sock:  # a request with a body, answered by the app, then the bad bytes
        sock.sendall(_post_head(len(payload)) + payload + BAD)
        replies = _replies(read_all(sock))
    assert [status for status, _ in replies] == [200, 400]
    assert json.loads(replies[0][1])["content"][0]["text"] == "pipelined"


def test_an_idle_kept_alive_connection_is_closed(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(GET)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert read_all(sock) == b""
        assert time.monotonic() - started < 3


def test_connections_past_the_bound_are_529_with_retry_after(port: int) -> None:
    time.sleep(1.5)  # earlier tests' connections are gone
    held = [connect(port) for _ in range(LIMITS.max_connections)]
    try:
        time.sleep(0.2)
        with connect(port) as extra:
            status, body, head = status_and_body(read_all(extra))
        assert status == 529 and b"retry-after: 1" in head
        assert body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    with connect(port) as sock:  # room again
        sock.sendall(GET)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
