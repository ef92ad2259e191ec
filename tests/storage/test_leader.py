"""One leader among the processes on one database (cloudsign/storage/leader.py):
exactly one runs the background work; when it stops or loses its database
connection, another takes over within seconds."""

from __future__ import annotations

import asyncio
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

            async def work() -> None:
                self.running += 1
                try:
                    await asyncio.Event().wait()
                finally:
                    self.running -= 1

            task = asyncio.create_task(work())
            await asyncio.sleep(0)
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
        await asyncio.sleep(5 * RETRY)
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


async def test_a_leader_cut_off_from_postgresql_steps_down(settings: Settings) -> None:
    """The leader's database session ends under it (as when the leader is
    killed, or the network drops): PostgreSQL releases the lock, a follower
    leads, and the old leader notices at its next check and stops its work."""
    if settings.effective_database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's advisory lock; SQLite's file lock dies with its process")
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
