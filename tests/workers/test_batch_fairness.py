"""On a serial backend (the embedded model) batch work waits while an interactive request is in flight."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.conftest import SCRIPTED_MODEL, scripted_settings
from wisegate.backends.scripted import ScriptedBackend
from wisegate.domain.keys import Principal
from wisegate.protocol.messages import MessagesRequest
from wisegate.services import Services
from wisegate.storage.db import migrate
from wisegate.workers.batches import BatchWorker


def _params(text: str) -> str:
    return json.dumps(
        {"model": SCRIPTED_MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": text}]}
    )


def test_batch_yields_to_interactive_requests(tmp_path: Path) -> None:
    settings = scripted_settings(tmp_path)
    migrate(settings.resolved_database_url)
    backend = ScriptedBackend()

    async def scenario() -> None:
        services = Services.from_settings(settings, {"scripted": backend})
        try:
            org = await services.keys.bootstrap()
            workspace = await services.keys.default_workspace(org.id)
            key, _ = await services.keys.create_key(workspace.id, "k")
            principal = Principal(key)
            call = await services.messages.call(
                principal,
                MessagesRequest.model_validate_json(_params("interactive")),
                "req_interactive",
                streamed=True,
            )
            interactive = await services.messages.open_stream(call)
            assert services.messages.interactive_in_flight["scripted"] == 1
            batch = await services.batches.create(principal, [(f"r{i}", _params(f"b{i}")) for i in range(3)])
            worker = BatchWorker(services.batches, services.messages, serial_backends=["scripted"])
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
