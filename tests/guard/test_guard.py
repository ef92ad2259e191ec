"""The guard on its own, on both databases: counts are atomic under
parallel requests, locks and rate limits answer 423/429 with a wait, a
success starts the failure count again, and subjects are stored hashed."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from cloudsign.appkeys import DATABASE
from cloudsign.errors import LockedError, RateLimitedError
from cloudsign.guard import Guard, Limit
from cloudsign.guard.tables import guard_counters
from cloudsign.storage.schema import events


@dataclass
class Clock:
    now: datetime = datetime(2026, 12, 1, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _failures(max_count: int = 5) -> Limit:
    name = f"test.{uuid.uuid4().hex[:12]}"
    return Limit(name, max_count, timedelta(minutes=15), lock=timedelta(minutes=15))


async def _lock_events(app: Any, limit: Limit) -> int:
    async with app[DATABASE].read() as conn:
        rows = (
            await conn.execute(select(events.c.data).where(events.c.event_type == "lock"))
        ).all()
    return sum(1 for (data,) in rows if data.get("limit") == limit.name)


async def test_parallel_guesses_cannot_pass_the_limit(app: Any) -> None:
    """Twenty simultaneous guesses against a limit of five: exactly five are
    let through to be checked, the rest are refused, one lock is written."""
    guard = Guard(app[DATABASE], clock=Clock())
    limit = _failures(5)

    async def guess() -> str:
        try:
            attempt = await guard.attempt([(limit, "subject")], factor="test")
        except LockedError:
            return "refused"
        await guard.failure(attempt, "wrong")
        return "checked"

    outcomes = await asyncio.gather(*(guess() for _ in range(20)))
    assert outcomes.count("checked") == 5
    assert outcomes.count("refused") == 15
    assert await _lock_events(app, limit) == 1


async def test_a_lock_answers_with_its_wait_and_ends(app: Any) -> None:
    clock = Clock()
    guard = Guard(app[DATABASE], clock=clock)
    limit = _failures(3)
    for _ in range(3):
        await guard.failure(await guard.attempt([(limit, "s")], factor="test"), "wrong")
    with pytest.raises(LockedError) as err:
        await guard.attempt([(limit, "s")], factor="test")
    assert err.value.status == 423 and 890 <= err.value.retry_after <= 900
    assert await guard.locked_until(limit, "s") == clock.now + timedelta(minutes=15)
    # Still locked a minute before the end, even for what would be right.
    clock.now += timedelta(minutes=14)
    with pytest.raises(LockedError) as err:
        await guard.attempt([(limit, "s")], factor="test")
    assert err.value.retry_after <= 60
    clock.now += timedelta(minutes=1, seconds=1)
    assert await guard.locked_until(limit, "s") is None
    attempt = await guard.attempt([(limit, "s")], factor="test")  # a new count
    await guard.success(attempt)


async def test_a_success_starts_the_failure_count_again(app: Any) -> None:
    guard = Guard(app[DATABASE], clock=Clock())
    limit = _failures(3)
    for _ in range(10):
        for _ in range(2):
            await guard.failure(await guard.attempt([(limit, "s")], factor="test"), "wrong")
        await guard.success(await guard.attempt([(limit, "s")], factor="test"))
    assert await guard.locked_until(limit, "s") is None


async def test_a_rate_limit_counts_successes_too(app: Any) -> None:
    clock = Clock()
    guard = Guard(app[DATABASE], clock=clock)
    limit = Limit(f"test.{uuid.uuid4().hex[:12]}", 4, timedelta(hours=1), resets_on_success=False)
    for _ in range(4):
        await guard.success(await guard.attempt([(limit, "s")], factor="test"))
    with pytest.raises(RateLimitedError) as err:
        await guard.counted([(limit, "s")], factor="test")
    assert err.value.status == 429 and 3590 <= err.value.retry_after <= 3600
    # Another subject has its own count; the window's end frees this one.
    await guard.counted([(limit, "other")], factor="test")
    clock.now += timedelta(hours=1, seconds=1)
    await guard.counted([(limit, "s")], factor="test")


async def test_every_counter_of_a_request_is_checked(app: Any) -> None:
    """A request counted per account and per address is refused when either
    is over, whichever comes first."""
    guard = Guard(app[DATABASE], clock=Clock())
    account, address = _failures(5), _failures(2)
    for n in range(2):
        attempt = await guard.attempt([(account, f"acc{n}"), (address, "10.0.0.1")], factor="t")
        await guard.failure(attempt, "wrong")
    with pytest.raises(LockedError):
        await guard.attempt([(account, "acc9"), (address, "10.0.0.1")], factor="t")
    await guard.attempt([(account, "acc9"), (address, "10.0.0.2")], factor="t")


async def test_subjects_are_stored_hashed(app: Any) -> None:
    guard = Guard(app[DATABASE], clock=Clock())
    limit = _failures()
    iin = "900101300017"
    await guard.failure(await guard.attempt([(limit, iin)], factor="test"), "wrong")
    async with app[DATABASE].read() as conn:
        rows = (
            await conn.execute(
                select(guard_counters.c.subject).where(guard_counters.c.limit_name == limit.name)
            )
        ).all()
    assert len(rows) == 1 and iin not in rows[0][0]
