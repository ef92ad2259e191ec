"""Enrolment: owner accounts, consent, TOTP, one-time transport keys and
credential (HSM key + certificate) creation and deletion.

Every multi-step change commits in one transaction together with its audit
events; HSM work happens before that transaction and leaves nothing
persistent in the HSM, so a failure at any step leaves nothing half-created.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pyotp
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cloudsign.ca.authority import CertificateAuthority
from cloudsign.ca.identity import Identity
from cloudsign.ca.x509 import serial_hex, to_pem
from cloudsign.consents import REQUIRED_KINDS, current_text
from cloudsign.errors import (
    ConflictError,
    FactorError,
    NotFoundError,
    PreconditionError,
    UnauthorizedError,
    ValidationError,
)
from cloudsign.events import EventType, append_event
from cloudsign.settings import Settings
from cloudsign.storage import Database
from cloudsign.storage.schema import (
    access_tokens,
    certificates,
    consents,
    credentials,
    owners,
    transport_keys,
)
from cloudsign.web.inputs import Fields, check_text, decode_b64
from hsm_bridge import (
    OWNER_KEY_ALGORITHMS,
    HsmBridge,
    HsmError,
    InvalidTransportMessageError,
    KeyAlgorithm,
    TransportKeyError,
    TransportMessage,
    UnsupportedAlgorithmError,
)

TOTP_SEED_BYTES: Final = 20
TRANSPORT_PURPOSES: Final = frozenset({"credential.create", "authorize"})
#: ASCII digits only: `str.isdigit()` also takes '²' and '١', which
#: `compare_digest` then refuses with a TypeError.
OTP_FORMAT: Final = re.compile(r"[0-9]{6}")


def _now() -> datetime:
    return datetime.now(UTC)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


#: The wire form of a wrapped key password (mobile_api/device.py writes it).
TRANSPORT_FIELDS: Final = frozenset({"transport_key_id", "device_public_key", "wrapped_key"})
MAX_TRANSPORT_KEY_ID: Final = 64
#: A P-256 point is 65 bytes and AES-KW of K_pw 40; anything longer is refused
#: before decoding.
MAX_TRANSPORT_PART_BYTES: Final = 128


def parse_transport_message(body: Fields) -> TransportMessage:
    """The device's wrapped K_pw, as JSON: transport_key_id, device_public_key, wrapped_key."""
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
    """The CSC `PIN` field: `CSPW1.<transport key id>.<b64url point>.<b64url wrap>`.
    A plain password is refused: it must never reach the server."""
    if not isinstance(pin, str) or not pin:
        raise ValidationError("PIN is required", field="PIN")
    parts = pin.split(".")
    if len(parts) != 4 or parts[0] != "CSPW1":
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
class Owner:
    id: str
    kind: str
    iin: str
    full_name: str
    email: str
    totp_confirmed: bool
    face_enrolled: bool

    @classmethod
    def from_row(cls, row: RowMapping) -> Owner:
        return cls(
            id=row["id"],
            kind=row["kind"],
            iin=row["iin"],
            full_name=row["full_name"],
            email=row["email"],
            totp_confirmed=row["totp_confirmed_at"] is not None,
            face_enrolled=row["face_template_sealed"] is not None,
        )


