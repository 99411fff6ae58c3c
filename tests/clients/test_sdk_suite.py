"""The official SDK's own ``tests/api_resources/`` against a live Wisegate: no field it defines is refused.

The sdist of the installed ``anthropic`` version is downloaded from PyPI once (cached under
``~/.cache/wisegate-tests``), and its generated tests — every endpoint called with every parameter
filled in — run in a subprocess against a scripted server that answers every ``claude-*`` model. The
SDK's own ``conftest.py`` needs its dev tooling (snapshot plugins, pytest-asyncio), so it is replaced by
one that keeps what the resource tests use: the ``client`` fixture, with real keys, and a response hook
that logs every answer. The synchronous tests run with the strict client (their async and loose-client
twins send the same bodies), except those that mock the server with respx. This test then fails on any
400 that refuses a field the SDK sends (``Extra inputs are not permitted``, ``Input should be …``,
``Field required``); the SDK's placeholder ids (``message_batch_id``, ``model_id``, …) answering 404 are
expected, and so are 400s that refuse a value on its meaning (a non-schema in a strict tool, both
``before_id`` and ``after_id``, an RBAC group). When the SDK pin moves, this is the test that names the
new fields.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import LiveServer, make_key, scripted_settings, serve
from wisegate.backends.scripted import ScriptedBackend
from wisegate.settings import ModelConfig

SUITES = (
    "test_messages.py",
    "messages",
    "beta/test_messages.py",
    "beta/messages",
    "test_models.py",
    "beta/test_models.py",
    "test_files.py",
    "beta/test_files.py",
    "test_skills.py",
    "skills",
    "beta/test_skills.py",
    "beta/skills",
    "test_organization.py",
    "organization",
)
FIELD_REFUSALS = ("Extra inputs are not permitted", "Input should be", "Field required")

CONFTEST = '''
import inspect, json, os
import httpx2, pytest
from anthropic import Anthropic

_current = {"test": ""}


def pytest_configure(config):
    config.addinivalue_line("markers", "respx: a test that mocks the server (not run here)")


def pytest_collection_modifyitems(config, items):
    """Run the synchronous tests that reach a server, with the strict client; async twins, loose-client
    twins (the same request bodies) and respx-mocked tests are left out."""
    keep = [i for i in items if not inspect.iscoroutinefunction(getattr(i, "function", None))
            and "respx_mock" not in getattr(i, "fixturenames", ()) and "[loose]" not in i.nodeid]
    config.hook.pytest_deselected(items=[i for i in items if i not in keep])
    items[:] = keep


@pytest.fixture(autouse=True)
def _name(request):
    _current["test"] = request.node.nodeid
    yield


def _log(response):
    entry = {"test": _current["test"], "method": response.request.method,
             "path": response.request.url.path, "status": response.status_code}
    if response.status_code >= 400:
        response.read()
        entry["body"] = response.text[:2000]
    with open(os.environ["SDK_SUITE_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\\n")


_clients = {}


@pytest.fixture
def client(request):
    strict = getattr(request, "param", True)
    admin = "/organization" in request.node.nodeid
    if (strict, admin) not in _clients:  # one per kind: building an HTTP client costs a TLS context
        key = os.environ["SDK_SUITE_ADMIN_KEY" if admin else "SDK_SUITE_KEY"]
        http = httpx2.Client(event_hooks={"response": [_log]}, timeout=60)
        _clients[strict, admin] = Anthropic(
            base_url=os.environ["TEST_API_BASE_URL"], api_key=key, max_retries=0,
            _strict_response_validation=strict, http_client=http)
    return _clients[strict, admin]
'''


def _sdist(release: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wisegate-tests"
    archive = cache / f"anthropic-{release}.tar.gz"
    if not archive.exists():
        cache.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        command += ["--disable-pip-version-check", "-q", "-d", str(cache), f"anthropic=={release}"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode != 0 or not archive.exists():
            pytest.fail(
                f"could not download the anthropic {release} sdist from PyPI:\n{result.stderr[-2000:]}"
            )
    return archive


def _unpack_tests(archive: Path, into: Path) -> Path:
    """The sdist's ``tests/`` (its utilities and api_resources), with our conftest in place of its own."""
    top = archive.name.removesuffix(".tar.gz") + "/tests/"
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(top) and m.isfile()]
        keep = [m for m in members if m.name.endswith("/utils.py") or "/api_resources/" in m.name]
        keep += [m for m in members if m.name.endswith("__init__.py")]
        tar.extractall(into, members=keep, filter="data")
    tests = into / top
    (tests / "conftest.py").write_text(CONFTEST)
    # Tests that mock the server import respx at module level; they are deselected, so a name suffices.
    (tests.parent / "respx.py").write_text("class MockRouter:\n    pass\n")
    return tests


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = scripted_settings(tmp_path_factory.mktemp("sdk-suite"))
    settings.models = [
        ModelConfig(id="scripted-1", backend="scripted", aliases=["claude-*"], max_output_tokens=8192)
    ]
    yield from serve(settings, backends={"scripted": ScriptedBackend()})


def test_the_sdk_suite_meets_no_field_refusal(server: LiveServer, tmp_path: Path) -> None:
    tests = _unpack_tests(_sdist(version("anthropic")), tmp_path)
    log = tmp_path / "responses.jsonl"
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {
        **os.environ,
        "TEST_API_BASE_URL": server.base_url,
        "SDK_SUITE_KEY": server.key,
        "SDK_SUITE_ADMIN_KEY": make_key(server.settings, admin=True),
        "SDK_SUITE_LOG": str(log),
        "PYTHONPATH": str(tests.parent),
    }
    paths = [str(tests / "api_resources" / suite) for suite in SUITES]
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(tmp_path / "pytest.ini"),
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    command += ["--tb=no", "-o", "addopts=", *paths]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    summary = run.stdout.strip().splitlines()[-1:] if run.stdout.strip() else []
    assert log.exists(), f"the SDK suite sent no request:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(entries) > 200, summary
    paths_seen = {e["path"] for e in entries}
    assert {"/v1/messages", "/v1/messages/count_tokens", "/v1/messages/batches", "/v1/models"} <= paths_seen
    refusals = [
        f"{e['test']}: {e['method']} {e['path']} -> {e['body']}"
        for e in entries
        if e["status"] == 400 and any(phrase in e.get("body", "") for phrase in FIELD_REFUSALS)
    ]
    assert not refusals, "\n".join(refusals)
    messages = [e for e in entries if e["path"] == "/v1/messages" and e["method"] == "POST"]
    assert any(e["status"] == 200 for e in messages), summary
