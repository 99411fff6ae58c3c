"""A small Redis client for the limiter's one command: replies in order on one connection.

Redis answers the commands of a connection in the order they were sent, so every caller writes its
command at once and waits on a future; one reader task resolves the futures in order. No pool and no
per-call task: a take costs one write and one wake-up (redis-py's asyncio client spent about as much
time in Python as the round trip itself; ``bench/limits_overhead.py`` measures both).

URLs, as redis-py spells them so that one URL serves both:

- ``redis://[[user]:password@]host[:port][/db]``; ``rediss://`` for TLS, with the query parameters
  ``ssl_ca_certs`` (a CA bundle file; default: the system's), ``ssl_certfile`` and ``ssl_keyfile``
  (a client certificate, for servers that require one), ``ssl_cert_reqs=none`` (no verification:
  tests only) and ``ssl_check_hostname=false``;
- ``redis+sentinel://[[user]:password@]s1:26379,s2:26379/<master name>[/db]`` (``rediss+sentinel``:
  TLS to the sentinels and the master): the master's address is asked of the sentinels, in order,
  and confirmed with ``ROLE`` before use; when the connection is lost or the server answers
  ``READONLY`` (a failover demoted it), the next command asks again. ``sentinel_password`` (query)
  authenticates to the sentinels; the URL's user and password are the master's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

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


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """Where to connect: the server itself, or the sentinels to ask for the master."""

    hosts: tuple[tuple[str, int], ...]
    master: str | None  # a sentinel set-up's master name
    sentinel_auth: tuple[bytes, ...]


def _parse(url: str) -> tuple[_Endpoint, bool, list[bytes], str, dict[str, list[str]]]:
    parts = urlsplit(url)
    schemes = ("redis", "rediss", "redis+sentinel", "rediss+sentinel")
    if parts.scheme not in schemes:
        shown = url.rsplit("@", 1)[-1]  # never a password
        raise ValueError(
            f"WISEGATE_REDIS_URL must be redis://…, rediss://… or redis+sentinel://…, not {shown!r}"
        )
    query = parse_qs(parts.query)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    auth = [unquote(v).encode() for v in (parts.username, parts.password) if v]
    path = [p for p in parts.path.split("/") if p]
    hosts = []
    sentinel = parts.scheme.endswith("+sentinel")
    for host_port in netloc.split(","):
        host, _, port = host_port.rpartition(":") if host_port.count(":") == 1 else (host_port, "", "")
        hosts.append((host.strip("[]") or "127.0.0.1", int(port or (26379 if sentinel else 6379))))
    if sentinel:
        if not path:
            raise ValueError("a redis+sentinel:// URL names the master: redis+sentinel://host:26379/mymaster")
        master, db = path[0], (path[1] if len(path) > 1 else "0")
        sentinel_auth = tuple(v.encode() for v in query.get("sentinel_password", []))
        endpoint = _Endpoint(tuple(hosts), master, sentinel_auth)
    else:
        db = path[0] if path else "0"
        endpoint = _Endpoint(tuple(hosts[:1]), None, ())
    return endpoint, parts.scheme.startswith("rediss"), auth, db, query


def _tls_context(query: dict[str, list[str]]) -> ssl.SSLContext:
    def one(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    context = ssl.create_default_context(cafile=one("ssl_ca_certs"))
    certfile = one("ssl_certfile")
    if certfile:
        context.load_cert_chain(certfile, one("ssl_keyfile"))
    if (one("ssl_check_hostname") or "true").lower() in ("false", "0", "no"):
        context.check_hostname = False
    if (one("ssl_cert_reqs") or "required").lower() == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class RespClient:
    def __init__(self, url: str, timeout: float = _TIMEOUT_SECONDS) -> None:
        self._endpoint, tls, auth, self._db, query = _parse(url)
        self._tls = _tls_context(query) if tls else None
        self._auth = auth
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
            if self._endpoint.master is None:
                host, port = self._endpoint.hosts[0]
                conn = await self._open(host, port, self._auth, self._db)
            else:
                conn = await self._open_master(self._endpoint.master)
            self._conn = conn
            return conn

    async def _open(
        self, host: str, port: int, auth: Sequence[bytes], db: str, *, role: bytes | None = None
    ) -> _Connection:
        """A set-up connection (authenticated, its database selected, its ``ROLE`` checked)."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=self._tls), self._timeout
            )
        except ssl.SSLCertVerificationError as exc:
            raise RespError(
                f"TLS with Redis at {host}:{port} failed: its certificate was not verified "
                f"({exc.verify_message}; ssl_ca_certs names the CA that signed it)"
            ) from exc
        except ssl.SSLError as exc:
            raise RespError(f"TLS with Redis at {host}:{port} failed: {exc.reason or exc}") from exc
        except (OSError, TimeoutError) as exc:
            raise RespError(f"cannot connect to Redis at {host}:{port}: {exc}") from exc
        conn = _Connection(writer)
        conn.reader_task = asyncio.create_task(self._read(conn, reader))
        try:
            if auth:
                await self._send(conn, ("AUTH", *auth))
            if db != "0":
                await self._send(conn, ("SELECT", db))
            if role is not None:
                reply = await self._send(conn, ("ROLE",))
                if not isinstance(reply, list) or not reply or reply[0] != role:
                    raise RespError(f"Redis at {host}:{port} is not the {role.decode()} (yet)")
        except BaseException:  # also cancelled: nothing of this connection may stay behind
            conn.fail(RespError("connection set-up did not finish"))
            conn.reader_task.cancel()
            raise
        return conn

    async def _open_master(self, name: str) -> _Connection:
        """Ask each sentinel in turn where the master is; connect there and confirm it is the master."""
        problems: list[str] = []
        for host, port in self._endpoint.hosts:
            try:
                sentinel = await self._open(host, port, self._endpoint.sentinel_auth, "0")
            except RespError as exc:
                problems.append(str(exc))
                continue
            try:
                address = await self._send(sentinel, ("SENTINEL", "get-master-addr-by-name", name))
            except RespError as exc:
                problems.append(f"sentinel {host}:{port}: {exc}")
                continue
            finally:
                await self._shut(sentinel)
            if not isinstance(address, list) or len(address) != 2:
                problems.append(f"sentinel {host}:{port} does not know a master named {name!r}")
                continue
            master_host, master_port = (bytes(v).decode() for v in address)  # type: ignore[arg-type]
            try:
                return await self._open(master_host, int(master_port), self._auth, self._db, role=b"master")
            except RespError as exc:
                problems.append(str(exc))
        raise RespError(f"no Redis master {name!r} found through the sentinels: {'; '.join(problems)}")

    async def _shut(self, conn: _Connection) -> None:
        conn.fail(RespError("closed"))
        with contextlib.suppress(OSError, ssl.SSLError):
            await conn.writer.wait_closed()
        if conn.reader_task is not None:
            conn.reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await conn.reader_task

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
                    if str(reply).startswith("READONLY"):
                        # A failover made this server a replica: find the master again next time.
                        self._forget(conn, reply)
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            failure = RespError(f"lost the connection to Redis: {exc!r}")
        finally:
            self._forget(conn, failure)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._shut(conn)


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
