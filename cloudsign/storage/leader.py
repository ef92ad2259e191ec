"""One leader among the processes on one database, for the background work
that must run exactly once (sequencing the audit log, closing and anchoring
days, retention, CRL publication).

- **PostgreSQL:** a session-level advisory lock (`pg_try_advisory_lock`) held
  on a connection of its own. The server releases it the moment that
  connection ends, so a leader killed with `kill -9` (its socket closed by
  the kernel) or cut off from the database is replaced by the next follower's
  attempt, within `retry_seconds`. The leader checks its connection every
  `retry_seconds` and steps down (cancels its tasks) as soon as the check
  fails; `confirm()` asks the server again, for a caller that is about to do
  something that must not happen twice (the anchoring transaction).
- **SQLite:** an exclusive `flock` on a file beside the database. The kernel
  drops it when the holding process dies; SQLite is the single-machine
  embedded default, so a file lock reaches every process that can open the
  database.

While it leads, a process runs the tasks `start()` returned, and cancels them
when it steps down. The one window where two processes might both run them
is PostgreSQL's lost connection: the server has released the lock (another
process may lead already) while the old leader has not yet noticed, at most
one check interval. What must never happen twice is therefore also fenced
where it happens: the anchoring path calls `confirm()` right before it sends
a transaction, and claims the day in the database first.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from cloudsign.storage.database import Database, advisory_key
from cloudsign.tasks import stop_tasks

log = logging.getLogger(__name__)

RETRY_SECONDS: Final = 1.0

#: What a new leader starts; the tasks it returns are cancelled on step-down.
Starter = Callable[[], Awaitable[list[asyncio.Task[None]]]]


def lock_key(name: str) -> int:
    """The advisory lock's 64-bit key for `name` (signed, as PostgreSQL's bigint)."""
    return advisory_key(f"leader:{name}")


class Leadership:
    """`await leadership.start(starter)`: lead whenever the lock is free, run
    `starter()`'s tasks while leading; `await leadership.stop()` at shutdown."""

    def __init__(self, db: Database, name: str, *, retry_seconds: float = RETRY_SECONDS) -> None:
        self.db = db
        self.name = name
        self.retry_seconds = retry_seconds
        self.leading = False
        #: How many times this process tried the lock, and became the leader.
        self.attempts = 0
        self.terms = 0
        self._conn: AsyncConnection | None = None
        self._fd: int | None = None
        # confirm() runs from the loop and from the anchoring path: one
        # connection takes one query at a time.
        self._confirm_lock = asyncio.Lock()
        self._runner: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Leadership({self.name!r}, leading={self.leading})"

    # -- the lock ------------------------------------------------------------

    def _lock_path(self) -> Path:
        database = make_url(self.db.url).database or ""
        base = Path(database) if database and database != ":memory:" else Path(".")
        return base.with_name(f"{base.name}.{self.name}.leader")

    async def _acquire(self) -> bool:
        if self.db.is_sqlite:
            return self._acquire_file()
        conn = await self.db.engine.connect()
        try:
            got = (
                await conn.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": lock_key(self.name)}
                )
            ).scalar_one()
            await conn.commit()  # the session lock outlives the transaction
        except BaseException:
            await conn.close()
            raise
        if not got:
            await conn.close()
            return False
        self._conn = conn
        return True

    def _acquire_file(self) -> bool:
        path = self._lock_path()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def confirm(self) -> bool:
        """Ask again, now: does this process still hold the lock?"""
        if not self.leading:
            return False
        if self.db.is_sqlite:
            return self._fd is not None
        conn = self._conn
        if conn is None:
            return False
        key = lock_key(self.name) & 0xFFFF_FFFF_FFFF_FFFF
        try:
            async with self._confirm_lock:
                held = await self._held(conn, key)
        except (SQLAlchemyError, OSError) as e:
            log.warning("leadership %s: lost the database connection: %s", self.name, e)
            return False
        return held

    @staticmethod
    async def _held(conn: AsyncConnection, key: int) -> bool:
        held = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND pid = pg_backend_pid() AND granted AND objsubid = 1 "
                    "AND classid = :hi AND objid = :lo"
                ),
                {"hi": key >> 32, "lo": key & 0xFFFF_FFFF},
            )
        ).scalar_one()
        await conn.commit()
        return bool(held)

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # Closing the connection releases the session lock (or it is gone already).
            with contextlib.suppress(SQLAlchemyError, OSError):
                await conn.invalidate()
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- the loop --------------------------------------------------------------

    def _set(self, leading: bool) -> None:
        self.leading = leading

    async def try_lead(self, start: Starter) -> list[asyncio.Task[None]] | None:
        """One attempt: on success this process leads and `start()`'s tasks
        run; None when another process leads (or the database is away)."""
        self.attempts += 1
        try:
            got = await self._acquire()
        except (SQLAlchemyError, OSError) as e:
            log.debug("leadership %s: cannot try the lock: %s", self.name, e)
            return None
        if not got:
            return None
        self.terms += 1
        self._set(True)
        log.info("leadership %s: this process leads (term %d)", self.name, self.terms)
        try:
            return await start()
        except BaseException:
            self._set(False)
            await self._release()
            raise

    async def start(self, start: Starter) -> None:
        """Try to lead now (so a lone process has its tasks before it
        serves), then keep `run` going in a task of its own."""
        leading = await self.try_lead(start)
        self._runner = asyncio.create_task(
            self.run(start, leading=leading), name=f"leadership-{self.name}"
        )

    async def stop(self) -> None:
        """Step down for good: the tasks are cancelled, the lock released."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await stop_tasks([runner])

    async def run(self, start: Starter, *, leading: list[asyncio.Task[None]] | None = None) -> None:
        """Until cancelled: lead when the lock is free, step down when it is
        lost. `leading`: the tasks of a `try_lead` that succeeded already."""
        tasks = leading
        try:
            while True:
                if tasks is None:
                    try:
                        tasks = await self.try_lead(start)
                    except Exception as e:  # noqa: BLE001 - a term that fails to start is retried
                        log.warning("leadership %s: starting the work failed: %s", self.name, e)
                if tasks is None:
                    await asyncio.sleep(self.retry_seconds)
                    continue
                while True:
                    await asyncio.sleep(self.retry_seconds)
                    if not await self.confirm():
                        break
                log.warning("leadership %s: stepped down", self.name)
                await stop_tasks(tasks)
                tasks = None
                self._set(False)
                await self._release()
                # Let the others try first: this process just lost its connection.
                await asyncio.sleep(self.retry_seconds)
        finally:
            await stop_tasks(tasks or [])
            self.leading = False
            await self._release()
