"""``wisegate serve``'s HTTP server bounds each connection: header size (431), time for the request
head (408), idle keep-alive, and the number of connections (529), over raw sockets."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, scripted_settings
from wisegate.app import create_app
from wisegate.backends.scripted import ScriptedBackend
from wisegate.cli.connections import ConnectionLimits
from wisegate.cli.server import _Server, server_config
from wisegate.storage.db import migrate

LIMITS = ConnectionLimits(
    max_header_bytes=4096, header_timeout_seconds=1.0, keep_alive_seconds=0.5, max_connections=3
)
GET = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    settings = scripted_settings(Path(tmp_path_factory.mktemp("connections")))
    migrate(settings.resolved_database_url)
    app = create_app(settings, backends={"scripted": ScriptedBackend()})
    number = free_port()
    server = _Server(server_config(app, "127.0.0.1", number, LIMITS), None, 30, 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield number
    server.should_exit = True
    thread.join(30)


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
