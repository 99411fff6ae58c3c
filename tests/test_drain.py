"""SIGTERM drains ``wisegate serve`` (a real process, scripted backend with ``token_delay``): streams
in flight end with ``message_stop`` and are settled, the process exits 0; a second SIGTERM, or the
drain's deadline, cuts the rest off with ``event: error`` and still settles them."""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import time
from pathlib import Path

import anthropic
import httpx

from tests.conftest import SCRIPTED_MODEL, make_key, settings_for
from tests.processes import ServerProcess, scripted_env
from wisegate.storage.db import migrate

STREAMS = 20


def _server(tmp_path: Path, **extra: object) -> tuple[ServerProcess, str]:
    settings = settings_for(tmp_path)
    migrate(settings.resolved_database_url)
    key = make_key(settings)
    env = scripted_env(
        tmp_path,
        backends={"scripted": {"type": "scripted", "options": {"token_delay": 0.05}}},
        log_level="INFO",
        **extra,
    )
    return ServerProcess(env, key, tmp_path / "server.log"), key


async def open_streams(
    base_url: str, key: str, words: int, started: asyncio.Event
) -> list[tuple[str, list[str]]]:
    """``STREAMS`` streams at once; ``started`` is set when every one has its first text delta."""
    client = anthropic.AsyncAnthropic(base_url=base_url, api_key=key, max_retries=0)
    text = " ".join(f"w{i}" for i in range(words))
    begun = 0

    async def one() -> tuple[str, list[str]]:
        nonlocal begun
        kinds: list[str] = []
        async with client.messages.with_streaming_response.create(
            model=SCRIPTED_MODEL,
            max_tokens=words + 10,
            stream=True,
            messages=[{"role": "user", "content": text}],
        ) as response:
            async for line in response.iter_lines():
                if line.startswith("event: "):
                    kinds.append(line[7:])
                    if kinds.count("content_block_delta") == 1:
                        begun += 1
                        if begun == STREAMS:
                            started.set()
            return response.headers["request-id"], kinds

    try:
        return await asyncio.gather(*(one() for _ in range(STREAMS)))
    finally:
        await client.close()


def _rows(data_dir: Path) -> dict[str, tuple[str | None, str | None, int]]:
    with sqlite3.connect(data_dir / "wisegate.db") as db:
        rows = db.execute("SELECT request_id, stop_reason, error_type, output_tokens FROM usage_records")
        return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _refused(base_url: str) -> bool:
    port = int(base_url.rsplit(":", 1)[1])
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_sigterm_lets_20_streams_finish_settles_them_and_exits_0(tmp_path: Path) -> None:
    server, key = _server(tmp_path, drain_grace_seconds=2.0)

    async def run() -> tuple[list[tuple[str, list[str]]], int, bool]:
        started = asyncio.Event()
        # 120 words: ~6 s each
        streams = asyncio.create_task(
            open_streams(server.base_url, key, 120, started)
        )  # 120 words: ~6 s each
        await asyncio.wait_for(started.wait(), 60)
        server.proc.send_signal(signal.SIGTERM)
        async with httpx.AsyncClient(base_url=server.base_url) as probe:
            ready = (await probe.get("/ready")).status_code  # the grace: still listening, not ready
        await asyncio.sleep(3)
        refused = _refused(server.base_url)  # after the grace: no new connections
        assert server.proc.poll() is None  # while the streams still run
        return await streams, ready, refused

    try:
        results, ready, refused = asyncio.run(run())
        code = server.proc.wait(60)
    finally:
        server.stop()
    assert ready == 503
    assert refused
    assert [kinds[-1] for _, kinds in results] == ["message_stop"] * STREAMS
    assert all(kinds.count("content_block_delta") == 120 for _, kinds in results)
    assert code == 0, (tmp_path / "server.log").read_text()[-3000:]
    rows = _rows(tmp_path)
    assert {rid: rows.get(rid) for rid, _ in results} == {rid: ("end_turn", None, 120) for rid, _ in results}
    log = (tmp_path / "server.log").read_text()
    assert '"msg": "draining' in log and "Traceback" not in log


def test_a_second_sigterm_cuts_the_streams_off_with_an_error_event_and_settles_them(tmp_path: Path) -> None:
    server, key = _server(tmp_path, drain_grace_seconds=0.2, drain_seconds=60)

    async def run() -> tuple[list[tuple[str, list[str]]], float]:
        started = asyncio.Event()
        streams = asyncio.create_task(open_streams(server.base_url, key, 1000, started))  # ~50 s each
        await asyncio.wait_for(started.wait(), 60)
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.0)
        cut_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        results = await asyncio.wait_for(streams, 30)
        return results, time.monotonic() - cut_at

    try:
        results, seconds = asyncio.run(run())
        code = server.proc.wait(60)
    finally:
        server.stop()
    assert seconds < 10  # not the 50 s the streams would have taken
    assert [kinds[-1] for _, kinds in results] == ["error"] * STREAMS
    assert code == 0, (tmp_path / "server.log").read_text()[-3000:]
    rows = _rows(tmp_path)
    for request_id, kinds in results:
        stop_reason, error_type, output_tokens = rows[request_id]
        assert (stop_reason, error_type) == (None, "overloaded_error")
        assert output_tokens == kinds.count("content_block_delta")  # billed for what was sent


def test_the_drain_deadline_cuts_off_what_is_still_running(tmp_path: Path) -> None:
    server, key = _server(tmp_path, drain_grace_seconds=0.2, drain_seconds=2)

    async def run() -> list[tuple[str, list[str]]]:
        started = asyncio.Event()
        streams = asyncio.create_task(open_streams(server.base_url, key, 1000, started))
        await asyncio.wait_for(started.wait(), 60)
        server.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(streams, 30)

    try:
        results = asyncio.run(run())
        code = server.proc.wait(60)
    finally:
        server.stop()
    assert [kinds[-1] for _, kinds in results] == ["error"] * STREAMS
    assert code == 0
    rows = _rows(tmp_path)
    assert {rows[rid][1] for rid, _ in results} == {"overloaded_error"}
