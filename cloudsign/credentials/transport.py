"""One-time HSM transport keys, and the wire forms of a key password
wrapped for one.

The device never sends the password: it derives K_pw with Argon2id, does
ECDH with a one-time P-256 key the HSM made for this request, and sends K_pw
wrapped under the derived key (docs/wire-format.md has the whole format;
`hsm_bridge.transport` the HSM's side of it). It arrives in one of two forms,
both parsed here and nowhere else:

- JSON (`password_key`): `{"transport_key_id", "device_public_key",
  "wrapped_key"}`, the point and the wrap in base64;
- the CSC `PIN`: `CSPW1.<transport key id>.<point b64url>.<wrap b64url>`.

A key is marked used in the database before the HSM sees the message, so a
replay or a race loses before any HSM work; the HSM destroys it on first use
whatever the outcome.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import and_, or_, select, update

from cloudsign.clock import Clock
from cloudsign.credentials.tables import transport_keys
from cloudsign.errors import ConflictError, ValidationError
from cloudsign.storage import Database
from cloudsign.web.inputs import Fields, check_text, decode_b64
from hsm_bridge import InvalidTransportMessageError, KeyCustody, TransportMessage

PURPOSES: Final = frozenset({"credential.create", "authorize", "login"})
#: The JSON form's fields.
TRANSPORT_FIELDS: Final = frozenset({"transport_key_id", "device_public_key", "wrapped_key"})
PIN_PREFIX: Final = "CSPW1"
MAX_TRANSPORT_KEY_ID: Final = 64
#: A P-256 point is 65 bytes and AES-KW of K_pw 40; anything longer is refused
#: before decoding.
MAX_TRANSPORT_PART_BYTES: Final = 128
#: Used transport-key rows are kept this long (replays are refused by them).
USED_ROW_RETENTION: Final = timedelta(days=1)
KEY_AGREEMENT: Final = "ECDH-P256"
KDF: Final = "AES-256-ECB(Z, SHA-256('cloudsign/transport/v1' 0 id 0 point))"
WRAP: Final = "AES-KW (RFC 3394)"


def parse_transport_message(body: Fields) -> TransportMessage:
    """The JSON form (`password_key` object)."""
    body.only(TRANSPORT_FIELDS)
    key_id = body.text("transport_key_id", max_len=MAX_TRANSPORT_KEY_ID)
    try:
        return TransportMessage(
            key_id,
            body.b64("device_public_key", max_bytes=MAX_TRANSPORT_PART_BYTES),
            body.b64("wrapped_key", max_bytes=MAX_TRANSPORT_PART_BYTES),
        )
    except InvalidTransportMessageError as e:
        raise ValidationError(e.message, field="password_key") from e


def parse_transport_pin(pin: object) -> TransportMessage:
    """The CSC `PIN` form. A plain password is refused: it must never reach
    the server."""
    if not isinstance(pin, str) or not pin:
        raise ValidationError("PIN is required", field="PIN")
    parts = pin.split(".")
    if len(parts) != 4 or parts[0] != PIN_PREFIX:
        raise ValidationError(
            "PIN must carry the key password wrapped for a transport key (CSPW1.…), "
            "never the password itself",
            field="PIN",
        )
    key_id = check_text(parts[1], "PIN", max_len=MAX_TRANSPORT_KEY_ID)
    try:
        return TransportMessage(
            key_id,
            decode_b64(parts[2], "PIN", max_bytes=MAX_TRANSPORT_PART_BYTES, urlsafe=True),
            decode_b64(parts[3], "PIN", max_bytes=MAX_TRANSPORT_PART_BYTES, urlsafe=True),
        )
    except InvalidTransportMessageError as e:
        raise ValidationError(e.message, field="PIN") from e


@dataclass(frozen=True)
class TransportKey:
    """A one-time HSM key handed to the device (its public half)."""

    id: str
    public_key: bytes  # DER SubjectPublicKeyInfo
    expires_at: datetime


class TransportKeys:
    def __init__(self, db: Database, custody: KeyCustody, *, ttl: timedelta, clock: Clock) -> None:
        self.db = db
        self.custody = custody
        self.ttl = ttl
        self.clock = clock

    async def issue(self, owner_id: str | None, purpose: str) -> TransportKey:
        """A one-time key for `owner_id` (None: a login for an IIN no account
        has, which must look like any other)."""
        if purpose not in PURPOSES:
            raise ValidationError("unknown transport key purpose", field="purpose")
        key_id = str(uuid.uuid4())
        spki = await self.custody.create_transport_key(key_id)
        now = self.clock()
        expires = now + self.ttl
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    transport_keys.insert().values(
                        id=key_id,
                        owner_id=owner_id,
                        purpose=purpose,
                        public_key=spki,
                        created_at=now,
                        expires_at=expires,
                    )
                )
        except BaseException:
            await self.custody.destroy_transport_key(key_id)
            raise
        return TransportKey(key_id, spki, expires)

    async def consume(self, owner_id: str, purpose: str, key_id: str) -> None:
        """Mark the key used, once; a replay or a race loses here, before the HSM."""
        now = self.clock()
        async with self.db.transaction() as conn:
            result = await conn.execute(
                update(transport_keys)
                .where(
                    transport_keys.c.id == key_id,
                    transport_keys.c.owner_id == owner_id,
                    transport_keys.c.purpose == purpose,
                    transport_keys.c.used_at.is_(None),
                    transport_keys.c.expires_at > now,
                )
                .values(used_at=now)
            )
        if result.rowcount != 1:
            raise ConflictError("transport key unknown, already used or expired")

    async def sweep(self) -> int:
        """Destroy expired, unused transport keys in the HSM; forget old rows."""
        now = self.clock()
        async with self.db.read() as conn:
            expired = [
                r[0]
                for r in (
                    await conn.execute(
                        select(transport_keys.c.id).where(
                            transport_keys.c.expires_at <= now, transport_keys.c.used_at.is_(None)
                        )
                    )
                ).all()
            ]
        for key_id in expired:
            await self.custody.destroy_transport_key(key_id)
        async with self.db.transaction() as conn:
            await conn.execute(
                transport_keys.delete().where(
                    or_(
                        transport_keys.c.id.in_(expired),
                        and_(
                            transport_keys.c.used_at.is_not(None),
                            transport_keys.c.used_at < now - USED_ROW_RETENTION,
                        ),
                    )
                )
            )
        return len(expired)
