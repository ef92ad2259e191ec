"""Two processes writing one SQLite file (the server and the `cloudsign` CLI
beside it) queue for the write lock instead of failing with "database is
locked"."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from cloudsign.storage.database import Database


async def test_a_transaction_that_reads_then_writes_survives_a_concurrent_writer(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'two.db'}"
    first, second = Database(url, immediate=True), Database(url, immediate=True)
    try:
        async with first.transaction() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))

        async def other_writer() -> None:
            async with second.transaction() as conn:
                await conn.execute(text("INSERT INTO t VALUES (2)"))

        async with first.transaction() as conn:
            # Read first, as the services do before they write.
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
            writer = asyncio.create_task(other_writer())
            # A deferred transaction would let the other writer commit here
            # and then fail its own write on the stale snapshot; an immediate
            # one holds the lock, so the other writer waits.
            done, _ = await asyncio.wait({writer}, timeout=1.0)
            assert not done
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        await writer
        async with first.read() as conn:
            rows = (await conn.execute(text("SELECT n FROM t ORDER BY rowid"))).scalars().all()
        assert rows == [1, 2]
    finally:
        await first.close()
        await second.close()
