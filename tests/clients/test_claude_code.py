"""Claude Code (npm ``@anthropic-ai/claude-code``) against a live server on the embedded model.

The server is configured the way the README's recipe says: every ``claude-*`` id is an alias of the
embedded model, ``max_tokens`` above its output limit is clamped, and sampling is greedy. Claude Code
runs offline in a temporary HOME with its non-essential traffic, telemetry and updater turned off.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EMBEDDED_MODEL, LiveServer, serve, settings_for
from wisegate.settings import BackendConfig, ModelConfig

TIMEOUT = 900


@pytest.fixture(scope="module")
def claude_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = settings_for(
        tmp_path_factory.mktemp("claude-code"),
        backends={"local": BackendConfig(type="local", options={"temperature": 0})},
        models=[
            ModelConfig(
                id=EMBEDDED_MODEL,
                backend="local",
                aliases=["claude-*"],
                max_input_tokens=8192,
                max_output_tokens=2048,
                clamp_max_tokens=True,
            )
        ],
    )
    yield from serve(settings)


def claude(
    node_clients: Path, server: LiveServer, home: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    work = home / "work"
    work.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": server.base_url,
        "ANTHROPIC_AUTH_TOKEN": server.key,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    return subprocess.run(
        [str(node_clients / ".bin" / "claude"), "-p", *args],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def _usage_models(server: LiveServer) -> list[tuple[str, str | None, str | None]]:
    """(model, stop_reason, error_type) of every usage record, oldest first."""
    records = server.run(server.services.usage.recent(limit=1000))
    return [(r.model, r.stop_reason, r.error_type) for r in reversed(records)]


def test_claude_code_prints_the_models_reply(
    node_clients: Path, claude_server: LiveServer, tmp_path: Path
) -> None:
    before = len(_usage_models(claude_server))
    result = claude(
        node_clients,
        claude_server,
        tmp_path,
        "say hi",
        "--system-prompt",
        "You are a helpful assistant. Answer in one short sentence.",
        "--tools",
        "",
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.stdout.strip(), result.stderr
    records = _usage_models(claude_server)[before:]
    # Claude Code's default model (a claude-* id) was answered by the embedded model and recorded.
    assert records and all(model == EMBEDDED_MODEL for model, _, _ in records)
    assert records[-1][1] == "end_turn", records


def test_claude_code_default_prompt_is_too_long_for_the_small_model(
    node_clients: Path, claude_server: LiveServer, tmp_path: Path
) -> None:
    before = len(_usage_models(claude_server))
    result = claude(node_clients, claude_server, tmp_path, "say hi")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Prompt is too long" in output, output
    records = _usage_models(claude_server)[before:]
    assert records and records[-1][2] == "invalid_request_error", records
