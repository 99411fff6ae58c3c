"""Engine, sessions and migrations. SQLite (WAL, one writer at a time) by default; PostgreSQL by URL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> AsyncEngine:
    """An async engine; for SQLite the pragmas above run on every new connection."""
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
        engine = create_async_engine(url, pool_size=8, max_overflow=8)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def make_probe_engine(url: str) -> AsyncEngine:
    """One connection of its own for health checks: a pool that requests have exhausted under load
    must not make a database that answers look down (``/ready`` would take a busy node out)."""
    return create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=5)


class DatabaseUnavailable(Exception):
    """The database cannot be reached at start; the message is one line for an operator."""


def check_reachable(url: str, timeout: float = 10.0) -> None:
    """Open one connection to a PostgreSQL ``url`` (SQLite: nothing to reach); ``DatabaseUnavailable``
    naming the server (password hidden) and the reason when that fails."""
    if url.startswith("sqlite"):
        return

    async def probe() -> None:
        engine = make_probe_engine(url)
        try:
            async with asyncio.timeout(timeout), engine.connect():
                pass
        finally:
            await engine.dispose()

    try:
        asyncio.run(probe())
    except Exception as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        reason = " ".join(str(exc.__cause__ or exc).split()) or type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot connect to the database at {shown} ({reason}); start it or fix WISEGATE_DATABASE_URL"
        ) from None


class Database:
    """Sessions for reads, and ``write()`` for writes: serialised on SQLite, concurrent on PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = url.startswith("sqlite")
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, committed on exit and rolled back on error.

        Callables appended to ``session.info["after_commit"]`` run once the transaction committed.
        """
        if self._write_lock is None:
            async with self._sessions() as session:
                async with session.begin():
                    yield session
                for hook in session.info.pop("after_commit", []):
                    hook()
            return
        async with self._write_lock, self._sessions() as session:
            async with session.begin():
                yield session
            for hook in session.info.pop("after_commit", []):
                hook()

    async def close(self) -> None:
        await self.engine.dispose()


def migrate(url: str) -> None:
    """Upgrade the database at ``url`` to the newest migration (runs alembic in its own thread)."""
    from alembic import command
    from alembic.config import Config

    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    errors: list[BaseException] = []

    def run() -> None:
        try:
            command.upgrade(config, "head")
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="wisegate-migrate")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
