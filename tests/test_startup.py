"""``wisegate serve`` refuses a configuration that cannot work: one line on stderr, exit status 2."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.processes import scripted_env


def _serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wisegate", "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = scripted_env(tmp_path, backends={"scripted": {"type": "scripted"}})
        line = _one_line(_serve(env, "--port", str(port)))
    assert line == (
        f"wisegate: port {port} on 127.0.0.1 is already in use (another server is running there?); "
        "stop it or choose another with --port / WISEGATE_PORT"
    )


def test_a_missing_model_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = scripted_env(tmp_path)
    missing = tmp_path / "nowhere" / "model.gguf"
    env["WISEGATE_BACKENDS"] = json.dumps(
        {"local": {"type": "local", "options": {"model_path": str(missing)}}}
    )
    env["WISEGATE_MODELS"] = json.dumps([{"id": "m", "backend": "local"}])
    line = _one_line(_serve(env, "--port", "0"))
    assert line == (
        f"wisegate: backend 'local': the model file {missing} does not exist "
        "(set [backends.NAME.options] model_path to a GGUF file)"
    )
    assert not (tmp_path / "wisegate.db").exists()  # refused before anything was started or written


def test_several_workers_without_redis_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = scripted_env(tmp_path, backends={"scripted": {"type": "scripted"}})
    expected = (
        "wisegate: --workers 2 needs the rate-limit buckets in Redis: set WISEGATE_REDIS_URL "
        "(otherwise each worker would enforce every limit on its own), or serve one worker"
    )
    assert _one_line(_serve(env, "--port", "0", "--workers", "2")) == expected
    assert _one_line(_serve({**env, "WISEGATE_WORKERS": "2"}, "--port", "0")) == expected
    assert not (tmp_path / "wisegate.db").exists()


@pytest.mark.parametrize(
    ("setting", "value", "line"),
    [
        ("workers", "0", "WISEGATE_WORKERS: Input should be greater than or equal to 1"),
        (
            "thread_retention_seconds",
            "0",
            "WISEGATE_THREAD_RETENTION_SECONDS: Input should be greater than or equal to 60",
        ),
        ("models", "[{", "WISEGATE_MODELS: not a valid JSON value (Expecting property name enclosed in"),
    ],
    ids=["workers", "thread_retention", "json"],
)
def test_an_invalid_setting_is_one_line_and_exit_2(
    tmp_path: Path, setting: str, value: str, line: str
) -> None:
    env = scripted_env(tmp_path, backends={"scripted": {"type": "scripted"}}, **{setting: value})
    assert _one_line(_serve(env, "--port", "0")).startswith(f"wisegate: invalid setting {line}")
    assert not (tmp_path / "wisegate.db").exists()


@pytest.mark.parametrize("command", [["migrate"], ["worker"], ["keys", "list"], ["backends", "list"]])
def test_every_command_refuses_an_invalid_setting_in_one_line(tmp_path: Path, command: list[str]) -> None:
    env = scripted_env(tmp_path, backends="{", thread_retention_seconds="0")
    result = subprocess.run(
        [sys.executable, "-m", "wisegate", *command], env=env, capture_output=True, text=True, timeout=120
    )
    assert _one_line(result).startswith("wisegate: invalid setting WISEGATE_BACKENDS: not a valid JSON value")


def test_redis_out_of_reach_is_one_line_and_exit_2(tmp_path: Path) -> None:
    closed = free_port()
    env = scripted_env(
        tmp_path,
        backends={"scripted": {"type": "scripted"}},
        redis_url=f"redis://:s3cret@127.0.0.1:{closed}/0",
    )
    line = _one_line(_serve(env, "--port", "0"))
    assert line.startswith(f"wisegate: cannot reach Redis at redis://:***@127.0.0.1:{closed}/0: ")
    assert line.endswith("(check WISEGATE_REDIS_URL)") and "s3cret" not in line
    assert not (tmp_path / "wisegate.db").exists()


def test_a_database_that_does_not_answer_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = scripted_env(tmp_path, backends={"scripted": {"type": "scripted"}})
    env["WISEGATE_DATABASE_URL"] = f"postgresql+asyncpg://wisegate:s3cret@127.0.0.1:{port}/wisegate"
    line = _one_line(_serve(env, "--port", "0"))
    shown = f"postgresql+asyncpg://wisegate:***@127.0.0.1:{port}/wisegate"
    assert line.startswith(f"wisegate: cannot connect to the database at {shown} (")
    assert line.endswith("); start it or fix WISEGATE_DATABASE_URL")
    assert "s3cret" not in line
