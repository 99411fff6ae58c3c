"""A small Redis client for the limiter's one command: replies in order on one connection.

Redis answers the commands of a connection in the order they were sent, so every caller writes its
command at once and waits on a future; one reader task resolves the futures in order. No pool and no
per-call task: a take costs one write and one wake-up (redis-py's asyncio client spent about as much
time in Python as the round trip itself). ``redis://`` and ``rediss://`` (TLS) URLs, with an optional
user and password and database number.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from urllib.parse import unquote, urlsplit

Reply = bytes | int | list["Reply"] | None

_TIMEOUT_SECONDS = 5.0


class RespError(Exception):
    """Redis answered with an error reply (``-ERR …``), or the connection failed."""


class _Connection:
    """One TCP connection: its writer, its reader task, and the futures waiting for its replies."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.waiting: deque[asyncio.Future[Reply]] = deque()
        self.reader_task: asyncio.Task[None] | None = None
        self.broken = False

    def fail(self, failure: Exception) -> None:
        """Close it; every command still waiting on it fails (its replies can no longer be matched)."""
        self.broken = True
        self.writer.close()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(failure)


class RespClient:
    def __init__(self, url: str, timeout: float = _TIMEOUT_SECONDS) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"WISEGATE_REDIS_URL must be redis://… or rediss://…, not {url!r}")
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._tls = parts.scheme == "rediss"
        self._auth = [unquote(v).encode() for v in (parts.username, parts.password) if v]
        self._db = parts.path.strip("/") or "0"
        self._timeout = timeout
        self._conn: _Connection | None = None
        self._connecting: asyncio.Lock | None = None

    async def call(self, *args: bytes | str) -> Reply:
        """Send one command and return its reply; :class:`RespError` for an error or a lost link."""
        conn = self._conn
        if conn is None or conn.broken:
            conn = await self._connect()
        return await self._send(conn, args)

    async def _send(self, conn: _Connection, args: tuple[bytes | str, ...]) -> Reply:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        conn.waiting.append(future)
        conn.writer.write(_encode(args))
        timer = loop.call_later(self._timeout, self._expire, conn)
        try:
            return await future
        finally:
            timer.cancel()

    def _expire(self, conn: _Connection) -> None:
        # A silent server (failover, a black-holed route): drop the connection, do not keep queueing.
        self._forget(conn, RespError(f"Redis did not answer within {self._timeout:g} s"))

    def _forget(self, conn: _Connection, failure: Exception) -> None:
        conn.fail(failure)
        if self._conn is conn:
            self._conn = None

    async def _connect(self) -> _Connection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is not None and not self._conn.broken:
                return self._conn
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        self._host, self._port, ssl=ssl.create_default_context() if self._tls else None
                    ),
                    self._timeout,
                )
            except (OSError, TimeoutError) as exc:
                raise RespError(f"cannot connect to Redis at {self._host}:{self._port}: {exc}") from exc
            conn = _Connection(writer)
            conn.reader_task = asyncio.create_task(self._read(conn, reader))
            try:
                if self._auth:
                    await self._send(conn, ("AUTH", *self._auth))
                if self._db != "0":
                    await self._send(conn, ("SELECT", self._db))
            except BaseException:  # also cancelled: nothing of this connection may stay behind
                conn.fail(RespError("connection set-up did not finish"))
                conn.reader_task.cancel()
                raise
            self._conn = conn
            return conn

    async def _read(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        failure: Exception = RespError("the connection to Redis was closed")
        try:
            while True:
                reply = await _read_reply(reader)
                if not conn.waiting:
                    raise ValueError("a reply nobody asked for")
                future = conn.waiting.popleft()
                if future.done():  # its caller was cancelled
                    continue
                if isinstance(reply, RespError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            failure = RespError(f"lost the connection to Redis: {exc!r}")
        finally:
            self._forget(conn, failure)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.fail(RespError("the Redis client was closed"))
        with contextlib.suppress(OSError):
            await conn.writer.wait_closed()
        if conn.reader_task is not None:
            conn.reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await conn.reader_task


def _encode(args: tuple[bytes | str, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


async def _read_reply(reader: asyncio.StreamReader) -> Reply | RespError:
    line = await reader.readuntil(b"\r\n")
    kind, rest = line[:1], line[1:-2]
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else (await reader.readexactly(size + 2))[:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        return RespError(rest.decode("utf-8", "replace"))
    if kind == b":":
        return int(rest)
    if kind == b"*":
        count = int(rest)
        if count < 0:
            return None
        items: list[Reply] = []
        error: RespError | None = None
        for _ in range(count):  # every element is read, so that the next reply stays in step
            item = await _read_reply(reader)
            if isinstance(item, RespError):
                error = error or item
            else:
                items.append(item)
        return error or items
    raise ValueError(f"unexpected Redis reply {line[:40]!r}")
