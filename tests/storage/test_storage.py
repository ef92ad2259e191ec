"""The migrated database is exactly the schema the code queries, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select

from cloudsign.appkeys import DATABASE
from cloudsign.events import EventType, append_event
from cloudsign.storage.database import alembic_config
from cloudsign.storage.schema import events
from cloudsign.storage.tables import all_tables


async def test_migrations_match_metadata(app: Any) -> None:
    def diff(sync_conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(sync_conn)
        return list(compare_metadata(ctx, all_tables()))

    async with app[DATABASE].read() as conn:
        assert await conn.run_sync(diff) == []


async def _state(app: Any) -> tuple[str, dict[str, list[str]], int]:
    """The schema revision, every table's columns, and the number of events."""

    def read(sync_conn: Any) -> tuple[str, dict[str, list[str]]]:
        revision = MigrationContext.configure(sync_conn).get_current_revision()
        inspector = inspect(sync_conn)
        columns = {
            t: sorted(c["name"] for c in inspector.get_columns(t))
            for t in inspector.get_table_names()
        }
        return str(revision), columns

    async with app[DATABASE].read() as conn:
        revision, columns = await conn.run_sync(read)
        count = (await conn.execute(select(func.count()).select_from(events))).scalar_one()
    return revision, columns, int(count)


async def test_migrate_is_idempotent(app: Any) -> None:
    before = await _state(app)
    await app[DATABASE].migrate()
    await app[DATABASE].migrate()
    after = await _state(app)
    # Same head revision, same tables and columns, no row touched.
    assert after == before
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert before[0] == head
    assert set(all_tables().tables) <= set(before[1])


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
            await append_event(conn, EventType.AUTH_FAILURE, owner_id=None, at=datetime.now(UTC))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await append_then_fail()
    async with app[DATABASE].read() as conn:
        assert len((await conn.execute(select(events.c.seq))).all()) == before
