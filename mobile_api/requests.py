"""Signing requests: a signature started on one screen and approved on the
citizen's bound phone.

A request names the citizen, the key, the documents (a PDF to sign in
PAdES, content or only its SHA-256 to sign in detached CAdES, an XML
document to sign in XAdES (enveloped), or a raw hash) and a text to show.
Its **commitment** and **verification code** (mobile_api.codes) are fixed
at creation. The requesting screen shows the code and an animated QR
(`qr_frame`, one frame a second); the phone reaches the request by
scanning a frame (`claim`, refused once the frame is a few
seconds old), from its inbox, or by a push.

Approval (`approve`) takes, in one counted attempt on the credential (the
same `FactorCheck` as any signature): an assertion of a bound device over
the approval challenge (commitment + code + a one-time nonce; purpose
`approve:<request id>`, so it fits no other request), a face check passed
just now, and the key password. Then every document is signed in the HSM
under a SAD for exactly the committed hashes, each signature with its
`key.use` event and cabinet row, and the request is `approved` with the
signatures for the requester. A declined, expired or already decided
request, a wrong code, a foreign request, a revoked device: no SAD, no
signature. Revoking a device ends its owner's pending requests at once.

A CSC client can drive the same approval (`authorize_on_phone`, behind
`credentials/authorize` answering 202): the request carries the client's
hashes (origin `csc`), the phone approves it as any other, and the approval
issues a SAD for exactly those hashes instead of signing. The SAD waits for
the client's `credentials/authorizeCheck`
(`collect_authorization`), which takes it once. Until then it waits on the
request's row sealed under the HSM's `credential` sealing key (bound to the
request id), so any process can hand it out and the row alone gives nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import secrets
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import insert, select, update

from cloudsign.accounts import AccountService, DeviceProof, Owner
from cloudsign.clock import Clock
from cloudsign.credentials import Credential, CredentialService
from cloudsign.errors import (
    ConflictError,
    FactorError,
    NotFoundError,
    RateLimitedError,
    ValidationError,
)
from cloudsign.events import EventType, append_event
from cloudsign.guard import Guard, Limits
from cloudsign.signing import (
    Authorization,
    DocumentRequest,
    FactorCheck,
    SadError,
    SigningService,
)
from cloudsign.storage import Database
from cloudsign.web.xml import UntrustedXmlError, parse_untrusted
from hsm_bridge import KeyedHasher, Sealer, TransportMessage, UnlockedKey, hash_algorithm
from mobile_api import codes
from mobile_api.devices import DeviceService, approval_purpose
from mobile_api.push import PushService
from mobile_api.relying import RelyingParty
from mobile_api.settings import MobileSettings
from mobile_api.tables import signing_request_documents, signing_requests

log = logging.getLogger(__name__)

FORMATS: Final = ("pades", "cades", "xades", "raw")
LEVELS: Final = {
    "pades": ("B", "T", "LT"),
    "cades": ("B", "T"),
    "xades": ("B", "T"),
    "raw": ("B",),
}
#: What a document's content is served and signed as, by format.
CONTENT_TYPES: Final = {"pades": "application/pdf", "xades": "application/xml"}
NONCE_BYTES: Final = 16
#: Wrong approvals (any factor) after which the request itself fails.
MAX_FAILED_APPROVALS: Final = 3
PDF_MAGIC: Final = b"%PDF-"
#: How long an approved request may stay `signing` before it counts as cut short.
SIGNING_GRACE: Final = timedelta(minutes=10)


class NoDeviceError(ConflictError):
    """The owner has no bound phone to approve on."""

    code = "no_device"


@dataclass(frozen=True)
class NewDocument:
    name: str
    format: str
    content: bytes | None
    document_hash: bytes | None

    def __repr__(self) -> str:
        return f"NewDocument({self.name!r}, {self.format})"


@dataclass(frozen=True)
class RequestDocument:
    position: int
    name: str
    format: str
    document_hash: bytes
    size: int | None
    signature: bytes | None
    signature_id: str | None


@dataclass(frozen=True)
class SigningRequest:
    id: str
    origin: str
    relying_party_id: str | None
    owner_id: str | None
    credential_id: str | None
    requester_name: str
    display_text: str
    hash_algorithm: str
    level: str
    verification_code: str
    status: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    device_id: str | None
    error: str | None
    open_to_scan: bool
    callback_url: str | None
    callback_status: str | None
    documents: tuple[RequestDocument, ...]

    @property
    def hashes(self) -> list[bytes]:
        return [d.document_hash for d in self.documents]


@dataclass(frozen=True)
class ApprovalChallenge:
    challenge_id: str
    nonce: bytes
    options: dict[str, object]


class SigningRequests:
    def __init__(
        self,
        db: Database,
        hasher: KeyedHasher,
        sealer: Sealer,
        credentials: CredentialService,
        signing: SigningService,
        factors: FactorCheck,
        devices: DeviceService,
        accounts: AccountService,
        settings: MobileSettings,
        guard: Guard,
        limits: Limits,
        *,
        clock: Clock,
    ) -> None:
        self.guard = guard
        self.limits = limits
        self.accounts = accounts
        #: Each called with a request's id once it is decided (relying parties'
        #: callbacks, eGov QR deliveries): `add_decided_listener`.
        self._decided_listeners: list[Callable[[str], Coroutine[Any, Any, None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        #: Web Push to the citizen's phones when a request for them is created.
        self.push: PushService | None = None
        self.db = db
        self.hasher = hasher
        self.sealer = sealer
        self.credentials = credentials
        self.signing = signing
        self.factors = factors
        self.devices = devices
        self.settings = settings
        self.clock = clock

    # -- the requester's side -----------------------------------------------------------

    async def create(
        self,
        owner: Owner,
        credential_id: str | None,
        display_text: str,
        documents: Sequence[NewDocument],
        level: str,
    ) -> SigningRequest:
        """A request for the owner's own phone, from the portal session."""
        cred = await self._own_phone(owner, credential_id)
        request_id = await self._insert(
            open_to_scan=False,
            origin="portal",
            requester_name="cloudsign portal",
            relying_party_id=None,
            owner_id=owner.id,
            credential_id=cred,
            display_text=display_text,
            documents=documents,
            level=level,
            callback_url=None,
        )
        return await self.get(owner.id, request_id)

    async def create_for(
        self,
        party: RelyingParty,
        iin: str | None,
        display_text: str,
        documents: Sequence[NewDocument],
        level: str,
        callback_url: str | None,
    ) -> SigningRequest:
        """A relying party's request: for the citizen with `iin` (their
        inbox shows it), or for whoever scans its QR first. An IIN with no
        account gives a request nobody can see: the answer is the same, so
        a relying party learns nothing of who is a customer."""
        if callback_url is not None and not (
            party.callback_prefix and callback_url.startswith(party.callback_prefix)
        ):
            raise ValidationError(
                "callback_url must be under the prefix registered for this relying party",
                field="callback_url",
            )
        owner_id = None
        credential_id = None
        if iin is not None:
            owner_id = await self.accounts.active_owner_by_iin(iin)
            if owner_id is not None and await self.devices.has_devices(owner_id):
                ids = await self.credentials.active_ids(owner_id)
                credential_id = ids[0] if ids else None
            if owner_id is None or credential_id is None:
                owner_id = None
            elif not await self._phone_may_be_asked(owner_id):
                # Too many for this phone: the request reaches nobody, and
                # the answer is the one an unknown IIN gets (no oracle).
                owner_id = credential_id = None
        request_id = await self._insert(
            open_to_scan=iin is None,
            origin="rp",
            requester_name=party.name,
            relying_party_id=party.id,
            owner_id=owner_id,
            credential_id=credential_id,
            display_text=display_text,
            documents=documents,
            level=level,
            callback_url=callback_url,
        )
        return await self.for_party(party.id, request_id)

    async def authorize_on_phone(
        self,
        owner: Owner,
        credential_id: str | None,
        hashes: Sequence[bytes],
        description: str | None,
    ) -> SigningRequest:
        """A CSC authorisation that the owner's phone approves: a request
        for the client's SHA-256 hashes (signed later by the client with the
        SAD, `collect_authorization`)."""
        owner.require_full()
        return await self.authorize_for_client(owner.id, credential_id, hashes, description)

    async def authorize_for_client(
        self,
        owner_id: str,
        credential_id: str | None,
        hashes: Sequence[bytes],
        description: str | None,
        *,
        requester_name: str = "CSC signing application",
        labels: Sequence[str | None] = (),
    ) -> SigningRequest:
        """`authorize_on_phone` for a client that named only the credential
        (CSC oauth2code, mobile_api.oauth): `requester_name` is whom the
        phone names (the OAuth client's registered name), `labels` the
        documents' names it gave, by position."""
        cred = await self._phone_of(owner_id, credential_id)
        names = [*labels, *([None] * len(hashes))]
        request_id = await self._insert(
            open_to_scan=False,
            origin="csc",
            requester_name=requester_name,
            relying_party_id=None,
            owner_id=owner_id,
            credential_id=cred,
            display_text=description or "Authorise signatures for a signing application",
            documents=[
                NewDocument(names[i] or f"hash {i + 1}", "raw", None, digest)
                for i, digest in enumerate(hashes)
            ],
            level="B",
            callback_url=None,
        )
        return await self.get(owner_id, request_id)

    async def collect_authorization(
        self, owner_id: str, request_id: str
    ) -> tuple[SigningRequest, tuple[str, Authorization] | None]:
        """The request, and once it is approved its SAD (given out once, by
        whichever process the client reaches)."""
        req = await self.get(owner_id, request_id)
        if req.origin != "csc":
            raise NotFoundError("no such authorisation")
        if req.status != "approved" or req.credential_id is None:
            return req, None
        async with self.db.transaction() as conn:
            sealed = (
                await conn.execute(
                    select(signing_requests.c.sealed_sad).where(signing_requests.c.id == req.id)
                )
            ).scalar()
            if sealed is None:
                return req, None
            taken = await conn.execute(
                update(signing_requests)
                .where(signing_requests.c.id == req.id, signing_requests.c.sealed_sad == sealed)
                .values(sealed_sad=None)
            )
            if taken.rowcount != 1:
                return req, None
        sad = (await self.sealer.unseal("credential", sealed, _sad_aad(req.id))).decode()
        try:
            auth = await self.signing.sads.find(
                sad, owner_id=owner_id, credential_id=req.credential_id
            )
        except SadError:
            return req, None  # expired before it was collected
        return req, (sad, auth)

    async def create_scanned(
        self,
        party: RelyingParty,
        owner: Owner,
        display_text: str,
        documents: Sequence[NewDocument],
        level: str,
        expires_at: datetime,
    ) -> SigningRequest:
        """A relying party's request that the citizen's own phone brought in
        (an eGov QR link the app scanned, mobile_api.egov): it is the
        scanning citizen's at once, with their first active key, and it
        expires at `expires_at` or after the usual lifetime, whichever is
        first."""
        cred = await self._own_phone(owner, None)
        request_id = await self._insert(
            open_to_scan=False,
            origin="rp",
            requester_name=party.name,
            relying_party_id=party.id,
            owner_id=owner.id,
            credential_id=cred,
            display_text=display_text,
            documents=documents,
            level=level,
            callback_url=None,
            expires_at=expires_at,
        )
        return await self.get(owner.id, request_id)

    async def _own_phone(self, owner: Owner, credential_id: str | None) -> str:
        """For a request the owner's own session makes for their phone: a
        bound phone, the key to sign with, one more on the phone's count."""
        owner.require_full()
        return await self._phone_of(owner.id, credential_id)

    async def _phone_of(self, owner_id: str, credential_id: str | None) -> str:
        if not await self.devices.has_devices(owner_id):
            raise NoDeviceError("bind a phone first: requests are approved on a bound device")
        cred = await self._credential(owner_id, credential_id)
        await self._count_for_phone(owner_id)
        return cred

    async def _count_for_phone(self, owner_id: str) -> None:
        """One more request for the owner's phone (429 past the hourly limit)."""
        await self.guard.counted([(self.limits.requests, owner_id)], factor="signing-request")

    async def _phone_may_be_asked(self, owner_id: str) -> bool:
        try:
            await self._count_for_phone(owner_id)
        except RateLimitedError:
            return False
        return True

    async def _credential(self, owner_id: str, credential_id: str | None) -> str:
        if credential_id is None:
            ids = await self.credentials.active_ids(owner_id)
            if not ids:
                raise ConflictError("no active key to sign with")
            credential_id = ids[0]
        return (await self.credentials.active(owner_id, credential_id)).id

    async def _insert(
        self,
        *,
        open_to_scan: bool,
        origin: str,
        requester_name: str,
        relying_party_id: str | None,
        owner_id: str | None,
        credential_id: str | None,
        display_text: str,
        documents: Sequence[NewDocument],
        level: str,
        callback_url: str | None,
        expires_at: datetime | None = None,
    ) -> str:
        if not documents:
            raise ValidationError("at least one document", field="documents")
        if len(documents) > self.settings.max_request_documents:
            raise ValidationError(
                f"at most {self.settings.max_request_documents} documents", field="documents"
            )
        rows = [_document_row(i, d, level) for i, d in enumerate(documents)]
        hashes = [digest for _row, digest in rows]
        self.signing.check_hashes(hashes, hash_algorithm("sha256"))
        request_id = str(uuid.uuid4())
        commitment = codes.commitment(request_id, "sha256", hashes)
        now = self.clock()
        async with self.db.transaction() as conn:
            await conn.execute(
                insert(signing_requests).values(
                    id=request_id,
                    origin=origin,
                    relying_party_id=relying_party_id,
                    requester_name=requester_name,
                    owner_id=owner_id,
                    credential_id=credential_id,
                    callback_url=callback_url,
                    open_to_scan=open_to_scan,
                    display_text=display_text,
                    hash_algorithm="sha256",
                    level=level,
                    commitment=commitment,
                    verification_code=codes.verification_code(commitment),
                    status="pending",
                    created_at=now,
                    expires_at=min(
                        now + self.settings.request_ttl,
                        expires_at or now + self.settings.request_ttl,
                    ),
                )
            )
            await conn.execute(
                insert(signing_request_documents),
                [{"request_id": request_id, **row} for row, _digest in rows],
            )
            await append_event(
                conn,
                EventType.REQUEST_CREATE,
                owner_id=owner_id,
                credential_id=credential_id,
                data={
                    "request": request_id,
                    "documents": len(rows),
                    "origin": origin,
                    "relying_party": relying_party_id,
                },
                at=now,
            )
        if owner_id is not None and self.push is not None:
            message = {
                "type": "signing-request",
                "request_id": request_id,
                "requester": requester_name,
                "verification_code": codes.verification_code(commitment),
            }
            self._spawn(self._push(owner_id, message))
        return request_id

    async def _push(self, owner_id: str, message: dict[str, Any]) -> None:
        assert self.push is not None
        await self.push.notify(owner_id, message)

    async def qr_frame(self, owner_id: str, request_id: str) -> str:
        """The QR frame to show now (only while the request is pending)."""
        return await self._frame(await self.get(owner_id, request_id))

    async def party_qr_frame(self, party_id: str, request_id: str) -> str:
        return await self._frame(await self.for_party(party_id, request_id))

    async def _frame(self, req: SigningRequest) -> str:
        if req.status != "pending":
            raise ConflictError(f"the request is {req.status}")
        elapsed = max(0, int((self.clock() - req.created_at).total_seconds()))
        return codes.qr_frame(req.id, await self._qr_secret(req.id), elapsed)

    async def _qr_secret(self, request_id: str) -> bytes:
        return await self.hasher.hmac_sha256("mobile-qr", request_id.encode())

    # -- the phone's side ---------------------------------------------------------------

    async def claim(self, owner: Owner, text: object) -> SigningRequest:
        """The request a freshly scanned QR frame names, if it is this
        citizen's and still pending. One refusal for every reason."""
        owner.require_full()
        frame = codes.parse_qr(text)
        refused = NotFoundError("no pending request for this code (scan the current QR)")
        if frame is None:
            raise refused
        try:
            req = await self._load(frame.request_id, None)
        except NotFoundError as e:
            raise refused from e
        secret = await self._qr_secret(req.id)
        if req.status != "pending" or not codes.qr_is_fresh(
            frame, secret, req.created_at, self.clock()
        ):
            raise refused
        if req.owner_id == owner.id:
            return req
        if req.owner_id is not None or not req.open_to_scan:
            raise refused
        # A relying party's request for whoever scans it: the first citizen
        # with a bound phone and a key takes it.
        if not await self.devices.has_devices(owner.id):
            raise refused
        credential_id = await self._credential(owner.id, None)
        async with self.db.transaction() as conn:
            taken = await conn.execute(
                update(signing_requests)
                .where(
                    signing_requests.c.id == req.id,
                    signing_requests.c.owner_id.is_(None),
                    signing_requests.c.open_to_scan.is_(True),
                )
                .values(owner_id=owner.id, credential_id=credential_id)
            )
        if taken.rowcount != 1:
            raise refused
        return await self.get(owner.id, req.id)

    async def inbox(self, owner_id: str) -> list[SigningRequest]:
        await self._expire(owner_id=owner_id)
        async with self.db.read() as conn:
            ids = [
                r[0]
                for r in await conn.execute(
                    select(signing_requests.c.id)
                    .where(
                        signing_requests.c.owner_id == owner_id,
                        signing_requests.c.status == "pending",
                    )
                    .order_by(signing_requests.c.created_at)
                )
            ]
        mine = signing_requests.c.owner_id == owner_id
        return [await self._load(i, mine) for i in ids]

    async def content(self, owner_id: str, request_id: str, position: int) -> bytes:
        """A document's bytes, for the phone to show before approving."""
        await self.get(owner_id, request_id)
        async with self.db.read() as conn:
            found = (
                await conn.execute(
                    select(signing_request_documents.c.content).where(
                        signing_request_documents.c.request_id == request_id,
                        signing_request_documents.c.position == position,
                    )
                )
            ).first()
        if found is None or found[0] is None:
            raise NotFoundError("no such document content (only its hash was sent)")
        return bytes(found[0])

    async def approval_challenge(self, owner: Owner, request_id: str) -> ApprovalChallenge:
        owner.require_full()
        req = await self._pending(owner.id, request_id)
        nonce = secrets.token_bytes(NONCE_BYTES)
        challenge = codes.approval_challenge(_commitment(req), req.verification_code, nonce)
        issued = await self.devices.issue_approval_challenge(owner.id, req.id, challenge)
        return ApprovalChallenge(issued.id, nonce, issued.options)

    async def approve(
        self,
        owner: Owner,
        request_id: str,
        verification_code: str,
        device: DeviceProof,
        face_challenge_id: str | None,
        password_key: TransportMessage | None,
    ) -> SigningRequest:
        owner.require_full()
        req = await self._pending(owner.id, request_id)
        if req.credential_id is None:
            raise ConflictError("the request names no key")
        cred = await self.credentials.active(owner.id, req.credential_id)
        if not secrets.compare_digest(verification_code, req.verification_code):
            await self._failed_approval(req, "wrong verification code")
            raise FactorError("the verification code is not this request's")
        try:
            unlocked = await self.factors.verify(
                cred,
                password_key,
                device,
                face_challenge_id,
                device_purpose=approval_purpose(req.id),
            )
        except FactorError as e:
            await self._failed_approval(req, e.detail)
            raise
        device_id = await self.devices.device_of(owner.id, device)
        # Claim the request before signing: two approvals racing sign once.
        now = self.clock()
        async with self.db.transaction() as conn:
            claimed = await conn.execute(
                update(signing_requests)
                .where(
                    signing_requests.c.id == req.id,
                    signing_requests.c.status == "pending",
                    signing_requests.c.expires_at > now,
                )
                .values(status="signing", decided_at=now, device_id=device_id)
            )
            if claimed.rowcount != 1:
                raise ConflictError("the request was decided meanwhile")
            await append_event(
                conn,
                EventType.REQUEST_DECIDE,
                owner_id=owner.id,
                credential_id=cred.id,
                data={"request": req.id, "decision": "approved", "device": device_id},
                at=now,
            )
        try:
            if req.origin == "csc":
                sad, _auth = await self.signing.issue_sad(
                    cred,
                    req.hashes,
                    hash_algorithm("sha256"),
                    unlocked,
                    ("face", "device", "password"),
                    req.display_text,
                )
                sealed = await self.sealer.seal("credential", sad.encode(), _sad_aad(req.id))
                async with self.db.transaction() as conn:
                    await conn.execute(
                        update(signing_requests)
                        .where(signing_requests.c.id == req.id)
                        .values(sealed_sad=sealed)
                    )
            else:
                await self._sign(owner.id, req, cred, unlocked)
        except Exception as e:
            await self._finish_signing(req.id, "failed", _short(str(e)))
            raise
        else:
            # Approved once every signature is stored: a requester never
            # sees "approved" without them.
            await self._finish_signing(req.id, "approved", None)
        finally:
            self._decided(req.id)
        return await self.get(owner.id, req.id)

    async def _finish_signing(self, request_id: str, status: str, error: str | None) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                update(signing_requests)
                .where(signing_requests.c.id == request_id, signing_requests.c.status == "signing")
                .values(status=status, error=error)
            )

    async def _sign(
        self, owner_id: str, req: SigningRequest, cred: Credential, unlocked: UnlockedKey
    ) -> None:
        sha256 = hash_algorithm("sha256")
        sad, _auth = await self.signing.issue_sad(
            cred, req.hashes, sha256, unlocked, ("face", "device", "password"), req.display_text
        )
        for doc in req.documents:
            if doc.format == "raw":
                (signature,) = await self.signing.sign_hashes(
                    owner_id, cred.id, sad, [doc.document_hash], sha256, None
                )
                signature_id = None
            else:
                content = await self._content_or_none(req.id, doc.position)
                signature_id, signature = await self.signing.sign_document(
                    owner_id,
                    DocumentRequest(
                        credential_id=cred.id,
                        sad=sad,
                        signature_format=doc.format,
                        level=req.level,
                        document=content,
                        document_hash=None if content is not None else doc.document_hash,
                        name=doc.name,
                    ),
                )
            async with self.db.transaction() as conn:
                await conn.execute(
                    update(signing_request_documents)
                    .where(
                        signing_request_documents.c.request_id == req.id,
                        signing_request_documents.c.position == doc.position,
                    )
                    .values(signature=signature, signature_id=signature_id)
                )

    async def _content_or_none(self, request_id: str, position: int) -> bytes | None:
        async with self.db.read() as conn:
            found = (
                await conn.execute(
                    select(signing_request_documents.c.content).where(
                        signing_request_documents.c.request_id == request_id,
                        signing_request_documents.c.position == position,
                    )
                )
            ).scalar()
        return None if found is None else bytes(found)

    async def decline(self, owner: Owner, request_id: str) -> SigningRequest:
        req = await self._pending(owner.id, request_id)
        await self._decide(req, "declined", None)
        return await self.get(owner.id, req.id)

    async def withdraw(self, owner: Owner, request_id: str) -> SigningRequest:
        """The requesting screen takes its request back (before a decision)."""
        owner.require_full()
        req = await self._pending(owner.id, request_id)
        await self._decide(req, "withdrawn", None)
        return await self.get(owner.id, req.id)

    async def withdraw_for(self, party_id: str, request_id: str) -> SigningRequest:
        """A relying party takes its own request back."""
        req = await self.for_party(party_id, request_id)
        if req.status != "pending":
            raise ConflictError(f"the request is {req.status}")
        await self._decide(req, "withdrawn", None)
        return await self.for_party(party_id, req.id)

    async def end_pending(self, owner_id: str, reason: str) -> int:
        """Every pending request of the owner fails (a device was revoked)."""
        now = self.clock()
        pending = (signing_requests.c.owner_id == owner_id, signing_requests.c.status == "pending")
        async with self.db.transaction() as conn:
            ids = [r[0] for r in await conn.execute(select(signing_requests.c.id).where(*pending))]
            if ids:
                await conn.execute(
                    update(signing_requests)
                    .where(signing_requests.c.id.in_(ids), *pending)
                    .values(status="failed", decided_at=now, error=reason)
                )
        for request_id in ids:
            self._decided(request_id)
        return len(ids)

    # -- reading ---------------------------------------------------------------------

    async def get(self, owner_id: str, request_id: str) -> SigningRequest:
        """The owner's request (404 for anyone else's: no oracle)."""
        await self._expire(owner_id=owner_id)
        return await self._load(request_id, signing_requests.c.owner_id == owner_id)

    async def for_party(self, party_id: str, request_id: str) -> SigningRequest:
        """A relying party's own request (404 for any other)."""
        await self._expire(party_id=party_id)
        return await self._load(request_id, signing_requests.c.relying_party_id == party_id)

    async def _load(self, request_id: str, condition: Any) -> SigningRequest:
        stmt = select(signing_requests).where(signing_requests.c.id == request_id)
        if condition is not None:
            stmt = stmt.where(condition)
        async with self.db.read() as conn:
            row = (await conn.execute(stmt)).mappings().first()
            if row is None:
                raise NotFoundError("no such signing request")
            docs = (
                await conn.execute(
                    select(
                        signing_request_documents.c.position,
                        signing_request_documents.c.name,
                        signing_request_documents.c.format,
                        signing_request_documents.c.document_hash,
                        signing_request_documents.c.content,
                        signing_request_documents.c.signature,
                        signing_request_documents.c.signature_id,
                    )
                    .where(signing_request_documents.c.request_id == request_id)
                    .order_by(signing_request_documents.c.position)
                )
            ).mappings()
            documents = tuple(
                RequestDocument(
                    d["position"],
                    d["name"],
                    d["format"],
                    bytes(d["document_hash"]),
                    None if d["content"] is None else len(d["content"]),
                    None if d["signature"] is None else bytes(d["signature"]),
                    d["signature_id"],
                )
                for d in docs
            )
        return SigningRequest(
            id=row["id"],
            origin=row["origin"],
            relying_party_id=row["relying_party_id"],
            owner_id=row["owner_id"],
            credential_id=row["credential_id"],
            requester_name=row["requester_name"],
            display_text=row["display_text"],
            hash_algorithm=row["hash_algorithm"],
            level=row["level"],
            verification_code=row["verification_code"],
            status=row["status"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            decided_at=row["decided_at"],
            device_id=row["device_id"],
            error=row["error"],
            open_to_scan=bool(row["open_to_scan"]),
            callback_url=row["callback_url"],
            callback_status=row["callback_status"],
            documents=documents,
        )

    async def _pending(self, owner_id: str, request_id: str) -> SigningRequest:
        req = await self.get(owner_id, request_id)
        if req.status != "pending":
            raise ConflictError(f"the request is {req.status}")
        return req

    async def _expire(self, *, owner_id: str | None = None, party_id: str | None = None) -> None:
        """Pending requests past their time become expired (and their
        relying parties hear of it)."""
        now = self.clock()
        scope = (
            signing_requests.c.owner_id == owner_id
            if owner_id is not None
            else signing_requests.c.relying_party_id == party_id
        )
        async with self.db.transaction() as conn:
            ids = [
                r[0]
                for r in await conn.execute(
                    select(signing_requests.c.id).where(
                        scope,
                        signing_requests.c.status == "pending",
                        signing_requests.c.expires_at <= now,
                    )
                )
            ]
            if ids:
                await conn.execute(
                    update(signing_requests)
                    .where(signing_requests.c.id.in_(ids), signing_requests.c.status == "pending")
                    .values(status="expired", decided_at=now)
                )
            # Signing cut short (the process died): failed, never approved.
            await conn.execute(
                update(signing_requests)
                .where(
                    scope,
                    signing_requests.c.status == "signing",
                    signing_requests.c.decided_at <= now - SIGNING_GRACE,
                )
                .values(status="failed", error="signing was interrupted")
            )
        for request_id in ids:
            self._decided(request_id)

    def add_decided_listener(self, listener: Callable[[str], Coroutine[Any, Any, None]]) -> None:
        """`listener(request_id)` runs beside the answer once a request is
        decided (approved, declined, expired, failed); each on its own, so
        one listener's failure is not another's."""
        self._decided_listeners.append(listener)

    def _decided(self, request_id: str) -> None:
        for listener in self._decided_listeners:
            self._spawn(listener(request_id))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Notices (callbacks, pushes) run beside the answer; a failure is
        logged, never raised into a request."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(_finished)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Wait for the callbacks in flight (the app's cleanup)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _decide(self, req: SigningRequest, status: str, error: str | None) -> None:
        now = self.clock()
        async with self.db.transaction() as conn:
            result = await conn.execute(
                update(signing_requests)
                .where(signing_requests.c.id == req.id, signing_requests.c.status == "pending")
                .values(status=status, decided_at=now, error=error)
            )
            if result.rowcount != 1:
                raise ConflictError("the request was decided meanwhile")
            await append_event(
                conn,
                EventType.REQUEST_DECIDE,
                owner_id=req.owner_id,
                credential_id=req.credential_id,
                data={"request": req.id, "decision": status},
                at=now,
            )
        self._decided(req.id)

    async def _failed_approval(self, req: SigningRequest, reason: str) -> None:
        """Count a refused approval; after a few the request fails."""
        async with self.db.transaction() as conn:
            await conn.execute(
                update(signing_requests)
                .where(signing_requests.c.id == req.id)
                .values(failed_approvals=signing_requests.c.failed_approvals + 1)
            )
            count = (
                await conn.execute(
                    select(signing_requests.c.failed_approvals).where(
                        signing_requests.c.id == req.id
                    )
                )
            ).scalar_one()
        if count >= MAX_FAILED_APPROVALS:
            with contextlib.suppress(ConflictError):
                await self._decide(req, "failed", _short(reason))


def _finished(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("a notice failed: %s", type(task.exception()).__name__)


def _commitment(req: SigningRequest) -> bytes:
    return codes.commitment(req.id, req.hash_algorithm, req.hashes)


def _document_row(position: int, doc: NewDocument, level: str) -> tuple[dict[str, object], bytes]:
    """The document's row, and the hash the request commits to."""
    if doc.format not in FORMATS:
        raise ValidationError("format must be pades, cades, xades or raw", field="documents.format")
    if level not in LEVELS[doc.format]:
        raise ValidationError(f"level {level} is not offered for {doc.format}", field="level")
    content = doc.content
    if doc.format == "pades" and (content is None or not content.startswith(PDF_MAGIC)):
        raise ValidationError("PAdES needs the PDF itself", field="documents.content")
    if doc.format == "xades":
        if content is None:
            raise ValidationError("XAdES needs the XML document itself", field="documents.content")
        _check_xml(content)
    if doc.format == "raw" and content is not None:
        raise ValidationError("a raw signature takes only the hash", field="documents.content")
    if content is not None:
        digest = hashlib.sha256(content).digest()
        if doc.document_hash is not None and doc.document_hash != digest:
            raise ValidationError("the hash does not match the content", field="documents.hash")
    elif doc.document_hash is not None:
        digest = doc.document_hash
    else:
        raise ValidationError("send the content or its SHA-256", field="documents.content")
    row: dict[str, object] = {
        "position": position,
        "name": doc.name,
        "format": doc.format,
        "document_hash": digest,
        "content": content,
        "content_type": CONTENT_TYPES.get(doc.format),
    }
    return row, digest


def _check_xml(content: bytes) -> None:
    """An XML document XAdES can sign (its signing parses it again, the same
    way): well-formed, no DTD, no entity; refused now rather than after the
    citizen approved it."""
    try:
        parse_untrusted(content)
    except UntrustedXmlError as e:
        raise ValidationError(e.message, field="documents.content") from e


def _short(text: str) -> str:
    return text if len(text) <= 200 else text[:197] + "..."


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _sad_aad(request_id: str) -> bytes:
    return b"cloudsign/sad-pickup/v1\x00" + request_id.encode()
