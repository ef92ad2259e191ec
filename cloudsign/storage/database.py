"""The database engine: SQLite (aiosqlite) by default, PostgreSQL (asyncpg)
when configured; the same SQLAlchemy Core statements on both."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from cloudsign.errors import ConfigurationError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def async_url(url: str) -> str:
    """Map the configured URL onto the async driver SQLAlchemy needs."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ConfigurationError(f"unsupported database {backend!r}")


class Database:
    def __init__(self, url: str, *, echo: bool = False, immediate: bool = False) -> None:
        """`immediate` (SQLite): every transaction is opened explicitly and a
        write transaction takes the write lock at BEGIN (`BEGIN IMMEDIATE`),
        waiting for it up to `CLI_BUSY_SECONDS`. The command line's processes
        use it: their transactions are short, they run beside a busy server,
        and a transaction that read first and wrote later would otherwise
        fail at once with SQLITE_BUSY when the server committed in between
        (the busy handler cannot help a stale WAL snapshot). The server keeps
        the driver's own transactions (begun at the first write), so that a
        transaction awaiting slow work (a face check, an HSM queue) before it
        writes holds no lock meanwhile."""
        self.url = url
        self.immediate = immediate
        # Parameters (IINs, names, sealed blobs) never reach a log or an
        # exception message, whatever the logging configuration.
        kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        target = async_url(url)
        self.is_sqlite = target.startswith("sqlite")
        if self.is_sqlite:
            path = make_url(target).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": CLI_BUSY_SECONDS if immediate else 30}
        else:
            # A statement the server has not answered in COMMAND_TIMEOUT_SECONDS
            # (a hung server or network, not a dead one) fails instead of
            # holding its request, or the leader's lock check, forever.
            kwargs.update(
                pool_size=10,
                max_overflow=10,
                pool_pre_ping=True,
                connect_args={"command_timeout": COMMAND_TIMEOUT_SECONDS},
            )
        self.engine: AsyncEngine = create_async_engine(target, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            if immediate:
                event.listen(self.engine.sync_engine, "connect", _sqlite_explicit)
                event.listen(self.engine.sync_engine, "begin", _sqlite_begin)

    @property
    def backend(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; commits on success, rolls back on any error."""
        async with self.engine.connect() as conn:
            if self.is_sqlite and self.immediate:
                await conn.execution_options(**{_IMMEDIATE: True})
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[AsyncConnection]:
        """A transaction that holds the lock `name` until it ends, against
        every process on this database: PostgreSQL's transaction-level
        advisory lock (`pg_advisory_xact_lock`, released at commit or
        rollback, and by the server when a holder dies). SQLite is one
        service process by design: there it is a plain transaction."""
        async with self.transaction() as conn:
            if not self.is_sqlite:
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(name)}
                )
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    async def ping(self) -> None:
        """One round trip (`/readyz`): raises when the database is away."""
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def migrate(self) -> None:
        async with self.transaction() as conn:
            await conn.run_sync(_upgrade)

    async def close(self) -> None:
        await self.engine.dispose()


def advisory_key(name: str) -> int:
    """PostgreSQL's 64-bit advisory lock key for `name` (a signed bigint)."""
    digest = hashlib.sha256(f"cloudsign.{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_IMMEDIATE = "cloudsign_sqlite_immediate"
#: PostgreSQL: the longest a statement may go unanswered (asyncpg's client-side timeout).
COMMAND_TIMEOUT_SECONDS = 120
#: How long a command-line process waits for SQLite's write lock.
CLI_BUSY_SECONDS = 120


def _sqlite_explicit(dbapi_conn: Any, _record: Any) -> None:
    # SQLAlchemy, not the driver, opens transactions (see _sqlite_begin).
    dbapi_conn.isolation_level = None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    # Deleted key blobs and sealed secrets are overwritten, not left in free pages.
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    """An `immediate` database's transactions: IMMEDIATE for writes
    (:meth:`Database.transaction`), deferred for reads."""
    immediate = conn.get_execution_options().get(_IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")
