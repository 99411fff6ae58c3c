"""The README's promise: ``wisegate serve`` migrates, prints a first key and serves the SDK example."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.conftest import free_port

WISEGATE = [sys.executable, "-m", "wisegate"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "WISEGATE_DATA_DIR": str(tmp_path / "data"), "WISEGATE_PORT": str(free_port())}


@pytest.fixture
def served(env: dict[str, str]) -> Iterator[tuple[str, str, str]]:
    proc = subprocess.Popen(
        WISEGATE + ["serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"(sk-wg-api01-\S+)", first)
        assert match, first + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        admin = re.search(r"(sk-wg-admin01-\S+)", proc.stdout.readline())
        assert admin
        assert f"http://127.0.0.1:{env['WISEGATE_PORT']}/console" in proc.stdout.readline()
        url = f"http://127.0.0.1:{env['WISEGATE_PORT']}"
        deadline = time.monotonic() + 60
        while True:
            try:
                anthropic.Anthropic(base_url=url, api_key="x", max_retries=0).models.list()
            except anthropic.AuthenticationError:
                break
            except anthropic.APIConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
                time.sleep(0.2)
        yield url, match.group(1), admin.group(1)
    finally:
        proc.terminate()
        proc.wait(20)


def test_readme_example(served: tuple[str, str, str]) -> None:
    url, key, admin = served
    c = anthropic.Anthropic(base_url=url, api_key=key)
    message = c.messages.create(
        model="smollm2-135m-instruct", max_tokens=64, messages=[{"role": "user", "content": "Hello"}]
    )
    assert message.content[0].text
    with c.messages.stream(
        model="smollm2-135m-instruct", max_tokens=64, messages=[{"role": "user", "content": "Hello"}]
    ) as s:
        text = "".join(s.text_stream)
    assert text
    # The admin key it printed opens the web console it names.
    with httpx.Client(base_url=url) as console:
        login = console.get("/console/login").text
        token = re.search(r'name="login_token" value="([^"]+)"', login)
        assert token
        opened = console.post("/console/login", data={"key": admin, "login_token": token.group(1)})
        assert opened.status_code == 303 and console.get("/console/keys").status_code == 200


def test_keys_commands(env: dict[str, str]) -> None:
    created = subprocess.run(
        WISEGATE + ["keys", "create", "--name", "ci"], env=env, capture_output=True, text=True, check=True
    ).stdout.split("\t")
    key_id, workspace_id, secret = created[0], created[1], created[2].strip()
    assert (
        key_id.startswith("apikey_")
        and workspace_id.startswith("wrkspc_")
        and secret.startswith("sk-wg-api01-")
    )
    listed = subprocess.run(
        WISEGATE + ["keys", "list"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert key_id in listed and secret not in listed and "active" in listed
    disabled = subprocess.run(
        WISEGATE + ["keys", "disable", key_id], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert disabled.strip() == f"{key_id}\tinactive"
    # A name no column can hold, or a workspace that does not exist: one line, no traceback.
    for args, why in (
        (["--name", "k" * 501], "name: must be at most 500 characters long"),
        (["--name", "ok", "--workspace", "wrkspc_nope"], "workspace wrkspc_nope not found"),
    ):
        refused = subprocess.run(
            WISEGATE + ["keys", "create", *args], env=env, capture_output=True, text=True
        )
        assert refused.returncode == 1 and why in refused.stderr and "Traceback" not in refused.stderr


def test_second_start_prints_no_new_key(env: dict[str, str]) -> None:
    subprocess.run(WISEGATE + ["keys", "create", "--name", "first"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen(WISEGATE + ["serve"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("Keys already exist")
    finally:
        proc.terminate()
        proc.wait(20)
