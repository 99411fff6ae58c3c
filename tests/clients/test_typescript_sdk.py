"""The official TypeScript SDK (npm ``@anthropic-ai/sdk``) against a live server on the embedded model.

``sdk.test.mjs`` is a ``node:test`` script; it fails this test with its whole output when any of its
cases fails. The scripted cases (the tool runner, Message Batches, the Files API) share one scripted
server: its answers wait ``DELAY`` seconds and batches run one request at a time, so a batch can still be
canceled mid-way, and uploads are downloadable so ``beta.files.download`` has bytes to return.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.test_threads import tool_call
from tests.conftest import EMBEDDED_MODEL, SCRIPTED_MODEL, LiveServer, scripted_settings, serve
from wisegate.backends.scripted import ScriptedBackend

SCRIPT = Path(__file__).resolve().parent / "sdk.test.mjs"
DELAY = 0.3


@pytest.fixture(scope="module")
def scripted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = scripted_settings(
        tmp_path_factory.mktemp("typescript"), batch_concurrency=1, files_downloadable_uploads=True
    )
    yield from serve(settings, backends={"scripted": ScriptedBackend(options={"delay": DELAY})})


def test_typescript_sdk(node_clients: Path, embedded_server: LiveServer, scripted_server: LiveServer) -> None:
    scripted_server.backend.enqueue(events=tool_call("get_weather", {"city": "Rome"}))
    scripted_server.backend.enqueue(events=tool_call("get_time", {"timezone": "Europe/Rome"}))
    scripted_server.backend.enqueue("Sunny and noon in Rome")
    node = shutil.which("node")
    assert node, "Node.js is needed for the TypeScript SDK test"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "ANTHROPIC_BASE_URL": embedded_server.base_url,
        "ANTHROPIC_API_KEY": embedded_server.key,
        "WISEGATE_TEST_MODEL": EMBEDDED_MODEL,
        "WISEGATE_SCRIPTED_BASE_URL": scripted_server.base_url,
        "WISEGATE_SCRIPTED_KEY": scripted_server.key,
        "WISEGATE_SCRIPTED_MODEL": SCRIPTED_MODEL,
    }
    result = subprocess.run(
        [node, "--test", "--test-reporter=spec", str(SCRIPT)],
        cwd=SCRIPT.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"node --test failed:\n{result.stdout}\n{result.stderr}"
    assert "pass 14" in result.stdout, result.stdout
