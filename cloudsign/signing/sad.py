"""Signature activation data: what an authorisation grants, and nothing more,
shared by every process of the service.

A SAD is a random bearer token that only the client holds; the database
keeps its SHA-256 (`sads.digest`) with what it grants: the owner, the
credential, the exact hashes (and, when given, the hash algorithm), the
factors that were checked, and an expiry `sad_ttl_seconds` away. Each hash
can be signed once (`sad_hashes`: free, reserved while its signature is
made, signed). Any process can continue a SAD another issued.

The owner key stays in the HSM, bound to the SAD (hsm_bridge.activation):
its record holds the key sealed under a per-SAD HSM key *and* the SAD
itself, so a database read plus the HSM PIN signs nothing, and no process
holds the key between requests. The SAD's HSM key dies with the SAD: when
its last hash is signed, when the owner's SADs are revoked, when it is
extended (a new key for the new SAD), and by the sweep after expiry.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cloudsign.clock import Clock, utc_now
from cloudsign.errors import CloudsignError
from cloudsign.signing.tables import sad_hashes, sads
from cloudsign.storage import Database
from hsm_bridge import (
    HashAlgorithm,
    KeyAlgorithm,
    KeyBlobError,
    KeyCustody,
    SadKey,
    SignatureScheme,
    UnlockedKey,
    hash_algorithm,
)

SAD_BYTES: Final = 32
#: An extended transaction may not outlive its first authorisation by more.
MAX_TRANSACTION_LIFETIME: Final = timedelta(hours=1)
FREE: Final = "free"
RESERVED: Final = "reserved"
SIGNED: Final = "signed"


#: A CSC credential-scoped OAuth access token (mobile_api.oauth): this
#: prefix and the SAD; `signHash`/`signDoc` take it as their Bearer.
SAD_TOKEN_PREFIX: Final = "csccred."  # noqa: S105 - a prefix, not a secret


class Left(enum.Enum):
    """What a signing request leaves of its SAD (`SadStore.mark_signed`)."""

    USED_UP = "used up"
    IN_FLIGHT = "only other requests' reservations"
    FREE = "hashes still to sign"


class SadError(CloudsignError):
    """Unknown, expired, foreign or exhausted SAD, or a hash it does not cover."""

    code = "invalid_sad"
    status = 400
    title = "Signature activation data refused"


@dataclass(frozen=True)
class Grant:
    """What an authorisation is about to grant, once every factor passed."""

    owner_id: str
    credential_id: str
    certificate_serial: str
    hash_alg: HashAlgorithm | None  # None: CSC v1, where authorize names no algorithm
    hashes: Sequence[bytes]
    factors: tuple[str, ...]
    description: str | None = None


@dataclass(frozen=True)
class Authorization:
    id: str
    owner_id: str
    credential_id: str
    certificate_serial: str
    hash_alg: HashAlgorithm | None
    num_signatures: int
    factors: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    key: SadKey = field(repr=False)
    description: str | None = None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _authorization(row: Any) -> Authorization:
    return Authorization(
        id=row.id,
        owner_id=row.owner_id,
        credential_id=row.credential_id,
        certificate_serial=row.certificate_serial,
        hash_alg=hash_algorithm(row.hash_alg) if row.hash_alg else None,
        num_signatures=row.num_signatures,
        factors=tuple(row.factors.split(",")),
        created_at=row.created_at,
        expires_at=row.expires_at,
        key=SadKey(
            row.id,
            row.credential_id,
            KeyAlgorithm(row.key_algorithm),
            row.key_expiry,
            row.sealed_key,
        ),
        description=row.description,
    )


class SadStore:
    """SADs in the database, their keys in the HSM."""

    def __init__(self, db: Database, custody: KeyCustody, *, clock: Clock = utc_now) -> None:
        self.db = db
        self.custody = custody
        self.clock = clock

    def __repr__(self) -> str:
        return "SadStore()"

    async def issue(
        self, grant: Grant, unlocked: UnlockedKey, ttl: timedelta
    ) -> tuple[str, Authorization]:
        """A new SAD for `grant`; the unlocked key is bound to it in the HSM."""
        now = self.clock()
        sad_id = str(uuid.uuid4())
        token = secrets.token_urlsafe(SAD_BYTES)
        expires_at = now + ttl
        key = await self.custody.bind_to_sad(unlocked, sad_id, token.encode(), expires_at)
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    insert(sads).values(
                        id=sad_id,
                        digest=_digest(token),
                        owner_id=grant.owner_id,
                        credential_id=grant.credential_id,
                        certificate_serial=grant.certificate_serial,
                        hash_alg=grant.hash_alg.name if grant.hash_alg else None,
                        num_signatures=len(grant.hashes),
                        factors=",".join(grant.factors),
                        key_algorithm=key.algorithm.value,
                        sealed_key=key.sealed,
                        key_expiry=key.expires_at,
                        description=grant.description,
                        created_at=now,
                        expires_at=expires_at,
                    )
                )
                await conn.execute(
                    insert(sad_hashes),
                    [{"sad_id": sad_id, "hash": h, "state": FREE} for h in grant.hashes],
                )
        except BaseException:
            await self.custody.destroy_sad_key(sad_id, key.expires_at)
            raise
        return token, await self._by_id(sad_id)

    async def _by_id(self, sad_id: str) -> Authorization:
        async with self.db.read() as conn:
            row = (await conn.execute(select(sads).where(sads.c.id == sad_id))).one()
        return _authorization(row)

    async def _find(
        self,
        conn: AsyncConnection,
        token: object,
        owner_id: str | None,
        credential_id: str | None,
    ) -> Authorization:
        """The live SAD `token`, of this owner and credential (None: any)."""
        if not isinstance(token, str) or not token:
            raise SadError("SAD is required")
        row = (await conn.execute(select(sads).where(sads.c.digest == _digest(token)))).first()
        # One message for unknown, expired and foreign: a SAD reveals nothing.
        if (
            row is None
            or row.expires_at <= self.clock()
            or owner_id not in (None, row.owner_id)
            or credential_id not in (None, row.credential_id)
        ):
            raise SadError("SAD unknown, expired or not valid for this credential")
        return _authorization(row)

    async def find(self, token: object, *, owner_id: str, credential_id: str) -> Authorization:
        async with self.db.read() as conn:
            return await self._find(conn, token, owner_id, credential_id)

    async def holder(self, token: object) -> Authorization:
        """The live SAD `token`, whoever it belongs to: a CSC client holding a
        credential-scoped OAuth access token (mobile_api.oauth) presents the
        SAD as its only credential, and signs for the SAD's owner."""
        async with self.db.read() as conn:
            return await self._find(conn, token, None, None)

    async def reserve(
        self,
        token: object,
        *,
        owner_id: str,
        credential_id: str,
        hashes: list[bytes],
        hash_alg: HashAlgorithm,
    ) -> Authorization:
        """Check the request against the SAD and reserve its hashes, in any
        process: a hash can be reserved once."""
        if len(set(hashes)) != len(hashes):
            raise SadError("the same hash twice in one request")
        async with self.db.transaction() as conn:
            auth = await self._find(conn, token, owner_id, credential_id)
            if auth.hash_alg is not None and auth.hash_alg.oid != hash_alg.oid:
                raise SadError("hash algorithm differs from the authorised one")
            if any(len(h) != hash_alg.digest_size for h in hashes):
                raise SadError(
                    f"every hash must be {hash_alg.digest_size} bytes for {hash_alg.name}"
                )
            taken = await conn.execute(
                update(sad_hashes)
                .where(
                    sad_hashes.c.sad_id == auth.id,
                    sad_hashes.c.hash.in_(hashes),
                    sad_hashes.c.state == FREE,
                )
                .values(state=RESERVED)
            )
            if taken.rowcount != len(hashes):
                # Say why; raising rolls the partial reservation back.
                rows = await conn.execute(
                    select(sad_hashes.c.hash).where(
                        sad_hashes.c.sad_id == auth.id, sad_hashes.c.hash.in_(hashes)
                    )
                )
                known = {bytes(h) for (h,) in rows}
                foreign = sum(1 for h in hashes if h not in known)
                if foreign:
                    raise SadError(f"{foreign} hash(es) were not authorised by this SAD")
                raise SadError(
                    f"{len(hashes) - taken.rowcount} hash(es) were already signed under this SAD"
                )
        return auth

    async def sign(
        self,
        auth: Authorization,
        token: object,
        digests: Sequence[bytes],
        hash_alg: HashAlgorithm,
        scheme: SignatureScheme,
    ) -> list[bytes]:
        """Sign reserved digests with the key bound to the SAD."""
        assert isinstance(token, str)
        try:
            return await self.custody.sign_with_sad(
                auth.key, token.encode(), digests, hash_alg, scheme
            )
        except KeyBlobError as e:
            # Swept or revoked between the reservation and the HSM call.
            raise SadError("SAD unknown, expired or not valid for this credential") from e

    @staticmethod
    async def mark_signed(conn: AsyncConnection, auth: Authorization, hashes: list[bytes]) -> Left:
        """In the transaction that records the signatures. When no hash of
        the SAD is left, its record goes in the same transaction and the
        caller destroys its HSM key once that commits (`USED_UP`); when the
        only ones left are another request's reservations, the caller asks
        `finish_if_used` after its commit (`IN_FLIGHT`): whichever commits
        last then sees every hash signed."""
        counts: dict[str, int] = {
            state: n
            for state, n in await conn.execute(
                select(sad_hashes.c.state, func.count())
                .where(sad_hashes.c.sad_id == auth.id)
                .group_by(sad_hashes.c.state)
            )
        }
        if not counts.get(FREE) and counts.get(RESERVED) == len(hashes):
            # The reserved ones are this request's: nothing else is left.
            await SadStore._delete(conn, [auth.id])
            return Left.USED_UP
        await conn.execute(
            update(sad_hashes)
            .where(sad_hashes.c.sad_id == auth.id, sad_hashes.c.hash.in_(hashes))
            .values(state=SIGNED)
        )
        return Left.FREE if counts.get(FREE) else Left.IN_FLIGHT

    async def finished(self, auth: Authorization, left: Left) -> None:
        """After the commit of `mark_signed`."""
        if left is Left.USED_UP:
            await self.custody.destroy_sad_key(auth.id, auth.key.expires_at)
        elif left is Left.IN_FLIGHT:
            await self.finish_if_used(auth)

    async def finish_if_used(self, auth: Authorization) -> bool:
        """Once every hash is signed the SAD and its HSM key go."""
        async with self.db.transaction() as conn:
            left = (
                await conn.execute(
                    select(func.count())
                    .select_from(sad_hashes)
                    .where(sad_hashes.c.sad_id == auth.id, sad_hashes.c.state != SIGNED)
                )
            ).scalar_one()
            if left:
                return False
            await self._delete(conn, [auth.id])
        await self.custody.destroy_sad_key(auth.id, auth.key.expires_at)
        return True

    async def release(self, auth: Authorization, hashes: list[bytes]) -> None:
        """Give hashes back after a failure before any signature was recorded."""
        async with self.db.transaction() as conn:
            await conn.execute(
                update(sad_hashes)
                .where(
                    sad_hashes.c.sad_id == auth.id,
                    sad_hashes.c.hash.in_(hashes),
                    sad_hashes.c.state == RESERVED,
                )
                .values(state=FREE)
            )

    async def extend(
        self, token: object, *, owner_id: str, credential_id: str, ttl: timedelta
    ) -> tuple[str, Authorization]:
        """A fresh SAD for the rest of the same transaction; the old one dies."""
        auth = await self.find(token, owner_id=owner_id, credential_id=credential_id)
        assert isinstance(token, str)
        now = self.clock()
        expires_at = min(now + ttl, auth.created_at + MAX_TRANSACTION_LIFETIME)
        new = secrets.token_urlsafe(SAD_BYTES)
        try:
            key = await self.custody.rebind_sad(auth.key, token.encode(), new.encode(), expires_at)
        except KeyBlobError as e:
            raise SadError("SAD unknown, expired or not valid for this credential") from e
        async with self.db.transaction() as conn:
            moved = await conn.execute(
                update(sads)
                .where(sads.c.id == auth.id, sads.c.digest == _digest(token))
                .values(
                    digest=_digest(new),
                    sealed_key=key.sealed,
                    key_expiry=key.expires_at,
                    expires_at=expires_at,
                )
            )
        if moved.rowcount != 1:  # extended (or revoked) meanwhile by another request
            await self.custody.destroy_sad_key(auth.id, key.expires_at)
            raise SadError("SAD unknown, expired or not valid for this credential")
        await self.custody.destroy_sad_key(auth.id, auth.key.expires_at)
        return new, await self._by_id(auth.id)

    async def revoke_owner(self, owner_id: str) -> int:
        """Every live SAD of the owner dies (a bound phone was revoked)."""
        return await self._drop(sads.c.owner_id == owner_id)

    async def sweep(self) -> int:
        """Expired SADs go, with their HSM keys; so do SAD keys that no record
        names any more (a process killed while issuing one)."""
        now = self.clock()
        gone = await self._drop(sads.c.expires_at <= now)
        await self.custody.sweep_sad_keys(now)
        return gone

    async def _drop(self, condition: Any) -> int:
        async with self.db.transaction() as conn:
            rows = (await conn.execute(select(sads.c.id, sads.c.key_expiry).where(condition))).all()
            await self._delete(conn, [r.id for r in rows])
        for r in rows:
            await self.custody.destroy_sad_key(r.id, r.key_expiry)
        return len(rows)

    @staticmethod
    async def _delete(conn: AsyncConnection, ids: list[str]) -> None:
        if ids:
            await conn.execute(delete(sad_hashes).where(sad_hashes.c.sad_id.in_(ids)))
            await conn.execute(delete(sads).where(sads.c.id.in_(ids)))
