"""Counted and limited: every factor check and every costly step.

A `Limit` names a counter (per account, per IIN, per credential, per
operator, per client address...). `Guard.attempt` counts one attempt on each
of the request's counters *before* the factor is checked, in one atomic
upsert per counter, so parallel requests cannot slip past a limit between a
check and a count: of ten simultaneous guesses against a limit of five,
exactly five are checked. A success resets the failure counters
(`resets_on_success`); rate limits only age out with their window.

Over a limit, the request is refused without checking anything: 423 (locked,
`Retry-After`) for a lock, 429 (`Retry-After`) for a rate limit. Crossing a
limit writes a `lock` event; each failed check an `auth.failure` event.
Counters live in the database, so every process sees the same counts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, case, delete, literal, null, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from cloudsign.clock import Clock
from cloudsign.errors import LockedError, RateLimitedError
from cloudsign.events import EventType, NewEvent, append_events
from cloudsign.guard.tables import guard_counters
from cloudsign.storage import Database
from cloudsign.storage.types import UTCDateTime


@dataclass(frozen=True)
class Limit:
    """At most `max_count` attempts per `window`; over it, a lock of `lock`
    (423) or, without one, a refusal until the window ends (429)."""

    name: str
    max_count: int
    window: timedelta
    lock: timedelta | None = None
    resets_on_success: bool = True

    def __post_init__(self) -> None:
        if self.max_count < 1 or self.window <= timedelta(0):
            raise ValueError("a limit needs max_count >= 1 and a positive window")


def subject_key(limit: Limit, subject: str) -> str:
    """Counters are keyed by a hash: IINs and addresses are personal data."""
    return hashlib.sha256(f"{limit.name}\x00{subject}".encode()).hexdigest()[:48]


@dataclass
class Attempt:
    """One counted attempt; hand it back with `success` or `failure`."""

    checks: tuple[tuple[Limit, str], ...]
    owner_id: str | None
    credential_id: str | None
    factor: str
    at: datetime
    done: bool = field(default=False, repr=False)


class Guard:
    def __init__(self, db: Database, *, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        #: Told of every refusal: `(limit name, "locked" | "rate_limited")`.
        self.on_refusal: Callable[[str, str], None] | None = None

    async def attempt(
        self,
        checks: Sequence[tuple[Limit, str]],
        *,
        factor: str,
        owner_id: str | None = None,
        credential_id: str | None = None,
    ) -> Attempt:
        """Count one attempt on every counter, or refuse (423/429) if any is over."""
        now = self.clock()
        refusal: LockedError | RateLimitedError | None = None
        refused: list[Limit] = []
        locks: list[NewEvent] = []
        async with self.db.transaction() as conn:
            for limit, subject in checks:
                count, window_start, locked_until = await _count(conn, limit, subject, now)
                if locked_until is not None and locked_until > now:
                    refusal = refusal or _refusal(limit, locked_until - now)
                    refused.append(limit)
                    continue
                if count <= limit.max_count:
                    continue
                until = now + limit.lock if limit.lock else window_start + limit.window
                await conn.execute(
                    update(guard_counters)
                    .where(
                        guard_counters.c.limit_name == limit.name,
                        guard_counters.c.subject == subject_key(limit, subject),
                    )
                    .values(locked_until=until)
                )
                locks.append(
                    NewEvent(
                        EventType.LOCK,
                        now,
                        owner_id,
                        credential_id,
                        {"limit": limit.name, "factor": factor, "until": until.isoformat()},
                    )
                )
                refusal = refusal or _refusal(limit, until - now)
                refused.append(limit)
            await append_events(conn, locks)
        if refusal is not None:
            if self.on_refusal is not None:
                for limit in refused:
                    self.on_refusal(limit.name, "locked" if limit.lock else "rate_limited")
            raise refusal
        return Attempt(tuple(checks), owner_id, credential_id, factor, now)

    async def success(self, attempt: Attempt) -> None:
        """The factor was right: failure counters start again."""
        if attempt.done:
            return
        attempt.done = True
        resets = [(lim, s) for lim, s in attempt.checks if lim.resets_on_success]
        if not resets:
            return
        async with self.db.transaction() as conn:
            for limit, subject in resets:
                await conn.execute(
                    delete(guard_counters).where(
                        guard_counters.c.limit_name == limit.name,
                        guard_counters.c.subject == subject_key(limit, subject),
                        or_(
                            guard_counters.c.locked_until.is_(None),
                            guard_counters.c.locked_until <= attempt.at,
                        ),
                    )
                )

    async def failure(self, attempt: Attempt, reason: str) -> None:
        """The factor was wrong: it stays counted; the audit log hears of it."""
        if attempt.done:
            return
        attempt.done = True
        async with self.db.transaction() as conn:
            await append_events(
                conn,
                [
                    NewEvent(
                        EventType.AUTH_FAILURE,
                        self.clock(),
                        attempt.owner_id,
                        attempt.credential_id,
                        {"factor": attempt.factor, "reason": reason[:200]},
                    )
                ],
            )

    async def counted(self, checks: Sequence[tuple[Limit, str]], *, factor: str) -> None:
        """A step that is only rate limited (no right or wrong): count it."""
        await self.attempt(checks, factor=factor)

    async def clear(self, limit: Limit, subject: str) -> None:
        """Forget a counter (an operator unlocking a subject, tests)."""
        async with self.db.transaction() as conn:
            await conn.execute(
                delete(guard_counters).where(
                    guard_counters.c.limit_name == limit.name,
                    guard_counters.c.subject == subject_key(limit, subject),
                )
            )

    async def locked_until(self, limit: Limit, subject: str) -> datetime | None:
        """When the subject's lock on `limit` ends, or None when not locked now."""
        async with self.db.read() as conn:
            until = (
                await conn.execute(
                    select(guard_counters.c.locked_until).where(
                        guard_counters.c.limit_name == limit.name,
                        guard_counters.c.subject == subject_key(limit, subject),
                    )
                )
            ).scalar_one_or_none()
        return until if until is not None and until > self.clock() else None


async def _count(
    conn: AsyncConnection, limit: Limit, subject: str, now: datetime
) -> tuple[int, datetime, datetime | None]:
    """+1 on the counter (starting a new window when the old one is over and
    no lock holds), atomically; returns (count, window start, locked until)."""
    c = guard_counters.c
    restart = or_(
        c.locked_until <= now,
        and_(c.locked_until.is_(None), c.window_start <= now - limit.window),
    )
    # Bound as the column type: SQLite compares the stored text.
    at = literal(now, UTCDateTime())
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(guard_counters).values(
        limit_name=limit.name,
        subject=subject_key(limit, subject),
        count=1,
        window_start=now,
        locked_until=None,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[c.limit_name, c.subject],
        set_={
            "count": case((restart, 1), else_=c.count + 1),
            "window_start": case((restart, at), else_=c.window_start),
            "locked_until": case((restart, null()), else_=c.locked_until),
        },
    ).returning(c.count, c.window_start, c.locked_until)
    row = (await conn.execute(stmt)).one()
    return int(row[0]), row[1], row[2]


def _refusal(limit: Limit, wait: timedelta) -> LockedError | RateLimitedError:
    seconds = max(1, int(wait.total_seconds() + 0.999))
    if limit.lock is not None:
        return LockedError(f"too many failed attempts; try again in {seconds} s", seconds)
    return RateLimitedError(f"too many requests; try again in {seconds} s", seconds)
