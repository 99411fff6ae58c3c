"""``wisegate batch submit | status | results`` as a user runs them, against a live server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.conftest import SCRIPTED_MODEL, LiveServer, scripted_settings, serve
from wisegate.backends.scripted import ScriptedBackend
from wisegate.cli import main

WISEGATE = [sys.executable, "-m", "wisegate"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from serve(
        scripted_settings(tmp_path_factory.mktemp("cli")), backends={"scripted": ScriptedBackend()}
    )


def _run(server: LiveServer, *args: str, base_url: str | None = None) -> Result:
    """``wisegate batch ARGS`` in this process (click's CliRunner: the command's code, output and exit
    code, without a new interpreter's start-up each time); an exception the command does not turn into
    a one-line error fails the test with its traceback (``catch_exceptions=False``)."""
    env = {"ANTHROPIC_BASE_URL": base_url or server.base_url, "ANTHROPIC_API_KEY": server.key}
    return CliRunner().invoke(main, ["batch", *args], env=env, catch_exceptions=False)


def test_submit_status_results(server: LiveServer, tmp_path: Path) -> None:
    source = tmp_path / "requests.jsonl"
    with source.open("w") as out:
        for i in range(30):
            params = {
                "model": SCRIPTED_MODEL,
                "max_tokens": 8,
                "messages": [{"role": "user", "content": f"n {i}"}],
            }
            out.write(json.dumps({"custom_id": f"line-{i}", "params": params}) + "\n")
        out.write("\n")
    # Once as a user runs it, in a process of its own; the rest in this one.
    env = {**os.environ, "ANTHROPIC_BASE_URL": server.base_url, "ANTHROPIC_API_KEY": server.key}
    submitted = subprocess.run(
        [*WISEGATE, "batch", "submit", str(source)], env=env, capture_output=True, text=True, timeout=120
    )
    assert submitted.returncode == 0, submitted.stderr
    batch_id, summary = submitted.stdout.splitlines()
    assert batch_id.startswith("msgbatch_")
    assert summary == f"{batch_id}\tended\t30 succeeded, 0 errored, 0 canceled, 0 expired"
    assert "Uploading" in submitted.stderr and "Processing" in submitted.stderr

    status = _run(server, "status", batch_id)
    assert status.exit_code == 0, status.stderr
    assert json.loads(status.stdout)["request_counts"]["succeeded"] == 30

    target = tmp_path / "out.jsonl"
    fetched = _run(server, "results", batch_id, "-o", str(target))
    assert fetched.exit_code == 0, fetched.stderr
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert sorted(line["custom_id"] for line in lines) == sorted(f"line-{i}" for i in range(30))
    texts = {line["custom_id"]: line["result"]["message"]["content"][0]["text"] for line in lines}
    assert texts["line-7"] == "n 7"


def test_errors_are_reported(server: LiveServer, tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text(json.dumps({"custom_id": "not ok!", "params": {"model": SCRIPTED_MODEL}}) + "\n")
    failed = _run(server, "submit", str(source))
    assert failed.exit_code != 0
    assert "400 invalid_request_error: requests.0 (custom_id 'not ok!'): custom_id" in failed.stderr
    # Invalid params do not refuse the batch: the request ends errored (its result says why).
    source.write_text(json.dumps({"custom_id": "a", "params": {"model": SCRIPTED_MODEL}}) + "\n")
    ran = _run(server, "submit", str(source))
    assert ran.exit_code == 0 and ran.stdout.strip().endswith("0 succeeded, 1 errored, 0 canceled, 0 expired")
    missing = _run(server, "status", "msgbatch_nope")
    assert missing.exit_code != 0 and "404 not_found_error" in missing.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    assert (
        "broken.jsonl:1: not valid JSON: Expecting property name"
        in _run(server, "submit", str(broken)).stderr
    )
    # Hostile lines and an unreachable server are one line each, never a traceback.
    for line, why in (
        ("[" * 100_000 + "]" * 100_000, "broken.jsonl:1: JSON nested deeper than 128 levels"),
        ('{"n": ' + "9" * 5000 + "}", "broken.jsonl:1: an integer of 5000 digits"),
        ("[1]", "broken.jsonl:1: not a JSON object"),
    ):
        broken.write_text(line + "\n")
        failed = _run(server, "submit", str(broken))
        assert failed.exit_code == 1 and why in failed.stderr and "Traceback" not in failed.stderr, (
            failed.stderr
        )
    for args in (["status", "msgbatch_x"], ["submit", str(source)]):
        down = _run(server, *args, base_url="http://127.0.0.1:9")
        assert down.exit_code == 1 and "Traceback" not in down.stderr, down.stderr
        assert "cannot reach the server at http://127.0.0.1:9" in down.stderr, down.stderr
