"""One leader among the processes on one database (cloudsign/storage/leader.py):
exactly one runs the background work; when it stops or loses its database
connection, another takes over within seconds."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import text

from cloudsign.settings import Settings
from cloudsign.storage import Database
from cloudsign.storage.leader import Leadership, lock_key

RETRY = 0.1


async def _until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(30):
            while True:
                if condition():
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


class Worker:
    """What a leader runs: a task that counts while it lives."""

    def __init__(self) -> None:
        self.started = 0
        self.running = 0

    def starter(self) -> Callable[[], Awaitable[list[asyncio.Task[None]]]]:
        async def start() -> list[asyncio.Task[None]]:
            self.started += 1

            running = asyncio.Event()

            async def work() -> None:
                self.running += 1
                running.set()
                try:
                    await asyncio.Event().wait()
                finally:
                    self.running -= 1

            task = asyncio.create_task(work())
            await running.wait()
            return [task]

        return start


async def test_one_leader_and_a_successor_when_it_stops(settings: Settings) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    dbs = [Database(settings.effective_database_url) for _ in range(3)]
    leaders = [Leadership(db, name, retry_seconds=RETRY) for db in dbs]
    workers = [Worker() for _ in leaders]
    try:
        for leader, worker in zip(leaders, workers, strict=True):
            await leader.start(worker.starter())
        assert [leader.leading for leader in leaders] == [True, False, False]
        assert workers[0].running == 1
        # Followers keep trying, and keep failing while the first one leads.
        await _until(lambda: min(x.attempts for x in leaders[1:]) >= 3, "followers' attempts")
        assert [w.started for w in workers] == [1, 0, 0]

        await leaders[0].stop()
        assert workers[0].running == 0 and not leaders[0].leading
        await _until(lambda: sum(leader.leading for leader in leaders) == 1, "a successor")
        assert sum(w.running for w in workers) == 1
        current = next(leader for leader in leaders if leader.leading)
        # The loop and the anchoring path may ask at once, on one connection.
        assert all(await asyncio.gather(*(current.confirm() for _ in range(5))))
        assert not await leaders[0].confirm()
    finally:
        for leader in leaders:
            await leader.stop()
        for db in dbs:
            await db.close()


async def test_a_leader_that_dies_or_loses_its_lock_is_replaced(settings: Settings) -> None:
    """PostgreSQL: the leader's database session ends under it (as when the
    leader is killed, or the network drops): the lock is released, a leader
    takes over, and the old leader notices at its next check and stops its
    work. SQLite: the process holding the file lock is killed."""
    if settings.effective_database_url.startswith("sqlite"):
        await _a_killed_sqlite_leader_is_replaced(settings)
        return
    name = f"test-{uuid.uuid4().hex[:8]}"
    dbs = [Database(settings.effective_database_url) for _ in range(3)]
    first = Leadership(dbs[0], name, retry_seconds=RETRY)
    second = Leadership(dbs[1], name, retry_seconds=RETRY)
    w1, w2 = Worker(), Worker()
    try:
        await first.start(w1.starter())
        await second.start(w2.starter())
        assert first.leading and not second.leading
        key = lock_key(name) & 0xFFFF_FFFF_FFFF_FFFF
        async with dbs[2].transaction() as conn:
            killed = (
                await conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks "
                        "WHERE locktype = 'advisory' AND classid = :hi AND objid = :lo"
                    ),
                    {"hi": key >> 32, "lo": key & 0xFFFF_FFFF},
                )
            ).all()
        assert killed == [(True,)]

        def handed_over() -> bool:
            # The old leader stopped its work; one of them leads again (the
            # follower, or the old leader anew, in a second term).
            if second.leading:
                return w2.running == 1 and w1.running == 0 and not first.leading
            return first.leading and w1.started == 2 and w1.running == 1 and w2.running == 0

        await _until(handed_over, "the old leader to step down and a leader to take over")
        assert await (second if second.leading else first).confirm()
    finally:
        await first.stop()
        await second.stop()
        for db in dbs:
            await db.close()


async def _a_killed_sqlite_leader_is_replaced(settings: Settings) -> None:
    """SQLite's lock is a file lock: another process holds it until it is
    killed with SIGKILL, and then this one leads."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    db = Database(settings.effective_database_url)
    follower = Leadership(db, name, retry_seconds=RETRY)
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n",
        str(follower._lock_path()),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    worker = Worker()
    try:
        assert holder.stdout is not None
        assert await holder.stdout.readline() == b"locked\n"
        await follower.start(worker.starter())
        await _until(lambda: follower.attempts >= 3, "the follower's attempts")
        assert not follower.leading and worker.started == 0
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
        await _until(lambda: follower.leading and worker.running == 1, "the follower to lead")
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
        await follower.stop()
        await db.close()
