"""The `events` table: the audit trail every key and certificate change
writes in the same transaction as the change itself."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cloudsign.storage.schema import events


class EventType(enum.StrEnum):
    KEY_CREATE = "key.create"
    KEY_USE = "key.use"
    KEY_DESTROY = "key.destroy"
    CERT_ISSUE = "cert.issue"
    CERT_REVOKE = "cert.revoke"
    CONSENT_RECORD = "consent.record"
    AUTH_FAILURE = "auth.failure"
    CREDENTIAL_LOCK = "credential.lock"
    NOTICE_PUBLISH = "notice.publish"
    FACE_ENROL = "face.enrol"
    ACCOUNT_DELETE = "account.delete"


async def append_event(
    conn: AsyncConnection,
    event_type: EventType,
    *,
    owner_id: str | None,
    credential_id: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Append one event inside the caller's transaction. `data` must hold no
    secret: it becomes part of the public, hashed log."""
    await conn.execute(
        events.insert().values(
            event_type=event_type.value,
            occurred_at=at or datetime.now(UTC),
            owner_id=owner_id,
            credential_id=credential_id,
            data=data or {},
        )
    )
