"""Several server processes sharing one ``PROMETHEUS_MULTIPROC_DIR`` report as one server: any
process's ``/metrics`` sums the counters of all of them (``prometheus_client``'s multi-process mode)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.api.test_health import samples, value
from tests.conftest import SCRIPTED_MODEL, make_key, settings_for
from tests.processes import ServerProcess, scripted_env
from wisegate.storage.db import migrate


def test_two_processes_read_as_one_server(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    migrate(settings.resolved_database_url)
    key = make_key(settings)
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = scripted_env(tmp_path, backends={"scripted": {"type": "scripted"}})
    env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    body = {"model": SCRIPTED_MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "a b"}]}
    servers = [ServerProcess(env, key, tmp_path / f"server{i}.log") for i in range(2)]
    try:
        for server, n in zip(servers, (3, 2), strict=True):
            for _ in range(n):
                response = httpx.post(server.base_url + "/v1/messages", json=body, headers={"x-api-key": key})
                assert response.status_code == 200
        seen = [samples(server.base_url) for server in servers]
    finally:
        for server in servers:
            server.stop()
    labels = {"route": "/v1/messages", "status": "200", "model": SCRIPTED_MODEL}
    assert [value(s, "wisegate_requests_total", **labels) for s in seen] == [5, 5]
    output = [
        v
        for (name, lbl), v in seen[0].items()
        if name == "wisegate_tokens_total" and ("kind", "output") in lbl
    ]
    assert sum(output) == 10
    assert len(list(directory.glob("counter_*.db"))) == 2  # one file per process
