"""Authorise, then sign.

`authorize` checks every factor (factors.py), which counts failures and
locks the credential; success returns a SAD (sad.py) bound to the exact
hashes.

`sign_hashes` signs exactly the authorised hashes; `sign_document` makes a
CAdES or PAdES signature (cms.py) or an enveloped XAdES one (xades.py) over a
document whose hash was authorised.
Each signature's `key.use` event and cabinet row commit in one transaction
before the signature is returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from sqlalchemy import insert

from cloudsign.accounts import DeviceProof, Possession
from cloudsign.ca import CertificateAuthority
from cloudsign.clock import Clock
from cloudsign.credentials import Credential, CredentialService
from cloudsign.errors import ConflictError, ValidationError
from cloudsign.events import EventType, NewEvent, append_events
from cloudsign.settings import SigningSettings
from cloudsign.signing.algorithms import scheme_for
from cloudsign.signing.cms import (
    CADES_LEVELS,
    LEVELS,
    DocumentWorker,
    HsmOwnerSigner,
    LevelServices,
    cades_detached,
    pades,
)
from cloudsign.signing.factors import FactorCheck
from cloudsign.signing.sad import Authorization, Grant, Left, SadStore
from cloudsign.signing.tables import signed_documents
from cloudsign.signing.xades import XADES_LEVELS, xades_enveloped
from cloudsign.storage import Database
from hsm_bridge import (
    HashAlgorithm,
    KeyCustody,
    SignatureScheme,
    TransportMessage,
    UnlockedKey,
    hash_algorithm,
)

#: The factors of every authorisation (SCAL2): the auth expression names them.
#: App users present a bound device's assertion in place of the code.
FACTORS: Final = ("face", "otp", "password")
DEVICE_FACTORS: Final = ("face", "device", "password")
AUTH_EXPRESSION: Final = "FACE AND OTP AND PIN"
#: Relying parties must find the signatures at least this long after expiry (rule 12).
RETENTION_AFTER_EXPIRY: Final = timedelta(days=365)
SIGNATURE_FORMATS: Final = ("cades", "pades", "xades")
#: The baseline levels each format is offered at (cms.py, xades.py).
FORMAT_LEVELS: Final = {
    "cades": CADES_LEVELS,
    "pades": LEVELS,
    "xades": XADES_LEVELS,
}
#: Hashes per HSM call in a batch: the cabinet rows of one slice are written
#: while the HSM signs the next.
SIGN_CHUNK: Final = 200


@dataclass(frozen=True)
class AuthorizeRequest:
    """What an authorisation asks for, and the factors that back it."""

    credential_id: str
    hashes: list[bytes]
    hash_alg: HashAlgorithm | None  # None: CSC v1, where authorize names no algorithm
    num_signatures: int | None
    password_key: TransportMessage | None
    otp: Possession | None
    face_challenge_id: str | None
    description: str | None = None

    def __repr__(self) -> str:
        return f"AuthorizeRequest(credential_id={self.credential_id!r}, {len(self.hashes)} hashes)"


@dataclass(frozen=True)
class DocumentRequest:
    credential_id: str
    sad: str | None
    signature_format: str
    level: str
    document: bytes | None
    document_hash: bytes | None
    name: str | None

    def __repr__(self) -> str:
        return f"DocumentRequest(credential_id={self.credential_id!r}, {self.signature_format})"


@dataclass(frozen=True)
class ReservedDocument:
    """A document signature's reservation under its SAD
    (`SigningService.reserve_document`)."""

    cred: Credential
    auth: Authorization
    sign_one: Callable[[bytes, HashAlgorithm, SignatureScheme], Awaitable[bytes]]
    signer: HsmOwnerSigner
    services: LevelServices


class SigningService:
    def __init__(
        self,
        db: Database,
        custody: KeyCustody,
        ca: CertificateAuthority,
        credentials: CredentialService,
        factors: FactorCheck,
        documents: DocumentWorker,
        settings: SigningSettings,
        *,
        clock: Clock,
    ) -> None:
        self.db = db
        self.custody = custody
        self.ca = ca
        self.credentials = credentials
        self.factors = factors
        self.documents = documents
        self.settings = settings
        self.clock = clock
        self.sads = SadStore(db, custody, clock=clock)

    # -- authorisation ----------------------------------------------------------

    async def authorize(self, owner_id: str, req: AuthorizeRequest) -> tuple[str, Authorization]:
        cred = await self.credentials.active(owner_id, req.credential_id)
        _check_good(cred)
        hashes = req.hashes
        self.check_hashes(hashes, req.hash_alg)
        if req.num_signatures is not None and req.num_signatures != len(hashes):
            raise ValidationError(
                "numSignatures must equal the number of hashes", field="numSignatures"
            )
        unlocked = await self.factors.verify(cred, req.password_key, req.otp, req.face_challenge_id)
        return await self.issue_sad(
            cred, hashes, req.hash_alg, unlocked, factors_of(req.otp), req.description
        )

    def check_hashes(self, hashes: list[bytes], hash_alg: HashAlgorithm | None) -> None:
        """What one authorisation may cover: 1..max distinct hashes of the
        algorithm's length."""
        if not hashes:
            raise ValidationError("at least one hash must be authorised", field="hash")
        if len(hashes) > self.settings.max_signatures_per_sad:
            raise ValidationError(
                f"at most {self.settings.max_signatures_per_sad} hashes per authorisation",
                field="hash",
            )
        if len(set(hashes)) != len(hashes):
            raise ValidationError("duplicate hashes", field="hash")
        sizes = {hash_alg.digest_size} if hash_alg else {32, 48, 64}
        if any(len(h) not in sizes for h in hashes):
            raise ValidationError("a hash has the wrong length for its algorithm", field="hash")

    async def issue_sad(
        self,
        cred: Credential,
        hashes: list[bytes],
        hash_alg: HashAlgorithm | None,
        unlocked: UnlockedKey,
        factors: tuple[str, ...],
        description: str | None = None,
    ) -> tuple[str, Authorization]:
        """A SAD for exactly `hashes`, once the caller has checked every
        factor and holds the key they opened (signing requests approved on
        a phone come through here). The key is bound to the SAD in the HSM
        (`SadStore.issue`): from here on only the SAD's holder can use it."""
        grant = Grant(
            owner_id=cred.owner_id,
            credential_id=cred.id,
            certificate_serial=cred.certificate_serial,
            hash_alg=hash_alg,
            hashes=hashes,
            factors=factors,
            description=description,
        )
        return await self.sads.issue(grant, unlocked, self.settings.sad_ttl)

    async def verify_factors(
        self,
        cred: Credential,
        password_key: TransportMessage | None,
        otp: Possession | None,
        face_challenge_id: str | None,
    ) -> UnlockedKey:
        """The three factors of signing, for other actions that need as much
        (the owner's revocation)."""
        return await self.factors.verify(cred, password_key, otp, face_challenge_id)

    async def end_authorizations(self, owner_id: str) -> int:
        """The owner's live SADs die now (a possession factor was revoked)."""
        return await self.sads.revoke_owner(owner_id)

    async def extend(
        self, owner_id: str, credential_id: str | None, sad: str | None
    ) -> tuple[str, Authorization]:
        if not credential_id:
            raise ValidationError("credentialID is required", field="credentialID")
        return await self.sads.extend(
            sad, owner_id=owner_id, credential_id=credential_id, ttl=self.settings.sad_ttl
        )

    # -- signing ------------------------------------------------------------------

    async def sign_hashes(
        self,
        owner_id: str,
        credential_id: str | None,
        sad: str | None,
        hashes: list[bytes],
        hash_alg: HashAlgorithm,
        sign_algo: str | None,
        sign_algo_params: bytes | None = None,
    ) -> list[bytes]:
        cred = await self.credentials.active(owner_id, credential_id)
        _check_good(cred)
        scheme = scheme_for(cred.algorithm, sign_algo, hash_alg, sign_algo_params)
        if not hashes:
            raise ValidationError("no hash to sign", field="hash")
        auth = await self.sads.reserve(
            sad, owner_id=owner_id, credential_id=cred.id, hashes=hashes, hash_alg=hash_alg
        )
        try:
            _ids, signatures, left = await self._sign_and_record(
                auth,
                cred,
                hash_alg,
                [(h, "raw", auth.description) for h in hashes],
                [
                    (len(part), self.sads.sign(auth, sad, part, hash_alg, scheme))
                    for part in (
                        hashes[i : i + SIGN_CHUNK] for i in range(0, len(hashes), SIGN_CHUNK)
                    )
                ],
                overlap=True,
            )
        except BaseException:
            await asyncio.shield(self.sads.release(auth, hashes))
            raise
        await self.sads.finished(auth, left)
        return signatures

    async def sign_document(self, owner_id: str, req: DocumentRequest) -> tuple[str, bytes]:
        """CAdES (detached .p7s, from the document or only its SHA-256; level
        B, T or LT), PAdES (the signed PDF; B, T, LT or LTA) or XAdES (the XML
        document with an enveloped signature; B or T). The SAD covers the
        SHA-256 of the document's bytes. Returns (signature id, bytes)."""
        if req.signature_format not in SIGNATURE_FORMATS:
            raise ValidationError("format must be 'cades', 'pades' or 'xades'", field="format")
        offered = FORMAT_LEVELS[req.signature_format]
        if req.level not in offered:
            # Before the SAD is touched: the authorisation stays usable.
            raise ValidationError(
                f"{req.signature_format.upper()} is offered at levels {', '.join(offered)}",
                field="level",
            )
        document = req.document
        if document is not None:
            digest = hashlib.sha256(document).digest()
            if req.document_hash is not None and req.document_hash != digest:
                raise ValidationError(
                    "document_hash does not match the document", field="document_hash"
                )
        elif req.document_hash is not None and req.signature_format == "cades":
            digest = req.document_hash
        else:
            raise ValidationError(
                "send the document (or, for CAdES, its SHA-256)", field="document"
            )
        reserved = await self.reserve_document(owner_id, req.credential_id, req.sad, [digest])
        cred, auth, sign_one = reserved.cred, reserved.auth, reserved.sign_one
        signer, services = reserved.signer, reserved.services
        h = hash_algorithm("sha256")
        level = req.level
        signing_time = self.clock()

        async def produce() -> list[bytes]:
            if req.signature_format == "cades":
                made = await self.documents.run(
                    lambda session: cades_detached(
                        signer, digest, "sha256", session=session, level=level, services=services
                    )
                )
            elif req.signature_format == "xades":
                assert document is not None
                made = await self.documents.run(
                    lambda session: xades_enveloped(
                        sign_one,
                        cred.id,
                        cred.certificate,
                        self.ca.chain,
                        document,
                        signing_time=signing_time,
                        session=session,
                        level=level,
                        services=services,
                    )
                )
            else:
                assert document is not None
                made = await self.documents.run(
                    lambda session: pades(
                        signer, document, session=session, level=level, services=services
                    )
                )
            return [made]

        try:
            (doc_id,), (output,), left = await self._sign_and_record(
                auth,
                cred,
                h,
                [(digest, req.signature_format, req.name)],
                [(1, produce())],
                overlap=False,
            )
        except BaseException:
            await asyncio.shield(self.sads.release(auth, [digest]))
            raise
        await self.sads.finished(auth, left)
        return doc_id, output

    async def reserve_document(
        self, owner_id: str, credential_id: str | None, sad: str | None, digests: list[bytes]
    ) -> ReservedDocument:
        """The owner's good credential and `digests` (SHA-256) reserved under
        the SAD, with the signers a document format signs through: the
        format's library hashes what it signs (pyHanko the CAdES signed
        attributes, signxml the SignedInfo), the SAD covers the documents.
        The caller releases the reservation if it fails (`sads.release`)."""
        cred = await self.credentials.active(owner_id, credential_id)
        _check_good(cred)
        auth = await self.sads.reserve(
            sad,
            owner_id=owner_id,
            credential_id=cred.id,
            hashes=digests,
            hash_alg=hash_algorithm("sha256"),
        )

        async def sign_one(one: bytes, hash_alg: HashAlgorithm, scheme: SignatureScheme) -> bytes:
            (signature,) = await self.sads.sign(auth, sad, [one], hash_alg, scheme)
            return signature

        return ReservedDocument(
            cred,
            auth,
            sign_one,
            HsmOwnerSigner(sign_one, cred.id, cred.certificate, self.ca.chain),
            LevelServices(
                tsa_url=self.ca.profile.urls.tsa,
                trust_roots=(self.ca.root,),
                other_certs=(self.ca.issuing,),
            ),
        )

    async def _sign_and_record(
        self,
        auth: Authorization,
        cred: Credential,
        hash_alg: HashAlgorithm,
        items: list[tuple[bytes, str, str | None]],
        signing: list[tuple[int, Coroutine[Any, Any, list[bytes]]]],
        *,
        overlap: bool,
    ) -> tuple[list[str], list[bytes], Left]:
        """Sign, and record each signature's key.use event and cabinet row in
        one transaction that commits before anything is returned.

        `signing` makes the signatures of consecutive slices of `items`, in
        order: (the slice's length, what signs it). With `overlap`, the event
        rows go in while the HSM works (they do not need the signatures; if
        the HSM fails the transaction rolls them back), and each slice's
        cabinet rows while the HSM signs the next — for raw hashes, where a
        large batch then costs little more than its HSM time. Documents sign
        first: their TSA/OCSP round trips should not hold a write transaction
        open."""
        now = self.clock()
        keep_until = cred.certificate.not_valid_after + RETENTION_AFTER_EXPIRY
        ids = [str(uuid.uuid4()) for _ in items]
        if sum(n for n, _one in signing) != len(items):
            for _n, one in signing:
                one.close()
            raise ValueError("the slices do not cover the items")
        if not overlap:
            signing = [(n, _ready(await one)) for n, one in signing]
        # Queued on the HSM thread in this order, each slice as one call.
        tasks = [(n, asyncio.ensure_future(one)) for n, one in signing]
        try:
            async with self.db.transaction() as conn:
                await append_events(
                    conn,
                    [
                        NewEvent(
                            EventType.KEY_USE,
                            now,
                            auth.owner_id,
                            cred.id,
                            {
                                "document_hash": digest.hex(),
                                "hash_algorithm": hash_alg.name,
                                "format": fmt,
                                "authorization": auth.id,
                                "signature_id": doc_id,
                            },
                        )
                        for doc_id, (digest, fmt, _name) in zip(ids, items, strict=True)
                    ],
                )
                left = await self.sads.mark_signed(conn, auth, [digest for digest, _f, _n in items])
                outputs: list[bytes] = []
                for n, task in tasks:
                    made = await task
                    if len(made) != n:
                        raise RuntimeError("the HSM returned a different number of signatures")
                    start = len(outputs)
                    outputs.extend(made)
                    await conn.execute(
                        insert(signed_documents),
                        [
                            {
                                "id": doc_id,
                                "owner_id": auth.owner_id,
                                "credential_id": cred.id,
                                "certificate_serial": cred.certificate_serial,
                                "name": name,
                                "hash_algorithm": hash_alg.name,
                                "document_hash": digest.hex(),
                                "format": fmt,
                                "signature": output,
                                "signed_at": now,
                                "keep_until": keep_until,
                            }
                            for doc_id, (digest, fmt, name), output in zip(
                                ids[start : start + n], items[start : start + n], made, strict=True
                            )
                        ],
                    )
        finally:
            for _n, task in tasks:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
        return ids, outputs, left


def factors_of(possession: Possession | None) -> tuple[str, ...]:
    return DEVICE_FACTORS if isinstance(possession, DeviceProof) else FACTORS


def _check_good(cred: Credential) -> None:
    # Checked again at signing time: a revocation after the authorisation
    # stops the signatures it had allowed.
    if cred.certificate_status != "good":
        raise ConflictError("the credential's certificate is revoked")


async def _ready(value: list[bytes]) -> list[bytes]:
    return value
