"""Compromise notices (rule 13): what happened and what the CA did, published
at once on the public site, in JSON and in an Atom feed.

Publishing a notice writes the notice and a `notice.publish` audit event in
one transaction. Notices are never edited or deleted; a correction is a new
notice.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select

from cloudsign.clock import Clock, utc_now
from cloudsign.errors import ValidationError
from cloudsign.events import EventType, append_event
from cloudsign.status.revocation import normalise_serial
from cloudsign.status.tables import notices
from cloudsign.storage import Database

MAX_TITLE: Final = 200
MAX_TEXT: Final = 20_000
MAX_SERIALS: Final = 1000
FEED_LIMIT: Final = 100


@dataclass(frozen=True)
class Notice:
    id: str
    published_at: datetime
    title: str
    summary: str
    measures: str
    serials: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "published_at": self.published_at.isoformat(),
            "title": self.title,
            "summary": self.summary,
            "measures": self.measures,
            "serials": list(self.serials),
        }

    def digest(self) -> str:
        """SHA-256 of the notice's canonical JSON, recorded in the audit event."""
        canonical = json.dumps(self.to_json(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _text(value: object, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{name} is required", field=name)
    value = value.strip()
    if len(value) > limit or any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise ValidationError(f"{name} is too long or has control characters", field=name)
    return value


class NoticeService:
    def __init__(self, db: Database, *, clock: Clock = utc_now) -> None:
        self.db = db
        self.clock = clock

    async def publish(
        self,
        *,
        title: object,
        summary: object,
        measures: object,
        serials: object = (),
        actor: str,
    ) -> Notice:
        if not isinstance(serials, list | tuple) or len(serials) > MAX_SERIALS:
            raise ValidationError("serials must be a list of hex serials", field="serials")
        notice = Notice(
            id=str(uuid.uuid4()),
            published_at=self.clock(),
            title=_text(title, "title", MAX_TITLE).replace("\n", " "),
            summary=_text(summary, "summary", MAX_TEXT),
            measures=_text(measures, "measures", MAX_TEXT),
            serials=tuple(dict.fromkeys(normalise_serial(s) for s in serials)),
        )
        async with self.db.transaction() as conn:
            await conn.execute(
                notices.insert().values(
                    id=notice.id,
                    published_at=notice.published_at,
                    title=notice.title,
                    summary=notice.summary,
                    measures=notice.measures,
                    serials=list(notice.serials),
                    actor=actor,
                )
            )
            await append_event(
                conn,
                EventType.NOTICE_PUBLISH,
                owner_id=None,
                data={
                    "notice_id": notice.id,
                    "title": notice.title,
                    "sha256": notice.digest(),
                    "serials": list(notice.serials),
                    "actor": actor,
                },
                at=notice.published_at,
            )
        return notice

    async def latest(self, limit: int = FEED_LIMIT) -> list[Notice]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(notices).order_by(notices.c.published_at.desc()).limit(limit)
                )
            ).all()
        return [
            Notice(
                id=r.id,
                published_at=r.published_at,
                title=r.title,
                summary=r.summary,
                measures=r.measures,
                serials=tuple(r.serials),
            )
            for r in rows
        ]
