"""A thread created on one ``wisegate serve`` process continues on another, over PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import SCRIPTED_MODEL, make_key, postgres_database, settings_for
from tests.processes import ServerProcess, scripted_env
from wisegate.storage.db import migrate

pytestmark = pytest.mark.postgres


def _send(base_url: str, key: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/messages",
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        json={"model": SCRIPTED_MODEL, "max_tokens": 20, **body},
        timeout=30,
    )


def test_a_thread_continues_on_a_second_process(tmp_path: Path) -> None:
    with postgres_database() as url:
        settings = settings_for(tmp_path, database_url=url)
        migrate(url)
        key = make_key(settings)
        env = scripted_env(tmp_path, database_url=url, backends={"scripted": {"type": "scripted"}})
        first_server = ServerProcess(env, key, tmp_path / "first.log")
        try:
            created = _send(
                first_server.base_url,
                key,
                {"messages": [{"role": "user", "content": "one two three"}], "thread": {"type": "create"}},
            )
        finally:
            first_server.stop()  # what the second process finds is in the database, not in memory
        assert created.status_code == 200, created.text
        second_server = ServerProcess(env, key, tmp_path / "second.log")
        try:
            continued = _send(
                second_server.base_url,
                key,
                {
                    "messages": [{"role": "user", "content": "four"}],
                    "thread": {"type": "continue", "previous_message_id": created.json()["id"]},
                },
            )
        finally:
            second_server.stop()
    assert continued.status_code == 200, continued.text
    assert continued.json()["content"][0]["text"] == "four"
    # The scripted backend counts the words of every message it was given: 3 + 3 (the stored
    # question and answer) + 1.
    assert continued.json()["usage"]["input_tokens"] == 7
