"""eGov QR signing: the protocol Kazakh e-government services speak to the
eGov mobile app, with cloudsign in the app's place (docs/egov-qr.md).

A service shows a QR (or a `mobileSign:<url>` deep link) naming its
**API No. 1**. The citizen's phone hands the link to this server
(`POST /api/v1/device/egov-qr`), which, server side and never from a
browser:

1. checks the URL: https (loopback http only with `egov_allow_loopback`),
   under the `egov_prefix` a security officer registered for that service
   (a relying party), no credentials, no dot segments; and takes the link
   once (its hash is unique in `egov_procedures`: a replayed QR is refused);
2. GETs API No. 1 (`description`, `expiry_date`, `organisation`,
   `document: {uri, auth_type, auth_token}`), the API No. 2 `uri` under the
   same prefix; `auth_type` None or Token (Eds, an authentication XML signed
   before anything is shown, is refused);
3. GETs API No. 2 (`signMethod`, `version`, `documentsToSign[]` with `id`,
   `nameRu/nameKz/nameEn`, `meta[]`, `document.file {mime, data}`), with
   `Authorization: Bearer <auth_token>` for Token; CMS_SIGN_ONLY and
   CMS_WITH_DATA only (XML, SIGN_BYTES_ARRAY, MIX_SIGN are refused);
4. turns it into an ordinary signing request for the scanning citizen
   (`SigningRequests.create_scanned`): each document's content signed in
   detached CAdES, approved on the phone like every other request.

Every answer is bounded (64 KiB for API No. 1, `egov_max_response_bytes` for
No. 2), must be 200 `application/json` without a redirect, within a
timeout, and is validated field by field (unknown fields are ignored).

Once the request is decided (`deliver`, a decided-listener of
SigningRequests): approved, the signatures go back to API No. 2 with a PUT
of the same JSON whose `document.file.data` is now the CMS (base64 DER;
for CMS_WITH_DATA the content is attached to the CAdES, which its signed
attributes already commit to), retried on network errors and 5xx; the
outcome is kept on the procedure and the request (`callback_status`) with a
`request.decide` audit event. The protocol has no way to report a decline
or an expiry: those are only recorded here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import aiohttp
import orjson
from asn1crypto import cms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from yarl import URL

from cloudsign.accounts import Owner
from cloudsign.clock import Clock
from cloudsign.errors import (
    CloudsignError,
    ConflictError,
    ForbiddenError,
    ValidationError,
)
from cloudsign.events import EventType, append_event
from cloudsign.storage import Database
from cloudsign.web.inputs import Fields
from hsm_bridge import KeyedHasher
from mobile_api.relying import RelyingParties, RelyingParty
from mobile_api.requests import NewDocument, NoDeviceError, SigningRequest, SigningRequests
from mobile_api.settings import MobileSettings
from mobile_api.tables import egov_procedures, signing_requests

log = logging.getLogger(__name__)

LINK_SCHEME: Final = "mobileSign:"
MAX_LINK: Final = 2000
API1_MAX_BYTES: Final = 64 << 10
TIMEOUT: Final = aiohttp.ClientTimeout(total=20, connect=5)
#: Sign methods turned into signing requests; the others are refused by name.
SIGN_METHODS: Final = ("CMS_SIGN_ONLY", "CMS_WITH_DATA")
REFUSED_METHODS: Final = {
    "XML": "XML signatures (XMLDSig) are not offered by cloudsign",
    "SIGN_BYTES_ARRAY": "raw signatures over the bytes are not offered for eGov QR",
    "MIX_SIGN": "mixed sign methods are not offered",
}
AUTH_TYPES: Final = ("None", "Token")
#: Delivery: this many PUTs at most, waiting these seconds between them.
DELIVERY_ATTEMPTS: Final = 3
RETRY_DELAYS: Final = (0.5, 2.0)
MAX_META: Final = 20
MAX_NAME: Final = 200
MAX_TEXT: Final = 1000
_ZONE_SUFFIX: Final = re.compile(r"\[[A-Za-z0-9_/+-]{1,64}\]$")
_LOOPBACK: Final = ("127.0.0.1", "localhost", "::1")


class EgovServiceError(CloudsignError):
    """The e-government service's answer cannot be used (unreachable, not
    200 JSON, too large, malformed)."""

    code = "egov_service_answer"
    status = 422
    title = "The e-government service's answer cannot be used"


class EgovUnsupportedError(CloudsignError):
    """The procedure asks for what cloudsign does not do."""

    code = "egov_unsupported"
    status = 422
    title = "Not offered for eGov QR signing"


@dataclass(frozen=True)
class Api1:
    description: str
    organisation: str
    expires_at: datetime
    api2_uri: str
    auth_type: str
    auth_token: str | None

    def __repr__(self) -> str:  # the token is a secret
        return f"Api1({self.api2_uri!r}, {self.auth_type})"


@dataclass(frozen=True)
class Api2Document:
    id: int
    names: dict[str, str]
    meta: list[dict[str, str]]
    mime: str
    data: bytes

    def name(self) -> str:
        for key in ("nameRu", "nameKz", "nameEn"):
            if key in self.names:
                return self.names[key]
        return f"document {self.id}"

    def skeleton(self) -> dict[str, Any]:
        """What the PUT repeats of it (everything but the data)."""
        return {"id": self.id, **self.names, "meta": self.meta, "mime": self.mime}


@dataclass(frozen=True)
class Api2:
    sign_method: str
    version: int
    documents: tuple[Api2Document, ...]


def parse_link(link: str, *, allow_loopback: bool) -> str:
    """The API No. 1 URL a scanned QR or deep link names."""
    text = link.strip()
    if text.startswith(LINK_SCHEME):
        text = text[len(LINK_SCHEME) :]
    bad = ValidationError("not an eGov QR link (mobileSign:https://...)", field="link")
    if not text or len(text) > MAX_LINK or not text.isascii() or "\\" in text:
        raise bad
    url = urlsplit(text)
    loopback = allow_loopback and url.scheme == "http" and url.hostname in _LOOPBACK
    if url.scheme != "https" and not loopback:
        raise ValidationError("eGov QR links must be https URLs", field="link")
    if not url.hostname or url.username or url.password or url.fragment:
        raise bad
    segments = unquote(url.path).split("/")
    if any(s in (".", "..") for s in segments):
        raise bad
    return text


def _check_url(text: str, party: RelyingParty, *, allow_loopback: bool, name: str) -> str:
    try:
        url = parse_link(text, allow_loopback=allow_loopback)
    except ValidationError as e:
        raise EgovServiceError(f"{name} is not a usable URL: {e.detail}") from e
    if party.egov_prefix is None or not url.startswith(party.egov_prefix):
        raise EgovServiceError(f"{name} is outside the service's registered prefix")
    return url


def attach_content(detached: bytes, content: bytes) -> bytes:
    """The same CMS SignedData with its content attached (CMS_WITH_DATA):
    the signed attributes commit to the content's digest, so attaching it
    changes no signed byte."""
    info = cms.ContentInfo.load(detached)
    signed = info["content"]
    if signed["encap_content_info"]["content_type"].native != "data":
        raise ValueError("only id-data content can be attached")
    parts: dict[str, Any] = {
        "version": signed["version"],
        "digest_algorithms": signed["digest_algorithms"],
        "encap_content_info": {"content_type": "data", "content": content},
        "signer_infos": signed["signer_infos"],
    }
    for optional in ("certificates", "crls"):
        if signed[optional].native is not None:
            parts[optional] = signed[optional]
    attached = cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(parts)})
    return bytes(attached.dump(force=True))


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(_ZONE_SUFFIX.sub("", text))
    except ValueError as e:
        raise EgovServiceError("API No. 1: expiry_date is not an ISO 8601 time") from e
    if moment.tzinfo is None:
        raise EgovServiceError("API No. 1: expiry_date has no time zone")
    return moment


def _fields(data: object, api: str) -> Fields:
    if not isinstance(data, dict):
        raise EgovServiceError(f"{api}: the answer must be a JSON object")
    return Fields(data)


class EgovQr:
    """Scanned eGov QR procedures: fetched, turned into signing requests,
    and their signatures delivered back."""

    def __init__(
        self,
        db: Database,
        hasher: KeyedHasher,
        parties: RelyingParties,
        requests: SigningRequests,
        http: aiohttp.ClientSession,
        settings: MobileSettings,
        *,
        clock: Clock,
    ) -> None:
        self.db = db
        self.hasher = hasher
        self.parties = parties
        self.requests = requests
        self.http = http
        self.settings = settings
        self.clock = clock
        #: Seconds between delivery attempts (tests shorten them).
        self.retry_delays: tuple[float, ...] = RETRY_DELAYS

    # -- the phone hands in a link ------------------------------------------------------

    async def scan(self, owner: Owner, link: str) -> SigningRequest:
        owner.require_full()
        allow = self.settings.egov_allow_loopback
        api1_url = parse_link(link, allow_loopback=allow)
        party = await self.parties.egov_service(api1_url)
        if party is None:
            raise ForbiddenError("this e-government service is not registered with cloudsign")
        # What would refuse the request anyway is checked before the link is used up.
        if not await self.requests.devices.has_devices(owner.id):
            raise NoDeviceError("bind a phone first: requests are approved on a bound device")
        if not await self.requests.credentials.active_ids(owner.id):
            raise ConflictError("no active key to sign with")
        procedure_id = str(uuid.uuid4())
        now = self.clock()
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    insert(egov_procedures).values(
                        id=procedure_id,
                        link_hash=hashlib.sha256(api1_url.encode()).hexdigest(),
                        relying_party_id=party.id,
                        owner_id=owner.id,
                        status="fetching",
                        created_at=now,
                    )
                )
        except IntegrityError as e:
            raise ConflictError(
                "this QR code was used already: ask the service for a new one"
            ) from e
        try:
            api1 = await self._api1(api1_url, party)
            if api1.expires_at <= self.clock():
                raise ConflictError("the signing procedure has expired: ask for a new QR code")
            api2 = await self._api2(api1, party)
            req = await self.requests.create_scanned(
                party,
                owner,
                _display_text(api1),
                [
                    NewDocument(name=d.name(), format="cades", content=d.data, document_hash=None)
                    for d in api2.documents
                ],
                "B",
                api1.expires_at,
            )
        except CloudsignError as e:
            await self._finish(procedure_id, "refused", e.detail)
            raise
        token = None
        if api1.auth_token is not None:
            token = await self._seal(procedure_id, api1.auth_token)
        async with self.db.transaction() as conn:
            await conn.execute(
                update(egov_procedures)
                .where(egov_procedures.c.id == procedure_id)
                .values(
                    request_id=req.id,
                    api2_uri=api1.api2_uri,
                    auth_type=api1.auth_type,
                    auth_token=token,
                    sign_method=api2.sign_method,
                    documents={
                        "version": api2.version,
                        "documents": [d.skeleton() for d in api2.documents],
                    },
                    status="pending",
                )
            )
        return req

    async def _api1(self, url: str, party: RelyingParty) -> Api1:
        body = _fields(await self._get_json(url, {}, API1_MAX_BYTES, "API No. 1"), "API No. 1")
        try:
            document = body.obj("document")
            organisation = body.obj("organisation") if "organisation" in body else None
            org_name = ""
            if organisation is not None:
                for key in ("nameRu", "nameKz", "nameEn"):
                    name = organisation.optional_text(key, max_len=MAX_NAME)
                    if name:
                        org_name = name
                        break
            description = body.text("description", max_len=MAX_TEXT, multiline=True)
            expiry = body.text("expiry_date", max_len=64)
            uri = document.text("uri", max_len=MAX_LINK)
            auth_type = document.text("auth_type", max_len=16)
            token = document.optional_text("auth_token", max_len=2000)
        except ValidationError as e:
            raise EgovServiceError(f"API No. 1: {e.detail}") from e
        if auth_type not in AUTH_TYPES:
            if auth_type == "Eds":
                raise EgovUnsupportedError(
                    "auth_type Eds (an authentication XML signed before the documents are "
                    "shown) is not offered"
                )
            raise EgovServiceError("API No. 1: auth_type must be None, Token or Eds")
        if auth_type == "Token" and not token:
            raise EgovServiceError("API No. 1: auth_type Token without auth_token")
        api2_uri = _check_url(
            uri, party, allow_loopback=self.settings.egov_allow_loopback, name="document.uri"
        )
        return Api1(
            description=description,
            organisation=org_name or party.name,
            expires_at=_parse_time(expiry),
            api2_uri=api2_uri,
            auth_type=auth_type,
            auth_token=token if auth_type == "Token" else None,
        )

    async def _api2(self, api1: Api1, party: RelyingParty) -> Api2:
        raw = await self._get_json(
            api1.api2_uri,
            _auth_header(api1.auth_token),
            self.settings.egov_max_response_bytes,
            "API No. 2",
        )
        body = _fields(raw, "API No. 2")
        try:
            method = body.text("signMethod", max_len=50)
            version = body.integer("version", low=1, high=1000, default=1)
            items = body.objects("documentsToSign", max_items=self.settings.max_request_documents)
        except ValidationError as e:
            raise EgovServiceError(f"API No. 2: {e.detail}") from e
        if method in REFUSED_METHODS:
            raise EgovUnsupportedError(f"signMethod {method}: {REFUSED_METHODS[method]}")
        if method not in SIGN_METHODS:
            raise EgovServiceError(f"API No. 2: unknown signMethod {method[:50]!r}")
        documents = []
        seen: set[int] = set()
        for item in items:
            try:
                doc_id = item.integer("id", low=0, high=2**53)
                names = {
                    k: item.text(k, max_len=MAX_NAME)
                    for k in ("nameRu", "nameKz", "nameEn")
                    if k in item
                }
                meta = [
                    {"name": m.text("name", max_len=100), "value": m.text("value", max_len=500)}
                    for m in (
                        item.objects("meta", max_items=MAX_META, min_items=0)
                        if "meta" in item
                        else []
                    )
                ]
                file = item.obj("document").obj("file")
                mime = file.text("mime", max_len=100)
                data = file.b64(
                    "data", max_bytes=self.settings.egov_max_response_bytes, min_bytes=1
                )
            except ValidationError as e:
                raise EgovServiceError(f"API No. 2: {e.detail}") from e
            if doc_id in seen:
                raise EgovServiceError(f"API No. 2: document id {doc_id} appears twice")
            seen.add(doc_id)
            documents.append(Api2Document(doc_id, names, meta, mime, data))
        return Api2(method, version, tuple(documents))

    async def _get_json(self, url: str, headers: dict[str, str], limit: int, api: str) -> object:
        try:
            async with self.http.get(
                URL(url, encoded=True),
                headers={"Accept": "application/json", "Accept-Language": "ru", **headers},
                timeout=TIMEOUT,
                allow_redirects=False,
            ) as resp:
                if resp.status != 200:
                    raise EgovServiceError(f"{api}: the service answered HTTP {resp.status}")
                if resp.content_type != "application/json":
                    raise EgovServiceError(f"{api}: the answer is not application/json")
                raw = await _read_bounded(resp, limit, api)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise EgovServiceError(
                f"{api}: the service cannot be reached ({type(e).__name__})"
            ) from e
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise EgovServiceError(f"{api}: the answer is not JSON") from e

    # -- the request is decided: the signatures go back ------------------------------

    async def deliver(self, request_id: str) -> None:
        """A decided-listener: PUT the signatures to API No. 2 (approved), or
        only record the outcome (declined, expired, failed)."""
        async with self.db.transaction() as conn:
            row = (
                (
                    await conn.execute(
                        select(egov_procedures).where(egov_procedures.c.request_id == request_id)
                    )
                )
                .mappings()
                .first()
            )
            if row is None or row["status"] != "pending":
                return
            taken = await conn.execute(
                update(egov_procedures)
                .where(egov_procedures.c.id == row["id"], egov_procedures.c.status == "pending")
                .values(status="sending")
            )
            if taken.rowcount != 1:
                return
        req = await self.requests.get(row["owner_id"], request_id)
        if req.status != "approved":
            # The protocol has no call for a decline or an expiry.
            await self._finish(row["id"], req.status if req.status != "pending" else "failed", None)
            return
        try:
            outcome, attempts, error = await self._send(row, req)
        except Exception as e:  # noqa: BLE001 - the procedure must not stay "sending"
            # Never left "sending": an unexpected failure is a failed delivery.
            outcome, attempts, error = "failed", 0, f"not sent ({type(e).__name__})"
        await self._record(row, req, outcome, attempts, error)

    async def _send(self, row: Any, req: SigningRequest) -> tuple[str, int, str | None]:
        signatures = [d.signature for d in req.documents]
        if any(s is None for s in signatures):
            return "failed", 0, "the signatures were not made"
        token = None
        if row["auth_token"] is not None:
            token = await self._unseal(row["id"], bytes(row["auth_token"]))
        body = orjson.dumps(
            await self._put_body(row, req, [s for s in signatures if s is not None])
        )
        return await self._put(row["api2_uri"], body, token)

    async def _put_body(
        self, row: Any, req: SigningRequest, signatures: Sequence[bytes]
    ) -> dict[str, Any]:
        method = row["sign_method"]
        kept = row["documents"]
        documents = []
        for skeleton, doc, signature in zip(
            kept["documents"], req.documents, signatures, strict=True
        ):
            if method == "CMS_WITH_DATA":
                content = await self.requests.content(req.owner_id or "", req.id, doc.position)
                signature = attach_content(signature, content)
            item = {k: v for k, v in skeleton.items() if k != "mime"}
            item["document"] = {"file": {"mime": skeleton["mime"], "data": _b64(signature)}}
            documents.append(item)
        return {"signMethod": method, "version": kept["version"], "documentsToSign": documents}

    async def _put(self, url: str, body: bytes, token: str | None) -> tuple[str, int, str | None]:
        headers = {"Content-Type": "application/json", **_auth_header(token)}
        error: str | None = None
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            try:
                async with self.http.put(
                    URL(url, encoded=True),
                    data=body,
                    headers=headers,
                    timeout=TIMEOUT,
                    allow_redirects=False,
                ) as resp:
                    if 200 <= resp.status < 300:
                        return "sent", attempt, None
                    error = f"the service answered HTTP {resp.status}"
                    if resp.status < 500 and resp.status != 429:
                        return "failed", attempt, error
            except (aiohttp.ClientError, TimeoutError) as e:
                error = f"the service cannot be reached ({type(e).__name__})"
            if attempt < DELIVERY_ATTEMPTS:
                delays = self.retry_delays
                await asyncio.sleep(delays[min(attempt - 1, len(delays) - 1)])
        return "failed", DELIVERY_ATTEMPTS, error

    async def _record(
        self, row: Any, req: SigningRequest, outcome: str, attempts: int, error: str | None
    ) -> None:
        now = self.clock()
        async with self.db.transaction() as conn:
            await conn.execute(
                update(egov_procedures)
                .where(egov_procedures.c.id == row["id"])
                .values(status=outcome, attempts=attempts, error=error, finished_at=now)
            )
            await conn.execute(
                update(signing_requests)
                .where(signing_requests.c.id == req.id)
                .values(callback_status=outcome)
            )
            await append_event(
                conn,
                EventType.REQUEST_DECIDE,
                owner_id=req.owner_id,
                credential_id=req.credential_id,
                data={
                    "request": req.id,
                    "egov_delivery": outcome,
                    "attempts": attempts,
                    "relying_party": row["relying_party_id"],
                },
                at=now,
            )
        if outcome != "sent":
            log.info("eGov delivery of request %s failed: %s", req.id, error)

    async def _finish(self, procedure_id: str, status: str, error: str | None) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                update(egov_procedures)
                .where(egov_procedures.c.id == procedure_id)
                .values(
                    status=status,
                    error=None if error is None else error[:200],
                    finished_at=self.clock(),
                )
            )

    # -- the Token, sealed at rest -------------------------------------------------------

    async def _key(self, procedure_id: str) -> AESGCM:
        # The relying parties' HMAC key, under a label no client id can take
        # (those are `rp-<hex>`): no new HSM object to provision.
        label = b"egov-token\x00" + procedure_id.encode()
        return AESGCM(await self.hasher.hmac_sha256("rp-callback", label))

    async def _seal(self, procedure_id: str, token: str) -> bytes:
        nonce = secrets.token_bytes(12)
        key = await self._key(procedure_id)
        return nonce + key.encrypt(nonce, token.encode(), procedure_id.encode())

    async def _unseal(self, procedure_id: str, sealed: bytes) -> str:
        key = await self._key(procedure_id)
        return key.decrypt(sealed[:12], sealed[12:], procedure_id.encode()).decode()


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int, api: str) -> bytes:
    too_large = EgovServiceError(f"{api}: the answer is larger than {limit} bytes")
    if resp.content_length is not None and resp.content_length > limit:
        raise too_large
    chunks = []
    total = 0
    async for chunk in resp.content.iter_chunked(64 << 10):
        total += len(chunk)
        if total > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _auth_header(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _display_text(api1: Api1) -> str:
    text = f"{api1.organisation}: {api1.description}"
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
