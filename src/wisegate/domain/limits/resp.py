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
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: deque[asyncio.Future[Reply]] = deque()
        self._connecting: asyncio.Lock | None = None

    async def call(self, *args: bytes | str) -> Reply:
        """Send one command and return its reply; :class:`RespError` for an error or a lost link."""
        writer = self._writer if self._writer is not None else await self._connect()
        return await self._send(writer, args)

    async def _send(self, writer: asyncio.StreamWriter, args: tuple[bytes | str, ...]) -> Reply:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        self._waiting.append(future)
        writer.write(_encode(args))
        timer = loop.call_later(self._timeout, _expire, future, self._timeout)
        try:
            return await future
        finally:
            timer.cancel()

    async def _connect(self) -> asyncio.StreamWriter:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._writer is not None:
                return self._writer
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        self._host, self._port, ssl=ssl.create_default_context() if self._tls else None
                    ),
                    self._timeout,
                )
            except (OSError, TimeoutError) as exc:
                raise RespError(f"cannot connect to Redis at {self._host}:{self._port}: {exc}") from exc
            self._reader_task = asyncio.create_task(self._read(reader))
            try:
                if self._auth:
                    await self._send(writer, ("AUTH", *self._auth))
                if self._db != "0":
                    await self._send(writer, ("SELECT", self._db))
            except RespError:
                writer.close()
                raise
            self._writer = writer
            return writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        failure: Exception = RespError("the connection to Redis was closed")
        try:
            while True:
                reply = await _read_reply(reader)
                future = self._waiting.popleft()
                if future.done():  # its caller timed out or was cancelled
                    continue
                if isinstance(reply, RespError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            failure = RespError(f"lost the connection to Redis: {exc!r}")
        finally:
            self._drop(failure)

    def _drop(self, failure: Exception) -> None:
        """Forget the connection; every command still waiting fails (the next call reconnects)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(failure)

    async def close(self) -> None:
        writer, task = self._writer, self._reader_task
        self._writer = None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _expire(future: asyncio.Future[Reply], seconds: float) -> None:
    if not future.done():
        future.set_exception(RespError(f"Redis did not answer within {seconds:g} s"))


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
        for _ in range(count):
            item = await _read_reply(reader)
            if isinstance(item, RespError):
                return item
            items.append(item)
        return items
    raise ValueError(f"unexpected Redis reply {line[:40]!r}")
