"""On a shared backend (the embedded model) batch work waits while an interactive request is in flight."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SCRIPTED_MODEL, scripted_settings
from wisegate.backends.base import BackendItem, ModelRoute
from wisegate.backends.local import LocalBackend
from wisegate.backends.local.supervisor import with_runner_sockets
from wisegate.backends.scripted import ScriptedBackend
from wisegate.domain.keys import Principal
from wisegate.protocol.messages import MessagesRequest
from wisegate.services import Services, shared_backends
from wisegate.settings import BackendConfig, Settings
from wisegate.storage.db import migrate
from wisegate.workers.batches import BatchWorker


def _params(text: str) -> str:
    return json.dumps(
        {"model": SCRIPTED_MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": text}]}
    )


async def _principal(services: Services) -> Principal:
    org = await services.keys.bootstrap()
    workspace = await services.keys.default_workspace(org.id)
    key, _ = await services.keys.create_key(workspace.id, "k")
    return Principal(key)


def test_batch_yields_to_interactive_requests(tmp_path: Path) -> None:
    settings = scripted_settings(tmp_path)
    migrate(settings.resolved_database_url)
    backend = ScriptedBackend()

    async def scenario() -> None:
        services = Services.from_settings(settings, {"scripted": backend})
        try:
            principal = await _principal(services)
            call = await services.messages.call(
                principal,
                MessagesRequest.model_validate_json(_params("interactive")),
                "req_interactive",
                streamed=True,
            )
            interactive = await services.messages.open_stream(call)
            assert services.messages.interactive_in_flight["scripted"] == 1
            batch = await services.batches.create(principal, [(f"r{i}", _params(f"b{i}")) for i in range(3)])
            worker = BatchWorker(services.batches, services.messages, shared_backends={"scripted": 1})
            running = asyncio.create_task(worker.run())
            for _ in range(500):
                if worker.waiting_for_interactive:
                    break
                await asyncio.sleep(0.01)
            assert worker.waiting_for_interactive == 1
            assert len(backend.calls) == 1  # only the interactive request has reached the backend
            async for _event in interactive:
                pass
            assert services.messages.interactive_in_flight["scripted"] == 0
            for _ in range(1000):
                current = await services.batches.get(principal, batch.id)
                if current.processing_status == "ended":
                    break
                await asyncio.sleep(0.01)
            assert current.request_counts.succeeded == 3
            assert len(backend.calls) == 4
            worker.stop()
            await running
            record = await services.usage.for_request("req_interactive")
            assert record is not None and record.service_tier == "standard"
            batch_record = await services.usage.for_request(f"{batch.id}:0")
            assert batch_record is not None and batch_record.service_tier == "batch"
        finally:
            await services.db.close()

    asyncio.run(scenario())


class _Counting(ScriptedBackend):
    """Scripted answers that take a while, counting how many are being answered at once."""

    def __init__(self) -> None:
        super().__init__(options={"delay": 0.2})
        self.running = 0
        self.most = 0

    async def stream(
        self, request: MessagesRequest, route: ModelRoute, *, batch: bool = False
    ) -> AsyncGenerator[BackendItem]:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            async for item in super().stream(request, route, batch=batch):
                yield item
        finally:
            self.running -= 1


def test_batch_requests_share_the_model_up_to_its_slots(tmp_path: Path) -> None:
    """With nobody waiting, a shared backend's batch requests run together (the embedded model decodes
    them in one batch), as many at once as it was given, never more."""
    settings = scripted_settings(tmp_path)
    migrate(settings.resolved_database_url)
    backend = _Counting()

    async def scenario() -> None:
        services = Services.from_settings(settings, {"scripted": backend})
        try:
            principal = await _principal(services)
            batch = await services.batches.create(principal, [(f"r{i}", _params(f"b{i}")) for i in range(9)])
            worker = BatchWorker(services.batches, services.messages, shared_backends={"scripted": 3})
            running = asyncio.create_task(worker.run())
            for _ in range(1000):
                current = await services.batches.get(principal, batch.id)
                if current.processing_status == "ended":
                    break
                await asyncio.sleep(0.01)
            assert current.request_counts.succeeded == 9
            assert backend.most == 3, backend.most
            worker.stop()
            await running
        finally:
            await services.db.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("options", [{}, {"slots": 3}, {"runner": {"slots": 2}}])
def test_batch_work_may_take_all_the_embedded_models_slots_but_one(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    settings = Settings(
        data_dir=tmp_path, embedded_slots=5, backends={"local": BackendConfig(type="local", options=options)}
    )
    # The backend as the registry builds it, with the runner's settings (no model is loaded).
    backend = LocalBackend("local", with_runner_sockets(settings)["local"].options)
    assert shared_backends(settings) == {"local": backend.runner_config()["slots"] - 1}
