"""The code samples in docs/ run: every ``python`` block and every ``curl`` command, against a live
server on a free port.

The server answers the embedded model's id (``smollm2-135m-instruct``, the one the samples use) with
the scripted backend: the samples show the API, and what the model says is not the point. A sample
sees what the page around it defines: ``KEY`` (an API key), ``ADMIN_KEY``, ``key_id`` (a key it may
disable), ``c`` (an ``anthropic`` client) and ``anthropic``; ``http://127.0.0.1:8080`` becomes the
test server's address.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.conftest import LiveServer, make_key, serve, settings_for
from wisegate.backends.scripted import ScriptedBackend
from wisegate.settings import BackendConfig, ModelConfig

DOCS = Path(__file__).resolve().parent.parent / "docs"
DOCUMENTED_URL = "http://127.0.0.1:8080"
MODEL = "smollm2-135m-instruct"


def _blocks(kind: str) -> list[tuple[str, str]]:
    """``(page:line, code)`` of each python block (``kind="python"``) or each curl command (``"curl"``)."""
    found = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        for match in re.finditer(r"```(\w*)\n(.*?)```", text, re.DOTALL):
            lang, code = match.groups()
            line = text[: match.start()].count("\n") + 1
            if kind == "python" and lang == "python":
                found.append((f"{page.name}:{line}", code))
            elif kind == "curl" and lang in ("sh", "bash") and code.lstrip().startswith("curl "):
                found.append((f"{page.name}:{line}", code))
    return found


PYTHON = _blocks("python")
CURL = _blocks("curl")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = settings_for(
        tmp_path_factory.mktemp("docs"),
        backends={"scripted": BackendConfig(type="scripted")},
        models=[ModelConfig(id=MODEL, backend="scripted", max_output_tokens=4096)],
    )
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


def test_the_docs_have_samples_to_run() -> None:
    assert len(PYTHON) >= 4 and len(CURL) >= 1


@pytest.mark.parametrize(("where", "code"), PYTHON, ids=[where for where, _ in PYTHON])
def test_python_sample_runs(live: LiveServer, where: str, code: str) -> None:
    async def spare_key() -> str:
        keys = live.services.keys
        workspace = await keys.default_workspace((await keys.bootstrap()).id)
        key, _ = await keys.create_key(workspace.id, "docs sample")
        return key.id

    namespace: dict[str, Any] = {
        "anthropic": anthropic,
        "KEY": make_key(live.settings),
        "ADMIN_KEY": make_key(live.settings, admin=True),
        "key_id": live.run(spare_key()),
        "c": live.client(),
    }
    with contextlib.redirect_stdout(io.StringIO()):  # an API error raises: the sample is wrong
        exec(compile(code.replace(DOCUMENTED_URL, live.base_url), where, "exec"), namespace)


@pytest.mark.parametrize(("where", "code"), CURL, ids=[where for where, _ in CURL])
def test_curl_sample_runs(live: LiveServer, where: str, code: str) -> None:
    command = code.replace(DOCUMENTED_URL, live.base_url).replace("curl ", "curl -sS --fail-with-body ", 1)
    result = subprocess.run(
        ["bash", "-c", command],
        env={**os.environ, "KEY": live.key},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{where}: {result.stderr}{result.stdout}"
    assert json.loads(result.stdout)["type"] == "message"