class EnrolmentService:
    def __init__(
        self, db: Database, bridge: HsmBridge, ca: CertificateAuthority, settings: Settings
    ) -> None:
        self.db = db
        self.bridge = bridge
        self.ca = ca
        self.settings = settings

    # -- accounts and access tokens -----------------------------------------

    async def create_owner(self, identity: Identity) -> tuple[str, str]:
        owner_id = str(uuid.uuid4())
        s = self.settings
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    owners.insert().values(
                        id=owner_id,
                        kind=identity.kind,
                        iin=identity.iin,
                        bin=identity.bin,
                        surname=identity.surname,
                        given_name=identity.given_name,
                        full_name=identity.full_name,
                        email=identity.email,
                        organisation=identity.organisation,
                        created_at=_now(),
                        argon2_salt=secrets.token_bytes(16),
                        argon2_time_cost=s.argon2_time_cost,
                        argon2_memory_kib=s.argon2_memory_kib,
                        argon2_parallelism=s.argon2_parallelism,
                    )
                )
                token = await self._issue_token(conn, owner_id)
        except IntegrityError as e:
            raise ConflictError("an account with this identity already exists") from e
        return owner_id, token

    async def _issue_token(self, conn: AsyncConnection, owner_id: str) -> str:
        token = secrets.token_urlsafe(32)
        now = _now()
        await conn.execute(
            access_tokens.insert().values(
                token_hash=hash_token(token),
                owner_id=owner_id,
                created_at=now,
                expires_at=now + timedelta(seconds=self.settings.access_token_ttl_seconds),
            )
        )
        return token

    async def authenticate(self, token: str) -> Owner:
        async with self.db.read() as conn:
            row = (
                (
                    await conn.execute(
                        select(owners)
                        .join(access_tokens, access_tokens.c.owner_id == owners.c.id)
                        .where(
                            access_tokens.c.token_hash == hash_token(token),
                            access_tokens.c.revoked.is_(False),
                            access_tokens.c.expires_at > _now(),
                            owners.c.status == "active",
                        )
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise UnauthorizedError("access token unknown or expired")
        return Owner.from_row(row)

    async def login(self, iin: str, otp: str) -> tuple[str, str]:
        """A new access token for an enrolled owner: IIN plus a fresh TOTP code."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(owners.c.id).where(
                        owners.c.iin == iin,
                        owners.c.kind == "person",
                        owners.c.status == "active",
                        owners.c.totp_confirmed_at.is_not(None),
                    )
                )
            ).first()
        if row is None:
            raise UnauthorizedError("unknown IIN or OTP")
        owner_id: str = row[0]
        try:
            await self.verify_otp(owner_id, otp)
        except FactorError as e:
            raise UnauthorizedError("unknown IIN or OTP") from e
        async with self.db.transaction() as conn:
            return owner_id, await self._issue_token(conn, owner_id)

    async def profile(self, owner: Owner) -> dict[str, Any]:
        async with self.db.read() as conn:
            accepted = (
                await conn.execute(
                    select(consents.c.kind, consents.c.text_version, consents.c.accepted_at).where(
                        consents.c.owner_id == owner.id
                    )
                )
            ).all()
        return {
            "owner_id": owner.id,
            "kind": owner.kind,
            "iin": owner.iin,
            "full_name": owner.full_name,
            "email": owner.email,
            "totp_confirmed": owner.totp_confirmed,
            "face_enrolled": owner.face_enrolled,
            "consents": [
                {"kind": k, "version": v, "accepted_at": at.isoformat()} for k, v, at in accepted
            ],
        }

    # -- consent ------------------------------------------------------------

    async def record_consent(self, owner: Owner, kind: str, version: str, sha256: str) -> None:
        text = current_text(kind)
        if text is None:
            raise ValidationError(f"unknown consent kind {kind!r}", field="kind")
        if version != text.version or sha256 != text.sha256:
            raise ConflictError("the consent text shown is not the current version")
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    consents.insert().values(
                        id=str(uuid.uuid4()),
                        owner_id=owner.id,
                        kind=kind,
                        text_version=version,
                        text_sha256=sha256,
                        accepted_at=_now(),
                    )
                )
                await append_event(
                    conn,
                    EventType.CONSENT_RECORD,
                    owner_id=owner.id,
                    data={"kind": kind, "version": version, "text_sha256": sha256},
                )
        except IntegrityError:
            return  # already recorded: accepting twice changes nothing

    async def _missing_consents(self, conn: AsyncConnection, owner_id: str) -> list[str]:
        rows = (
            await conn.execute(
                select(consents.c.kind, consents.c.text_version).where(
                    consents.c.owner_id == owner_id
                )
            )
        ).all()
        have = {(k, v) for k, v in rows}
        missing = []
        for kind in REQUIRED_KINDS:
            text = current_text(kind)
            if text is None or (kind, text.version) not in have:
                missing.append(kind)
        return missing

    # -- TOTP ---------------------------------------------------------------

    async def begin_totp(self, owner: Owner) -> str:
        """A fresh seed, sealed by the HSM; returns the otpauth:// URI once.
        Refused once confirmed: a second factor is not silently replaced."""
        if owner.totp_confirmed:
            raise ConflictError("TOTP is already set up for this account")
        seed = base64.b32encode(secrets.token_bytes(TOTP_SEED_BYTES)).decode()
        sealed = await self.bridge.seal("totp", seed.encode(), owner.id.encode())
        async with self.db.transaction() as conn:
            await conn.execute(
                update(owners)
                .where(owners.c.id == owner.id, owners.c.totp_confirmed_at.is_(None))
                .values(totp_sealed=sealed, totp_last_step=None)
            )
        label = owner.iin
        totp = pyotp.TOTP(seed, interval=self.settings.totp_period_seconds)
        return totp.provisioning_uri(name=label, issuer_name=self.settings.totp_issuer)

    async def confirm_totp(self, owner: Owner, otp: str | None) -> None:
        await self.verify_otp(owner.id, otp, require_confirmed=False)
        async with self.db.transaction() as conn:
            await conn.execute(
                update(owners).where(owners.c.id == owner.id).values(totp_confirmed_at=_now())
            )

    async def verify_otp(
        self, owner_id: str, otp: object, *, require_confirmed: bool = True
    ) -> None:
        """Accept a TOTP code once: the matched time step must be newer than
        the last accepted one, recorded with a compare-and-set."""
        if not isinstance(otp, str) or not OTP_FORMAT.fullmatch(otp):
            raise FactorError("OTP must be 6 digits")
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        owners.c.totp_sealed, owners.c.totp_confirmed_at, owners.c.totp_last_step
                    ).where(owners.c.id == owner_id)
                )
            ).first()
        if row is None or row[0] is None:
            raise PreconditionError("TOTP is not set up")
        if require_confirmed and row[1] is None:
            raise PreconditionError("TOTP is not confirmed")
        seed = (await self.bridge.unseal("totp", row[0], owner_id.encode())).decode()
        period = self.settings.totp_period_seconds
        totp = pyotp.TOTP(seed, interval=period)
        now = _now()
        current = totp.timecode(now)
        window = self.settings.totp_valid_window
        matched = next(
            (
                current + off
                for off in range(-window, window + 1)
                if secrets.compare_digest(totp.at(now + timedelta(seconds=off * period)), otp)
            ),
            None,
        )
        if matched is None:
            raise FactorError("OTP is wrong")
        async with self.db.transaction() as conn:
            result = await conn.execute(
                update(owners)
                .where(
                    owners.c.id == owner_id,
                    or_(owners.c.totp_last_step.is_(None), owners.c.totp_last_step < matched),
                )
                .values(totp_last_step=matched)
            )
        if result.rowcount != 1:
            raise FactorError("OTP was already used")

    # -- key password parameters and transport keys ---------------------------

    async def key_params(self, owner: Owner) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        owners.c.argon2_salt,
                        owners.c.argon2_time_cost,
                        owners.c.argon2_memory_kib,
                        owners.c.argon2_parallelism,
                    ).where(owners.c.id == owner.id)
                )
            ).one()
        return {
            "algorithm": "argon2id",
            "salt": base64.b64encode(row[0]).decode(),
            "time_cost": row[1],
            "memory_kib": row[2],
            "parallelism": row[3],
            "hash_len": 32,
        }

    async def new_transport_key(self, owner: Owner, purpose: str) -> dict[str, Any]:
        if purpose not in TRANSPORT_PURPOSES:
            raise ValidationError(f"unknown purpose {purpose!r}", field="purpose")
        key_id = str(uuid.uuid4())
        spki = await self.bridge.create_transport_key(key_id)
        now = _now()
        expires = now + timedelta(seconds=self.settings.transport_key_ttl_seconds)
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    transport_keys.insert().values(
                        id=key_id,
                        owner_id=owner.id,
                        purpose=purpose,
                        public_key=spki,
                        created_at=now,
                        expires_at=expires,
                    )
                )
        except BaseException:
            await self.bridge.destroy_transport_key(key_id)
            raise
        return {
            "transport_key_id": key_id,
            "public_key": base64.b64encode(spki).decode(),
            "expires_at": expires.isoformat(),
            "key_agreement": "ECDH-P256",
            "kdf": "AES-256-ECB(Z, SHA-256('cloudsign/transport/v1' 0 id 0 point))",
            "wrap": "AES-KW (RFC 3394)",
        }

    async def consume_transport_key(self, owner_id: str, purpose: str, key_id: str) -> None:
        """Mark the key used, once; a replay or a race loses here, before the HSM."""
        async with self.db.transaction() as conn:
            result = await conn.execute(
                update(transport_keys)
                .where(
                    transport_keys.c.id == key_id,
                    transport_keys.c.owner_id == owner_id,
                    transport_keys.c.purpose == purpose,
                    transport_keys.c.used_at.is_(None),
                    transport_keys.c.expires_at > _now(),
                )
                .values(used_at=_now())
            )
        if result.rowcount != 1:
            raise ConflictError("transport key unknown, already used or expired")

    async def sweep_transport_keys(self) -> int:
        """Destroy expired, unused transport keys in the HSM; forget old rows."""
        now = _now()
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
            await self.bridge.destroy_transport_key(key_id)
        async with self.db.transaction() as conn:
            await conn.execute(
                transport_keys.delete().where(
                    or_(
                        transport_keys.c.id.in_(expired),
                        and_(
                            transport_keys.c.used_at.is_not(None),
                            transport_keys.c.used_at < now - timedelta(days=1),
                        ),
                    )
                )
            )
        return len(expired)

    # -- credentials ----------------------------------------------------------

    async def create_credential(
        self, owner: Owner, algorithm_name: object, message: TransportMessage, otp: object
    ) -> dict[str, Any]:
        if not isinstance(algorithm_name, str):
            raise ValidationError("algorithm is required", field="algorithm")
        try:
            algorithm = KeyAlgorithm.parse(algorithm_name)
        except UnsupportedAlgorithmError as e:
            raise ValidationError(e.message, field="algorithm") from e
        if algorithm not in OWNER_KEY_ALGORITHMS:
            raise ValidationError(
                f"{algorithm.value} is not offered for owner keys", field="algorithm"
            )
        async with self.db.read() as conn:
            missing = await self._missing_consents(conn, owner.id)
            active = (
                await conn.execute(
                    select(func.count()).where(
                        credentials.c.owner_id == owner.id, credentials.c.status == "active"
                    )
                )
            ).scalar_one()
        if missing:
            raise PreconditionError(f"consent required first: {', '.join(missing)}")
        if not owner.totp_confirmed:
            raise PreconditionError("TOTP must be set up and confirmed first")
        if self.settings.require_face and not owner.face_enrolled:
            raise PreconditionError("the face must be enrolled first")
        if active:
            raise ConflictError("this owner already has an active credential")
        await self.verify_otp(owner.id, otp)
        await self.consume_transport_key(owner.id, "credential.create", message.transport_key_id)
        credential_id = str(uuid.uuid4())
        try:
            created = await self.bridge.create_owner_key(message, algorithm, credential_id)
        except TransportKeyError as e:
            raise FactorError("the wrapped key password could not be opened by the HSM") from e
        identity = await self._identity(owner.id)
        cert = await self.ca.issue(identity, created.public_key_info)
        serial = serial_hex(cert.serial_number)
        now = _now()
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    credentials.insert().values(
                        id=credential_id,
                        owner_id=owner.id,
                        status="active",
                        key_algorithm=algorithm.value,
                        public_key=created.public_key_info,
                        key_blob=created.blob,
                        certificate_serial=serial,
                        created_at=now,
                    )
                )
                await conn.execute(
                    certificates.insert().values(
                        serial=serial,
                        owner_id=owner.id,
                        credential_id=credential_id,
                        subject=cert.subject.human_friendly,
                        issuer=cert.issuer.human_friendly,
                        not_before=cert.not_valid_before,
                        not_after=cert.not_valid_after,
                        der=cert.dump(),
                        status="good",
                        issued_at=now,
                    )
                )
                await append_event(
                    conn,
                    EventType.KEY_CREATE,
                    owner_id=owner.id,
                    credential_id=credential_id,
                    data={"algorithm": algorithm.value},
                    at=now,
                )
                await append_event(
                    conn,
                    EventType.CERT_ISSUE,
                    owner_id=owner.id,
                    credential_id=credential_id,
                    data={"serial": serial},
                    at=now,
                )
        except IntegrityError as e:
            # The racing request won; this key existed only in HSM session memory.
            raise ConflictError("this owner already has an active credential") from e
        return {
            "credential_id": credential_id,
            "algorithm": algorithm.value,
            "certificate": to_pem(cert),
            "certificate_serial": serial,
            "chain": [to_pem(c) for c in self.ca.chain],
        }

    async def _identity(self, owner_id: str) -> Identity:
        async with self.db.read() as conn:
            row = (
                (await conn.execute(select(owners).where(owners.c.id == owner_id))).mappings().one()
            )
        return Identity(
            kind=row["kind"],
            iin=row["iin"],
            surname=row["surname"],
            given_name=row["given_name"],
            email=row["email"],
            bin=row["bin"],
            organisation=row["organisation"],
        )

    async def list_credentials(self, owner: Owner) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = (
                (
                    await conn.execute(
                        select(
                            credentials.c.id,
                            credentials.c.status,
                            credentials.c.key_algorithm,
                            credentials.c.created_at,
                            credentials.c.deleted_at,
                            certificates.c.serial,
                            certificates.c.status.label("certificate_status"),
                            certificates.c.not_after,
                        )
                        .select_from(
                            credentials.outerjoin(
                                certificates, certificates.c.credential_id == credentials.c.id
                            )
                        )
                        .where(credentials.c.owner_id == owner.id)
                        .order_by(credentials.c.created_at)
                    )
                )
                .mappings()
                .all()
            )
        return [
            {
                "credential_id": r["id"],
                "status": r["status"],
                "algorithm": r["key_algorithm"],
                "created_at": r["created_at"].isoformat(),
                "deleted_at": r["deleted_at"].isoformat() if r["deleted_at"] else None,
                "certificate_serial": r["serial"],
                "certificate_status": r["certificate_status"],
                "certificate_not_after": r["not_after"].isoformat() if r["not_after"] else None,
            }
            for r in rows
        ]

    async def delete_credential(self, owner: Owner, credential_id: str, otp: object) -> None:
        """Destroy the key (the blob is its only stored form) and revoke its
        certificate. No recovery: a new key means a new certificate."""
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(credentials.c.certificate_serial).where(
                        credentials.c.id == credential_id,
                        credentials.c.owner_id == owner.id,
                        credentials.c.status == "active",
                    )
                )
            ).first()
        if row is None:
            raise NotFoundError("no active credential with this id")
        await self.verify_otp(owner.id, otp)
        async with self.db.transaction() as conn:
            if not await self._destroy_credential(conn, owner.id, credential_id, row[0], _now()):
                raise NotFoundError("no active credential with this id")

    async def _destroy_credential(
        self, conn: AsyncConnection, owner_id: str, credential_id: str, serial: str, now: datetime
    ) -> bool:
        """Inside the caller's transaction: wipe the blob, revoke the
        certificate, log both. False if the credential was not active."""
        result = await conn.execute(
            update(credentials)
            .where(credentials.c.id == credential_id, credentials.c.status == "active")
            .values(status="deleted", key_blob=None, deleted_at=now)
        )
        if result.rowcount != 1:
            return False
        await conn.execute(
            update(certificates)
            .where(certificates.c.credential_id == credential_id, certificates.c.status == "good")
            .values(status="revoked", revoked_at=now, revocation_reason="cessation_of_operation")
        )
        await append_event(
            conn, EventType.KEY_DESTROY, owner_id=owner_id, credential_id=credential_id, at=now
        )
        await append_event(
            conn,
            EventType.CERT_REVOKE,
            owner_id=owner_id,
            credential_id=credential_id,
            data={"serial": serial, "reason": "cessation_of_operation"},
            at=now,
        )
        return True

    async def delete_account(self, owner: Owner, otp: object) -> None:
        """Withdrawal of consent: the key is destroyed, the certificate
        revoked, the face template and TOTP seed wiped, access tokens
        revoked. The audit trail and the cabinet stay (rules 12 and 14)."""
        await self.verify_otp(owner.id, otp)
        now = _now()
        async with self.db.transaction() as conn:
            active = (
                await conn.execute(
                    select(credentials.c.id, credentials.c.certificate_serial).where(
                        credentials.c.owner_id == owner.id, credentials.c.status == "active"
                    )
                )
            ).all()
            for credential_id, serial in active:
                await self._destroy_credential(conn, owner.id, credential_id, serial, now)
            await conn.execute(
                update(owners)
                .where(owners.c.id == owner.id)
                .values(
                    status="deleted",
                    deleted_at=now,
                    face_template_sealed=None,
                    face_enrolled_at=None,
                    totp_sealed=None,
                )
            )
            await conn.execute(
                update(access_tokens)
                .where(access_tokens.c.owner_id == owner.id)
                .values(revoked=True)
            )
            await append_event(conn, EventType.ACCOUNT_DELETE, owner_id=owner.id, at=now)


__all__ = ["EnrolmentService", "HsmError", "Owner", "parse_transport_message"]
