"""Signature activation data: what an authorisation grants, and nothing more.

A SAD is a random bearer token, kept here only as its SHA-256. It is bound
to the owner, the credential, the exact hashes (and, when given, the hash
algorithm), a signature count and the factors that were checked; it lives
`sad_ttl_seconds` and each hash can be signed once.

The unlocked key (still wrapped under the HSM master key; usable only inside
the HSM) stays in this process's memory, never in the database: a restart or
another process simply does not know the SAD, which fails closed.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from cloudsign.clock import Clock, utc_now
from cloudsign.errors import CloudsignError
from hsm_bridge import HashAlgorithm, UnlockedKey

SAD_BYTES: Final = 32
#: An extended transaction may not outlive its first authorisation by more.
MAX_TRANSACTION_LIFETIME: Final = timedelta(hours=1)


class SadError(CloudsignError):
    """Unknown, expired, foreign or exhausted SAD, or a hash it does not cover."""

    code = "invalid_sad"
    status = 400
    title = "Signature activation data refused"


@dataclass
class Authorization:
    id: str
    owner_id: str
    credential_id: str
    certificate_serial: str
    hash_alg: HashAlgorithm | None  # None: CSC v1, where authorize names no algorithm
    hashes: frozenset[bytes]
    num_signatures: int
    factors: tuple[str, ...]
    unlocked: UnlockedKey = field(repr=False)
    created_at: datetime
    expires_at: datetime
    description: str | None = None
    used: set[bytes] = field(default_factory=set)

    @property
    def remaining(self) -> int:
        return self.num_signatures - len(self.used)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class SadStore:
    """In-process registry. All methods are synchronous, so on the event loop
    each check-and-reserve is atomic."""

    def __init__(self, *, clock: Clock = utc_now) -> None:
        self.clock = clock
        self._by_digest: dict[bytes, Authorization] = {}

    def __repr__(self) -> str:
        return f"SadStore({len(self._by_digest)} live)"

    def issue(self, auth: Authorization) -> str:
        self.sweep(self.clock())
        token = secrets.token_urlsafe(SAD_BYTES)
        self._by_digest[_digest(token)] = auth
        return token

    def sweep(self, now: datetime) -> None:
        for key in [k for k, a in self._by_digest.items() if a.expires_at <= now]:
            del self._by_digest[key]

    def _find(
        self, token: object, owner_id: str, credential_id: str, now: datetime
    ) -> Authorization:
        if not isinstance(token, str) or not token:
            raise SadError("SAD is required")
        auth = self._by_digest.get(_digest(token))
        # One message for unknown, expired and foreign: a SAD reveals nothing.
        if (
            auth is None
            or auth.expires_at <= now
            or auth.owner_id != owner_id
            or auth.credential_id != credential_id
        ):
            raise SadError("SAD unknown, expired or not valid for this credential")
        return auth

    def reserve(
        self,
        token: object,
        *,
        owner_id: str,
        credential_id: str,
        hashes: list[bytes],
        hash_alg: HashAlgorithm,
        now: datetime | None = None,
    ) -> Authorization:
        """Check the request against the SAD and mark its hashes used."""
        now = now or self.clock()
        auth = self._find(token, owner_id, credential_id, now)
        if auth.hash_alg is not None and auth.hash_alg.oid != hash_alg.oid:
            raise SadError("hash algorithm differs from the authorised one")
        if len(set(hashes)) != len(hashes):
            raise SadError("the same hash twice in one request")
        foreign = [h for h in hashes if h not in auth.hashes]
        if foreign:
            raise SadError(f"{len(foreign)} hash(es) were not authorised by this SAD")
        reused = [h for h in hashes if h in auth.used]
        if reused:
            raise SadError(f"{len(reused)} hash(es) were already signed under this SAD")
        if len(hashes) > auth.remaining:
            raise SadError("more signatures than authorised")
        if any(len(h) != hash_alg.digest_size for h in hashes):
            raise SadError(f"every hash must be {hash_alg.digest_size} bytes for {hash_alg.name}")
        auth.used.update(hashes)
        return auth

    def revoke_owner(self, owner_id: str) -> int:
        """Every live SAD of the owner dies (a bound phone was revoked)."""
        gone = [k for k, a in self._by_digest.items() if a.owner_id == owner_id]
        for key in gone:
            del self._by_digest[key]
        return len(gone)

    def release(self, auth: Authorization, hashes: list[bytes]) -> None:
        """Give hashes back after a failure before any signature left the HSM."""
        auth.used.difference_update(hashes)

    def extend(
        self, token: object, *, owner_id: str, credential_id: str, ttl: timedelta
    ) -> tuple[str, Authorization]:
        """A fresh SAD for the rest of the same transaction; the old one dies."""
        now = self.clock()
        auth = self._find(token, owner_id, credential_id, now)
        assert isinstance(token, str)
        del self._by_digest[_digest(token)]
        auth.expires_at = min(now + ttl, auth.created_at + MAX_TRANSACTION_LIFETIME)
        new = secrets.token_urlsafe(SAD_BYTES)
        self._by_digest[_digest(new)] = auth
        return new, auth


def new_authorization_id() -> str:
    return str(uuid.uuid4())
