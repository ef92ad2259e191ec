"""Authorise, then sign.

`authorize` checks every factor — a passed face check (biometric), a TOTP
code (possession) and the key password as K_pw wrapped for a one-time HSM
key (knowledge, verified by the HSM opening the key blob) — counts failures
per credential and locks it after `max_failed_attempts`. Success returns a
SAD (see sad.py).

`sign_hashes` signs exactly the authorised hashes; `sign_document` makes a
CAdES or PAdES signature over a document whose hash was authorised. Each
signature's `key.use` event and cabinet row commit in one transaction before
the signature is returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from asn1crypto import x509
from sqlalchemy import insert, select, update

from cloudsign.ca.authority import CertificateAuthority
from cloudsign.enrolment import EnrolmentService
from cloudsign.errors import (
    CloudsignError,
    ConflictError,
    FactorError,
    NotFoundError,
    ValidationError,
)
from cloudsign.events import EventType, append_event
from cloudsign.faces import FaceService
from cloudsign.settings import Settings
from cloudsign.signing.cms import HsmOwnerSigner, LevelServices, cades_detached, pades
from cloudsign.signing.sad import Authorization, SadError, SadStore, new_authorization_id
from cloudsign.signing.tables import signed_documents
from cloudsign.storage import Database
from cloudsign.storage.schema import certificates, credentials, events
from hsm_bridge import (
    HashAlgorithm,
    HsmBridge,
    KeyAlgorithm,
    KeyBlobError,
    SignatureScheme,
    TransportKeyError,
    TransportMessage,
    UnlockedKey,
    WrongPasswordError,
    hash_algorithm,
)

#: The factors of every authorisation (SCAL2): the auth expression names them.
FACTORS: Final = ("face", "otp", "password")
AUTH_EXPRESSION: Final = "FACE AND OTP AND PIN"
#: Relying parties must find the signatures at least this long after expiry (rule 12).
RETENTION_AFTER_EXPIRY: Final = timedelta(days=365)

_SIGN_ALGOS: Final[dict[str, tuple[str, str | None]]] = {
    # OID: (key kind, hash it implies or None)
    "1.2.840.10045.2.1": ("ec", None),
    "1.2.840.10045.4.3.2": ("ec", "sha256"),
    "1.2.840.10045.4.3.3": ("ec", "sha384"),
    "1.2.840.10045.4.3.4": ("ec", "sha512"),
    "1.2.840.113549.1.1.1": ("rsa", None),
    "1.2.840.113549.1.1.11": ("rsa", "sha256"),
    "1.2.840.113549.1.1.12": ("rsa", "sha384"),
    "1.2.840.113549.1.1.13": ("rsa", "sha512"),
    "1.2.840.113549.1.1.10": ("rsa-pss", None),
}


class CredentialLockedError(CloudsignError):
    code = "credential_locked"
    status = 403
    title = "Credential locked"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Credential:
    id: str
    owner_id: str
    algorithm: KeyAlgorithm
    blob: bytes
    certificate: x509.Certificate
    certificate_serial: str
    certificate_status: str
    locked_until: datetime | None

    def __repr__(self) -> str:
        return f"Credential(id={self.id!r}, algorithm={self.algorithm.value})"


def scheme_for(
    algorithm: KeyAlgorithm,
    sign_algo: str | None,
    hash_alg: HashAlgorithm,
    pss_params: bytes | None,
) -> SignatureScheme:
    """The signature scheme a CSC signAlgo asks for, checked against the key."""
    if sign_algo is None:
        return SignatureScheme.ECDSA if algorithm.is_ec else SignatureScheme.RSA_PKCS1V15
    kind = _SIGN_ALGOS.get(sign_algo)
    if kind is None:
        raise ValidationError(f"signAlgo {sign_algo} is not supported", field="signAlgo")
    key_kind, implied_hash = kind
    if implied_hash is not None and implied_hash != hash_alg.name:
        raise ValidationError("signAlgo and hashAlgo disagree", field="signAlgo")
    if key_kind == "ec":
        if not algorithm.is_ec:
            raise ValidationError("an ECDSA signAlgo for an RSA key", field="signAlgo")
        return SignatureScheme.ECDSA
    if not algorithm.is_rsa:
        raise ValidationError("an RSA signAlgo for an EC key", field="signAlgo")
    if key_kind == "rsa-pss":
        if pss_params is not None:
            _check_pss_params(pss_params, hash_alg)
        return SignatureScheme.RSA_PSS
    return SignatureScheme.RSA_PKCS1V15


def _check_pss_params(der: bytes, hash_alg: HashAlgorithm) -> None:
    from asn1crypto import algos

    try:
        params = algos.RSASSAPSSParams.load(der)
        h = params["hash_algorithm"]["algorithm"].native
        mgf_h = params["mask_gen_algorithm"]["parameters"]["algorithm"].native
        salt = params["salt_length"].native
    except (ValueError, KeyError, TypeError) as e:
        raise ValidationError(
            "signAlgoParams is not RSASSA-PSS-params", field="signAlgoParams"
        ) from e
    if h != hash_alg.name or mgf_h != hash_alg.name or salt != hash_alg.digest_size:
        raise ValidationError(
            "PSS parameters must use the hash algorithm for hash and MGF1 "
            "and a salt as long as the digest",
            field="signAlgoParams",
        )


class SigningService:
    def __init__(
        self,
        db: Database,
        bridge: HsmBridge,
        ca: CertificateAuthority,
        enrolment: EnrolmentService,
        faces: FaceService,
        settings: Settings,
    ) -> None:
        self.db = db
        self.bridge = bridge
        self.ca = ca
        self.enrolment = enrolment
        self.faces = faces
        self.settings = settings
        self.sads = SadStore()

    # -- credentials ----------------------------------------------------------

    async def credential(self, owner_id: str, credential_id: object) -> Credential:
        """The owner's active credential; another owner's is simply not found."""
        if not isinstance(credential_id, str) or not credential_id:
            raise ValidationError("credentialID is required", field="credentialID")
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        credentials.c.id,
                        credentials.c.owner_id,
                        credentials.c.key_algorithm,
                        credentials.c.key_blob,
                        credentials.c.locked_until,
                        certificates.c.serial,
                        certificates.c.der,
                        certificates.c.status,
                    )
                    .select_from(
                        credentials.join(
                            certificates, certificates.c.credential_id == credentials.c.id
                        )
                    )
                    .where(
                        credentials.c.id == credential_id,
                        credentials.c.owner_id == owner_id,
                        credentials.c.status == "active",
                    )
                )
            ).first()
        if row is None:
            raise NotFoundError("no such credential")
        return Credential(
            id=row[0],
            owner_id=row[1],
            algorithm=KeyAlgorithm(row[2]),
            blob=row[3],
            locked_until=row[4],
            certificate_serial=row[5],
            certificate=x509.Certificate.load(row[6]),
            certificate_status=row[7],
        )

    async def credential_ids(self, owner_id: str) -> list[str]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(credentials.c.id)
                    .where(credentials.c.owner_id == owner_id, credentials.c.status == "active")
                    .order_by(credentials.c.created_at)
                )
            ).all()
        return [r[0] for r in rows]

    # -- authorisation ----------------------------------------------------------

    async def authorize(
        self,
        owner_id: str,
        credential_id: object,
        *,
        hashes: list[bytes],
        hash_alg: HashAlgorithm | None,
        num_signatures: int | None,
        password_key: TransportMessage | None,
        otp: object,
        face_challenge_id: object,
        description: str | None = None,
    ) -> tuple[str, Authorization]:
        cred = await self.credential(owner_id, credential_id)
        self._check_good(cred)
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
        if num_signatures is not None and num_signatures != len(hashes):
            raise ValidationError(
                "numSignatures must equal the number of hashes", field="numSignatures"
            )
        unlocked = await self.verify_factors(cred, password_key, otp, face_challenge_id)
        now = _now()
        auth = Authorization(
            id=new_authorization_id(),
            owner_id=owner_id,
            credential_id=cred.id,
            certificate_serial=cred.certificate_serial,
            hash_alg=hash_alg,
            hashes=frozenset(hashes),
            num_signatures=len(hashes),
            factors=FACTORS,
            unlocked=unlocked,
            created_at=now,
            expires_at=now + timedelta(seconds=self.settings.sad_ttl_seconds),
            description=description,
        )
        return self.sads.issue(auth), auth

    async def verify_factors(
        self,
        cred: Credential,
        password_key: TransportMessage | None,
        otp: object,
        face_challenge_id: object,
    ) -> UnlockedKey:
        """All three factors, or a counted failure. Returns the key with its
        password layer opened (still wrapped under the HSM master key)."""
        now = _now()
        if cred.locked_until is not None and cred.locked_until > now:
            raise CredentialLockedError(
                f"too many failed attempts; locked until {cred.locked_until.isoformat()}"
            )
        if password_key is None:
            raise ValidationError("the key password (PIN) is required", field="PIN")
        try:
            await self.faces.consume(cred.owner_id, face_challenge_id)
            await self.enrolment.verify_otp(cred.owner_id, otp)
            try:
                await self.enrolment.consume_transport_key(
                    cred.owner_id, "authorize", password_key.transport_key_id
                )
            except ConflictError as e:
                raise FactorError(f"key password: {e.detail}") from e
            try:
                unlocked = await self.bridge.unlock_owner_key(
                    password_key, cred.id, cred.algorithm, cred.blob
                )
            except WrongPasswordError as e:
                raise FactorError("the key password is wrong") from e
            except TransportKeyError as e:
                raise FactorError("the wrapped key password could not be opened") from e
        except FactorError as e:
            await self._record_failure(cred, str(e.detail))
            raise
        except KeyBlobError as e:
            raise ConflictError("the stored key does not open; contact the centre") from e
        await self._record_success(cred)
        return unlocked

    @staticmethod
    def _check_good(cred: Credential) -> None:
        # Checked again at signing time: a revocation after the authorisation
        # stops the signatures it had allowed.
        if cred.certificate_status != "good":
            raise ConflictError("the credential's certificate is revoked")

    async def _record_failure(self, cred: Credential, reason: str) -> None:
        now = _now()
        async with self.db.transaction() as conn:
            count = (
                await conn.execute(
                    update(credentials)
                    .where(credentials.c.id == cred.id)
                    .values(failed_attempts=credentials.c.failed_attempts + 1)
                    .returning(credentials.c.failed_attempts)
                )
            ).scalar_one()
            await append_event(
                conn,
                EventType.AUTH_FAILURE,
                owner_id=cred.owner_id,
                credential_id=cred.id,
                data={"reason": reason, "failures": count},
                at=now,
            )
            if count >= self.settings.max_failed_attempts:
                until = now + timedelta(seconds=self.settings.lockout_seconds)
                await conn.execute(
                    update(credentials)
                    .where(credentials.c.id == cred.id)
                    .values(failed_attempts=0, locked_until=until)
                )
                await append_event(
                    conn,
                    EventType.CREDENTIAL_LOCK,
                    owner_id=cred.owner_id,
                    credential_id=cred.id,
                    data={"until": until.isoformat(), "failures": count},
                    at=now,
                )

    async def _record_success(self, cred: Credential) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                update(credentials)
                .where(credentials.c.id == cred.id, credentials.c.failed_attempts != 0)
                .values(failed_attempts=0)
            )

    def extend(
        self, owner_id: str, credential_id: object, sad: object
    ) -> tuple[str, Authorization]:
        if not isinstance(credential_id, str):
            raise ValidationError("credentialID is required", field="credentialID")
        return self.sads.extend(
            sad,
            owner_id=owner_id,
            credential_id=credential_id,
            ttl=timedelta(seconds=self.settings.sad_ttl_seconds),
        )

    # -- signing ------------------------------------------------------------------

    async def sign_hashes(
        self,
        owner_id: str,
        credential_id: object,
        sad: object,
        hashes: list[bytes],
        hash_alg: HashAlgorithm,
        sign_algo: str | None,
        sign_algo_params: bytes | None = None,
    ) -> list[bytes]:
        cred = await self.credential(owner_id, credential_id)
        self._check_good(cred)
        scheme = scheme_for(cred.algorithm, sign_algo, hash_alg, sign_algo_params)
        if not hashes:
            raise ValidationError("no hash to sign", field="hash")
        auth = self.sads.reserve(
            sad, owner_id=owner_id, credential_id=cred.id, hashes=hashes, hash_alg=hash_alg
        )
        try:
            _ids, signatures = await self._sign_and_record(
                auth,
                cred,
                hash_alg,
                [(h, "raw", auth.description) for h in hashes],
                self.bridge.sign_with_unlocked(auth.unlocked, hashes, hash_alg, scheme),
                overlap=True,
            )
        except BaseException:
            self.sads.release(auth, hashes)
            raise
        return signatures

    async def sign_document(
        self,
        owner_id: str,
        credential_id: object,
        sad: object,
        *,
        document: bytes | None,
        document_hash: bytes | None,
        signature_format: str,
        name: str | None,
        level: str = "B",
    ) -> tuple[str, bytes]:
        """CAdES (detached .p7s, from the document or only its SHA-256; level
        B or T) or PAdES (the signed PDF; B, T or LT). Returns (signature id, bytes)."""
        sha256 = hashlib.sha256
        if signature_format not in ("cades", "pades"):
            raise ValidationError("format must be 'cades' or 'pades'", field="format")
        if document is not None:
            digest = sha256(document).digest()
            if document_hash is not None and document_hash != digest:
                raise ValidationError(
                    "document_hash does not match the document", field="document_hash"
                )
        elif document_hash is not None and signature_format == "cades":
            digest = document_hash
        else:
            raise ValidationError(
                "send the document (or, for CAdES, its SHA-256)", field="document"
            )
        cred = await self.credential(owner_id, credential_id)
        self._check_good(cred)
        h = hash_algorithm("sha256")
        auth = self.sads.reserve(
            sad, owner_id=owner_id, credential_id=cred.id, hashes=[digest], hash_alg=h
        )
        signer = HsmOwnerSigner(self.bridge, auth.unlocked, cred.certificate, self.ca.chain)
        services = LevelServices(
            tsa_url=self.ca.profile.urls.tsa,
            trust_roots=(self.ca.root,),
            other_certs=(self.ca.issuing,),
        )

        async def produce() -> list[bytes]:
            if signature_format == "cades":
                return [
                    await cades_detached(signer, digest, "sha256", level=level, services=services)
                ]
            assert document is not None
            return [await pades(signer, document, level=level, services=services)]

        try:
            (doc_id,), (output,) = await self._sign_and_record(
                auth, cred, h, [(digest, signature_format, name)], produce(), overlap=False
            )
        except BaseException:
            self.sads.release(auth, [digest])
            raise
        return doc_id, output

    async def _sign_and_record(
        self,
        auth: Authorization,
        cred: Credential,
        hash_alg: HashAlgorithm,
        items: list[tuple[bytes, str, str | None]],
        signing: Coroutine[Any, Any, list[bytes]],
        *,
        overlap: bool,
    ) -> tuple[list[str], list[bytes]]:
        """Sign, and record each signature's key.use event and cabinet row in
        one transaction that commits before anything is returned.

        With `overlap`, the event rows go in while the HSM works (they do not
        need the signatures; if the HSM fails the transaction rolls them
        back) — for raw hashes, where that halves a large batch. Documents
        sign first: their TSA/OCSP round trips should not hold a write
        transaction open."""
        now = _now()
        keep_until = cred.certificate.not_valid_after + RETENTION_AFTER_EXPIRY
        ids = [str(uuid.uuid4()) for _ in items]
        if not overlap:
            signing = _ready(await signing)
        task = asyncio.ensure_future(signing)
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    insert(events),
                    [
                        {
                            "event_type": EventType.KEY_USE.value,
                            "occurred_at": now,
                            "owner_id": auth.owner_id,
                            "credential_id": cred.id,
                            "data": {
                                "document_hash": digest.hex(),
                                "hash_algorithm": hash_alg.name,
                                "format": fmt,
                                "authorization": auth.id,
                                "signature_id": doc_id,
                            },
                        }
                        for doc_id, (digest, fmt, _name) in zip(ids, items, strict=True)
                    ],
                )
                outputs = await task
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
                            ids, items, outputs, strict=True
                        )
                    ],
                )
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        return ids, outputs

    # -- personal cabinet -------------------------------------------------------------

    async def documents(self, owner_id: str | None, *, with_names: bool) -> list[dict[str, Any]]:
        """The owner's signed documents (or, for an auditor, anyone's, without names)."""
        stmt = select(
            signed_documents.c.id,
            signed_documents.c.owner_id,
            signed_documents.c.name,
            signed_documents.c.hash_algorithm,
            signed_documents.c.document_hash,
            signed_documents.c.format,
            signed_documents.c.signed_at,
            signed_documents.c.credential_id,
            signed_documents.c.certificate_serial,
            signed_documents.c.keep_until,
        ).order_by(signed_documents.c.signed_at.desc())
        if owner_id is not None:
            stmt = stmt.where(signed_documents.c.owner_id == owner_id)
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        out = []
        for r in rows:
            item: dict[str, Any] = {
                "signature_id": r["id"],
                "hash_algorithm": r["hash_algorithm"],
                "document_hash": r["document_hash"],
                "format": r["format"],
                "signed_at": r["signed_at"].isoformat(),
                "credential_id": r["credential_id"],
                "certificate_serial": r["certificate_serial"],
                "keep_until": r["keep_until"].isoformat(),
            }
            if with_names:
                item["name"] = r["name"]
            else:
                item["owner_id"] = r["owner_id"]
            out.append(item)
        return out

    async def document(self, owner_id: str, signature_id: str) -> tuple[str, str | None, bytes]:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(
                        signed_documents.c.format,
                        signed_documents.c.name,
                        signed_documents.c.signature,
                    ).where(
                        signed_documents.c.id == signature_id,
                        signed_documents.c.owner_id == owner_id,
                    )
                )
            ).first()
        if row is None:
            raise NotFoundError("no such signed document")
        return row[0], row[1], row[2]


async def _ready(value: list[bytes]) -> list[bytes]:
    return value


__all__ = [
    "AUTH_EXPRESSION",
    "CredentialLockedError",
    "SadError",
    "SigningService",
    "scheme_for",
]
