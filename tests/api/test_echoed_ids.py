"""An id a client sends is echoed in an error message only up to a short prefix: a 100 KB container id,
file id or model name is not sent back (and logged) whole. One helper (``protocol.bounds.echo``) cuts
every echo; ids the server issues are short enough to be echoed whole."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.conftest import SCRIPTED_MODEL, LiveServer, make_key
from wisegate.protocol.bounds import ECHO_LENGTH

HUGE = "x" * 50_000  # the shared server takes bodies up to 64 KB; paths have no bound in it
USER = [{"role": "user", "content": "hi"}]


def _message(response: httpx.Response, status: int) -> str:
    """The error's message, which repeats at most ``ECHO_LENGTH`` characters of the id."""
    assert response.status_code == status, response.text[:500]
    body = response.json()
    message: str = body["error"]["message"]
    assert "x" * (ECHO_LENGTH + 1) not in message and len(message) < 400, message[:500]
    return message


def _send(
    live: LiveServer, method: str, path: str, body: Any = None, key: str | None = None
) -> httpx.Response:
    headers = {"x-api-key": key or live.key, "anthropic-beta": "skills-2025-10-02,files-api-2025-04-14"}
    return httpx.request(method, live.base_url + path, json=body, headers=headers, timeout=60)


def test_a_huge_container_id_is_cut_in_the_404(scripted_server: LiveServer) -> None:
    tools = [{"type": "code_execution_20250825", "name": "code_execution"}]
    body = {"model": SCRIPTED_MODEL, "max_tokens": 5, "messages": USER, "container": HUGE, "tools": tools}
    message = _message(_send(scripted_server, "POST", "/v1/messages", body), 404)
    assert message == f"container: Container not found: {'x' * ECHO_LENGTH}…"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", f"/v1/files/file_{HUGE}", None, 404),
        ("GET", f"/v1/messages/batches/msgbatch_{HUGE}", None, 404),
        ("GET", f"/v1/skills/skill_{HUGE}", None, 404),
        ("GET", f"/v1/models/{HUGE}", None, 404),
        ("GET", f"/v1/nothing/{HUGE}", None, 404),
        ("GET", f"/v1/files?after_id=file_{HUGE[:1000]}", None, 400),
        ("POST", "/v1/messages", {"model": HUGE[:250], "max_tokens": 5, "messages": USER}, 404),
        (
            "POST",
            "/v1/messages",
            {
                "model": SCRIPTED_MODEL,
                "max_tokens": 5,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "document", "source": {"type": "file", "file_id": HUGE}}],
                    }
                ],
            },
            404,
        ),
    ],
    ids=["file", "batch", "skill", "model", "route", "after_id", "model in body", "file_id in body"],
)
def test_every_echoed_id_is_cut(
    scripted_server: LiveServer, method: str, path: str, body: Any, status: int
) -> None:
    message = _message(_send(scripted_server, method, path, body), status)
    assert re.search(r"x{40,}…", message), message  # echoed, and cut


def test_admin_ids_are_cut(scripted_server: LiveServer) -> None:
    admin = make_key(scripted_server.settings, admin=True)
    for path in (f"/v1/organizations/workspaces/{HUGE}", f"/v1/organizations/api_keys/{HUGE}"):
        message = _message(_send(scripted_server, "GET", path, key=admin), 404)
        assert re.search(r"x{40,}…", message), message


def test_ids_the_server_issues_are_echoed_whole(scripted_server: LiveServer) -> None:
    issued = "file_011CXw8h8A796q3f74EzmhavAAAA"
    assert _message(_send(scripted_server, "GET", f"/v1/files/{issued}"), 404) == f"File not found: {issued}"
