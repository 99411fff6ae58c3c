"""Shared pieces of the Admin API tests: a server with two scripted models, admin clients, usage rows."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx

from tests.conftest import LiveServer, serve, settings_for
from wisegate.backends.scripted import ScriptedBackend
from wisegate.domain.keys import KeyService
from wisegate.records.usage import UsageRecord
from wisegate.settings import BackendConfig, ModelConfig
from wisegate.storage.db import Database
from wisegate.storage.repos import TenancyRepo, UsageRepo

MODELS = ["scripted-1", "scripted-2"]


@dataclass
class AdminServer:
    live: LiveServer
    admin_key: str

    @property
    def base_url(self) -> str:
        return self.live.base_url

    @property
    def organization_id(self) -> str:
        org = self.live.services.organization_id
        assert org is not None
        return org

    def admin(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.base_url, api_key=self.admin_key, max_retries=0)

    def client(self, key: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.base_url, api_key=key, max_retries=0)

    def get(self, path: str, key: str | None = None, **params: Any) -> httpx.Response:
        return httpx.get(self.base_url + path, params=params, headers={"x-api-key": key or self.admin_key})

    def post(self, path: str, body: Any, key: str | None = None) -> httpx.Response:
        return httpx.post(self.base_url + path, json=body, headers={"x-api-key": key or self.admin_key})

    def delete(self, path: str, key: str | None = None) -> httpx.Response:
        return httpx.delete(self.base_url + path, headers={"x-api-key": key or self.admin_key})

    def new_key(self, workspace_id: str, name: str = "k") -> tuple[str, str]:
        """(key id, secret) of a fresh API key in ``workspace_id``."""

        async def run() -> tuple[str, str]:
            db = Database(self.live.settings.resolved_database_url)
            try:
                key, secret = await KeyService(TenancyRepo(db)).create_key(workspace_id, name)
                return key.id, secret
            finally:
                await db.close()

        return asyncio.run(run())

    def record(
        self,
        when: datetime,
        *,
        workspace_id: str,
        api_key_id: str,
        model: str = "claude-sonnet-4-5",
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_write: int = 0,
        cache_read: int = 0,
        service_tier: str = "standard",
    ) -> None:
        """Write one usage record at ``when`` through the server's own usage service."""
        record = UsageRecord(
            request_id=f"req_test_{when.timestamp()}_{api_key_id}_{model}_{service_tier}_{input_tokens}",
            organization_id=self.organization_id,
            workspace_id=workspace_id,
            api_key_id=api_key_id,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_creation_input_tokens=cache_write,
            cache_read_input_tokens=cache_read,
            service_tier=service_tier,
            stop_reason="end_turn",
            error_type=None,
            streamed=False,
            latency_ms=1,
            created_at=when,
        )
        self.live.run(UsageRepo(self.live.services.db).add(record))


def admin_server(data_dir: Path, **overrides: Any) -> Iterator[AdminServer]:
    """A live server with two scripted models and an admin key; ``overrides``: more settings."""
    from tests.conftest import make_key

    settings = settings_for(
        data_dir,
        key_cache_seconds=0,
        backends={"scripted": BackendConfig(type="scripted")},
        models=[
            ModelConfig(
                id="scripted-1", backend="scripted", aliases=["scripted-latest"], max_output_tokens=4096
            ),
            ModelConfig(
                id="scripted-2", backend="scripted", display_name="Scripted Two", max_output_tokens=4096
            ),
        ],
        **overrides,
    )
    for live in serve(settings, backends={"scripted": ScriptedBackend()}):
        yield AdminServer(live, make_key(settings, admin=True))
