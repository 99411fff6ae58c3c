"""Fixtures: settings in a temporary data dir, and real servers on free ports (uvicorn in a thread).

``embedded_server`` runs the real embedded model (loaded once per session); ``scripted_server`` runs the
deterministic scripted backend for fast protocol and error tests. Both are driven through the official
``anthropic`` SDK or raw HTTP.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import pytest
import uvicorn

from wisegate.app import create_app
from wisegate.backends.scripted import ScriptedBackend
from wisegate.domain.keys import KeyService
from wisegate.services import Services
from wisegate.settings import BackendConfig, ModelConfig, Settings
from wisegate.storage.db import Database, migrate
from wisegate.storage.repos import TenancyRepo

EMBEDDED_MODEL = "smollm2-135m-instruct"
SCRIPTED_MODEL = "scripted-1"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("WISEGATE_") or name.startswith("ANTHROPIC_"):
            monkeypatch.delenv(name)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on 127.0.0.1:5432 (trust auth) for one test; dropped after."""
    name = f"wisegate_test_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_admin(statement: str) -> None:
    async def run() -> None:
        import asyncpg

        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=data_dir, log_format="text", **overrides)


def scripted_settings(data_dir: Path, **overrides: Any) -> Settings:
    return settings_for(
        data_dir,
        backends={"scripted": BackendConfig(type="scripted")},
        models=[
            ModelConfig(
                id=SCRIPTED_MODEL, backend="scripted", aliases=["scripted-latest"], max_output_tokens=4096
            )
        ],
        **overrides,
    )


def make_key(settings: Settings, *, workspace: str | None = None, admin: bool = False) -> str:
    """A fresh key in the default (or given) workspace of the settings' database."""

    async def run() -> str:
        db = Database(settings.resolved_database_url)
        try:
            keys = KeyService(TenancyRepo(db))
            org = await keys.bootstrap()
            workspace_id = workspace or (await keys.default_workspace(org.id)).id
            _, secret = await keys.create_key(workspace_id, "test", admin=admin)
            return secret
        finally:
            await db.close()

    return asyncio.run(run())


@dataclass
class LiveServer:
    base_url: str
    key: str
    settings: Settings
    services: Services
    backend: Any

    def client(self, **kwargs: Any) -> anthropic.Anthropic:
        """A client kept until the server stops. The SDK's HTTP client closes its connections when the
        garbage collector frees it, and ``server.client().messages.batches.results(...)`` iterates a
        response that does not keep its client alive: collected mid-read, the socket was closed under
        the reader (``EBADF``, the flaky test_worker_drain failure)."""
        kwargs.setdefault("api_key", self.key)
        kwargs.setdefault("max_retries", 0)
        client = anthropic.Anthropic(base_url=self.base_url, **kwargs)
        self._clients.append(client)
        return client

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the server's own event loop (for reading its database)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    _loop: Any = None
    _clients: list[anthropic.Anthropic] = field(default_factory=list)


def serve(
    settings: Settings,
    backends: dict[str, Any] | None = None,
    clock: Any = None,
    *,
    keep_containers: bool = False,
) -> Iterator[LiveServer]:
    """A live server on a free port; its containers' disks are unmounted after unless ``keep_containers``
    (for a test that restarts the server over the same data dir)."""
    migrate(settings.resolved_database_url)
    key = make_key(settings)
    app = create_app(settings, backends=backends, clock=clock)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    loop_box: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        loop_box["loop"] = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.serve())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 180  # the embedded model loads in its runner first
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    services = app.state.services
    backend = next(iter(services.registry.backends.values()))
    live = LiveServer(f"http://127.0.0.1:{port}", key, settings, services, backend)
    live._loop = loop_box["loop"]
    try:
        yield live
    finally:
        for client in live._clients:
            client.close()
        server.should_exit = True
        thread.join(30)
        if not keep_containers:
            unmount_containers(settings.data_dir)


def unmount_containers(data_dir: Path) -> None:
    """Unmount the container disks (tmpfs) a test server mounted under its data dir."""
    from wisegate.domain.code_execution import disks

    root = str(data_dir.resolve())
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point.startswith(root + "/"):
            disks.unmount(Path(point))


@pytest.fixture(scope="session")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = settings_for(tmp_path_factory.mktemp("embedded"))
    yield from serve(settings)


@pytest.fixture(scope="session")
def scripted_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = scripted_settings(tmp_path_factory.mktemp("scripted"), max_messages_request_bytes=64 * 1024)
    yield from serve(settings, backends={"scripted": ScriptedBackend()})
