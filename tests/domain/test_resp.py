"""The limiter's Redis client against the real Redis on 127.0.0.1:6379 (and a silent fake server):
replies matched in order under concurrency, error replies, NOSCRIPT, lost connections, timeouts."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from wisegate.domain.limits import Bucket
from wisegate.domain.limits.redis_store import RedisLimiter
from wisegate.domain.limits.resp import RespClient, RespError

URL = "redis://127.0.0.1:6379/0"


def test_replies_of_every_kind_in_order_under_concurrency() -> None:
    async def run() -> None:
        client = RespClient(URL)
        key = f"resp-test:{uuid.uuid4().hex}"
        assert await client.call("PING") == b"PONG"
        assert await client.call("GET", key) is None
        assert await client.call("RPUSH", key, "a", "b") == 2
        assert await client.call("LRANGE", key, "0", "-1") == [b"a", b"b"]
        with pytest.raises(RespError, match="WRONGTYPE"):
            await client.call("INCR", key)
        assert await client.call("DEL", key) == 1  # the connection survives an error reply
        values = [f"v{i}-{'x' * (i % 7) * 1000}" for i in range(300)]
        echoed = await asyncio.gather(*(client.call("ECHO", v) for v in values))
        assert echoed == [v.encode() for v in values]
        await client.close()

    asyncio.run(run())


def test_database_number_from_the_url() -> None:
    async def run() -> None:
        key = f"resp-test:{uuid.uuid4().hex}"
        three = RespClient("redis://127.0.0.1:6379/3")
        zero = RespClient(URL)
        await three.call("SET", key, "in-3", "EX", "30")
        assert await zero.call("GET", key) is None
        assert await three.call("GET", key) == b"in-3"
        await three.call("DEL", key)
        await three.close()
        await zero.close()

    asyncio.run(run())


def test_a_lost_connection_fails_the_waiting_call_and_the_next_one_reconnects() -> None:
    async def run() -> None:
        client = RespClient(URL)
        killer = RespClient(URL)
        own_id = await client.call("CLIENT", "ID")
        assert isinstance(own_id, int)
        blocked = asyncio.create_task(client.call("BLPOP", f"resp-test:{uuid.uuid4().hex}", "3"))
        await asyncio.sleep(0.1)
        assert await killer.call("CLIENT", "KILL", "ID", str(own_id)) == 1
        with pytest.raises(RespError, match="connection"):
            await blocked
        assert await client.call("PING") == b"PONG"
        assert await client.call("CLIENT", "ID") != own_id
        await client.close()
        await killer.close()

    asyncio.run(run())


def test_a_silent_server_times_out_and_a_closed_port_is_a_clear_error() -> None:
    async def run() -> None:
        accepted = 0

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            await reader.read(1 << 16)
            await asyncio.sleep(5)
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = RespClient(f"redis://127.0.0.1:{port}", timeout=0.2)
        with pytest.raises(RespError, match="did not answer within 0.2 s"):
            await client.call("PING")
        # The silent connection was dropped with the timeout: the next call opens a new one.
        with pytest.raises(RespError, match="did not answer"):
            await client.call("PING")
        assert accepted == 2
        await client.close()
        server.close()
        await server.wait_closed()
        with pytest.raises(RespError, match="cannot connect to Redis"):
            await RespClient(f"redis://127.0.0.1:{port}").call("PING")

    asyncio.run(run())


def test_the_take_script_is_loaded_again_after_redis_forgot_it() -> None:
    async def run() -> None:
        limiter = RedisLimiter(URL, f"resp-test-{uuid.uuid4().hex[:8]}")
        bucket = Bucket("b", "requests", "organization", "org", "c", 60)
        assert (await limiter.take([(bucket, 1)])).admitted
        admin = RespClient(URL)
        assert await admin.call("SCRIPT", "FLUSH") == b"OK"  # as after a Redis restart
        taken = await limiter.take([(bucket, 1)])
        assert taken.admitted and taken.levels[0].remaining == pytest.approx(58, abs=0.1)
        await limiter.close()
        await admin.close()

    asyncio.run(run())


def test_only_redis_urls() -> None:
    with pytest.raises(ValueError, match="redis://"):
        RespClient("http://127.0.0.1:6379")
