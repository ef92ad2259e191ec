"""Revocation: the one service function that revokes a certificate, and the
watcher that notices revocations written by anyone else.

`RevocationService.revoke` marks the registry row revoked and appends a
`cert.revoke` event in the same transaction; nothing is deleted. After the
commit it tells its listeners (the OCSP cache, the delta-CRL publisher), so
the change is visible at once in this process. `revoke_in` does the same
inside a caller's transaction (key deletion). Revocations committed by
other writers (the `cloudsign revoke` CLI, another server process) reach the
same listeners through `RevocationWatcher`, which polls the indexed
`certificates.revoked_at` every `status_poll_ms`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cloudsign.ca import certificates
from cloudsign.clock import Clock, utc_now
from cloudsign.errors import ConflictError, NotFoundError, ValidationError
from cloudsign.events import EventType, append_event
from cloudsign.status.reasons import RevocationReason, parse_reason
from cloudsign.storage import Database

log = logging.getLogger(__name__)

#: How far back each poll looks again: covers transactions that set
#: `revoked_at` and committed later than a newer one.
WATCH_OVERLAP: Final = timedelta(seconds=120)
MAX_ACTOR: Final = 200
MAX_REFERENCE: Final = 500
_HEX: Final = re.compile(r"^[0-9a-f]{1,40}$")


def normalise_serial(value: object) -> str:
    """Hex as the registry stores it: lower case, no colons, no leading zeros."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return format(value, "x")
    if not isinstance(value, str):
        raise ValidationError("serial must be a hex string", field="serial")
    text = value.strip().lower().replace(":", "").removeprefix("0x").lstrip("0")
    if not _HEX.match(text):
        raise ValidationError("serial must be 1-40 hex digits", field="serial")
    return text


@dataclass(frozen=True)
class Revocation:
    serial: str
    reason: RevocationReason
    revoked_at: datetime
    owner_id: str | None = None
    credential_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "status": "revoked",
            "reason": self.reason.rfc_name,
            "revoked_at": self.revoked_at.isoformat(),
        }


class RevocationListener(Protocol):
    def revoked(self, serial: str) -> None:
        """Called (on the event loop) right after a revocation is committed."""


class RevocationService:
    def __init__(self, db: Database, *, clock: Clock = utc_now) -> None:
        self.db = db
        self.clock = clock
        self._listeners: list[RevocationListener] = []

    def subscribe(self, listener: RevocationListener) -> None:
        self._listeners.append(listener)

    def notify(self, serial: str) -> None:
        for listener in self._listeners:
            listener.revoked(serial)

    async def revoke(
        self,
        serial: object,
        reason: object,
        actor: str,
        *,
        reference: str | None = None,
    ) -> Revocation:
        """Revoke one certificate now. `actor` names who decided ("operator:…",
        "owner:<id>"); `reference` is an optional public pointer such as a
        court decision number. Raises NotFoundError, ConflictError (already
        revoked), ValidationError."""
        async with self.db.transaction() as conn:
            revocation = await self.revoke_in(
                conn, serial, reason, actor, reference=reference, at=self.clock()
            )
        self.notify(revocation.serial)
        return revocation

    async def revoke_in(
        self,
        conn: AsyncConnection,
        serial: object,
        reason: object,
        actor: str,
        *,
        at: datetime,
        reference: str | None = None,
    ) -> Revocation:
        """`revoke` inside the caller's transaction. The caller calls
        `notify` once it has committed; the watcher would find it within
        `status_poll_ms` anyway."""
        done = await self._revoke_in(conn, serial, reason, actor, at=at, reference=reference)
        if done is None:
            raise ConflictError(f"certificate {normalise_serial(serial)} is already revoked")
        return done

    async def revoke_if_good_in(
        self, conn: AsyncConnection, serial: object, reason: object, actor: str, *, at: datetime
    ) -> Revocation | None:
        """`revoke_in`, or None when the certificate is revoked already (key
        deletion after the owner revoked the certificate)."""
        return await self._revoke_in(conn, serial, reason, actor, at=at, reference=None)

    async def _revoke_in(
        self,
        conn: AsyncConnection,
        serial: object,
        reason: object,
        actor: str,
        *,
        at: datetime,
        reference: str | None,
    ) -> Revocation | None:
        hex_serial = normalise_serial(serial)
        code = parse_reason(reason)
        actor = actor.strip()
        if not actor or len(actor) > MAX_ACTOR or not actor.isprintable():
            raise ValidationError("actor must be 1-200 printable characters", field="actor")
        if reference is not None and (
            len(reference) > MAX_REFERENCE or not reference.isprintable()
        ):
            raise ValidationError("reference must be at most 500 printable characters")
        row = (
            await conn.execute(
                select(
                    certificates.c.status,
                    certificates.c.owner_id,
                    certificates.c.credential_id,
                )
                .where(certificates.c.serial == hex_serial)
                .with_for_update()
            )
        ).first()
        if row is None:
            raise NotFoundError(f"no certificate with serial {hex_serial}")
        if row.status != "good":
            return None
        await conn.execute(
            update(certificates)
            .where(certificates.c.serial == hex_serial, certificates.c.status == "good")
            .values(status="revoked", revoked_at=at, revocation_reason=code.value)
        )
        data: dict[str, Any] = {"serial": hex_serial, "reason": code.value, "actor": actor}
        if reference:
            data["reference"] = reference
        await append_event(
            conn,
            EventType.CERT_REVOKE,
            owner_id=row.owner_id,
            credential_id=row.credential_id,
            data=data,
            at=at,
        )
        log.info("certificate %s revoked (%s) by %s", hex_serial, code.value, actor)
        return Revocation(hex_serial, code, at, row.owner_id, row.credential_id)


class RevocationWatcher:
    """Polls for revocations this process did not make and notifies the
    service's listeners about each one once."""

    def __init__(self, service: RevocationService, *, interval: float) -> None:
        self.service = service
        self.interval = interval
        self._since: datetime | None = None
        self._seen: dict[str, datetime] = {}
        service.subscribe(self)

    def revoked(self, serial: str) -> None:
        # In-process revocations are announced already; do not announce twice.
        self._seen.setdefault(serial, self.service.clock())

    async def poll(self) -> list[str]:
        """One look; returns the serials newly seen revoked."""
        now = self.service.clock()
        since = (self._since or now) - WATCH_OVERLAP
        async with self.service.db.read() as conn:
            rows = (
                await conn.execute(
                    select(certificates.c.serial, certificates.c.revoked_at).where(
                        certificates.c.revoked_at >= since
                    )
                )
            ).all()
        fresh = [serial for serial, _ in rows if serial not in self._seen]
        for serial, at in rows:
            self._seen[serial] = at
        latest = max((at for _, at in rows), default=now)
        self._since = max(self._since or now, min(latest, now))
        horizon = self._since - 2 * WATCH_OVERLAP
        self._seen = {s: at for s, at in self._seen.items() if at >= horizon}
        for serial in fresh:
            self.service.notify(serial)
        return fresh

    async def run(self) -> None:
        while True:
            try:
                await self.poll()
            except (TimeoutError, OSError) as e:
                log.warning("revocation watcher: %s", e)
            except Exception as e:  # noqa: BLE001 - the watcher must outlive DB hiccups
                log.warning("revocation watcher failed: %s", type(e).__name__)
            await asyncio.sleep(self.interval)
