"""The `events` table: the audit trail every key and certificate change
writes in the same transaction as the change itself.

The event types are audit_chain's (`audit_chain.EventType`): one list, the
one the log's leaves are checked against. `append_event` and its batch form
`append_events` are the only ways a row gets into the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from audit_chain import EventType
from cloudsign.storage.schema import events

__all__ = ["EventType", "NewEvent", "append_event", "append_events"]


@dataclass(frozen=True)
class NewEvent:
    """One event to append. `data` must hold no secret: it becomes part of
    the hashed log (and, where the leaf says so, of its public part)."""

    event_type: EventType
    at: datetime
    owner_id: str | None = None
    credential_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type.value,
            "occurred_at": self.at,
            "owner_id": self.owner_id,
            "credential_id": self.credential_id,
            "data": self.data,
        }


async def append_events(conn: AsyncConnection, new: Sequence[NewEvent]) -> None:
    """Append events inside the caller's transaction, in one statement."""
    if new:
        await conn.execute(insert(events), [e.row() for e in new])


async def append_event(
    conn: AsyncConnection,
    event_type: EventType,
    *,
    at: datetime,
    owner_id: str | None,
    credential_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Append one event inside the caller's transaction."""
    await append_events(conn, [NewEvent(event_type, at, owner_id, credential_id, dict(data or {}))])
