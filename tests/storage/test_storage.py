"""The migrated database is exactly the schema the code queries, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from cloudsign.appkeys import DATABASE
from cloudsign.events import EventType, append_event
from cloudsign.storage.schema import events
from cloudsign.storage.tables import all_tables


async def test_migrations_match_metadata(app: Any) -> None:
    def diff(sync_conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(sync_conn)
        return list(compare_metadata(ctx, all_tables()))

    async with app[DATABASE].read() as conn:
        assert await conn.run_sync(diff) == []


async def test_migrate_is_idempotent(app: Any) -> None:
    await app[DATABASE].migrate()
    await app[DATABASE].migrate()


async def test_times_come_back_as_aware_utc(app: Any) -> None:
    almaty = timezone(timedelta(hours=5))
    at = datetime(2026, 3, 1, 10, 0, 0, 123000, tzinfo=almaty)
    async with app[DATABASE].transaction() as conn:
        await append_event(conn, EventType.AUTH_FAILURE, owner_id=None, data={"t": 1}, at=at)
    async with app[DATABASE].read() as conn:
        got = (
            await conn.execute(select(events.c.occurred_at).order_by(events.c.seq.desc()).limit(1))
        ).scalar_one()
    assert got == at
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0)
    assert got.astimezone(UTC).hour == 5


async def test_failed_transaction_leaves_nothing(app: Any) -> None:
    async with app[DATABASE].read() as conn:
        before = len((await conn.execute(select(events.c.seq))).all())

    async def append_then_fail() -> None:
        async with app[DATABASE].transaction() as conn:
            await append_event(conn, EventType.AUTH_FAILURE, owner_id=None)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await append_then_fail()
    async with app[DATABASE].read() as conn:
        assert len((await conn.execute(select(events.c.seq))).all()) == before
