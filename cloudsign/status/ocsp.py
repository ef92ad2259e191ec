"""OCSP responder (RFC 6960; RFC 5019 GET) for the issuing CA's certificates.

Responses are signed by the delegated OCSP certificate (id-kp-OCSPSigning,
id-pkix-ocsp-nocheck) whose key lives in the HSM. A request for one
certificate without a nonce gets a pre-signed response from a cache that
holds only `good` answers and is emptied for a serial the moment its
revocation is known (`revoked`, called by the revocation service and the
watcher); a generation counter keeps an answer read before a revocation
from entering the cache after it. Requests with a nonce (RFC 8954, 1-32
octets, echoed) are always signed afresh.

Every outcome is an OCSPResponse: bad or oversized requests get
malformedRequest, requests only about other issuers unauthorized, internal
failures internalError/tryLater.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from asn1crypto import algos, core, ocsp, x509
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from cloudsign.ca import HsmKeySigner, certificates, key_identifier, serial_hex
from cloudsign.clock import Clock
from cloudsign.status import der
from cloudsign.status.certs import ServiceIdentity
from cloudsign.storage import Database
from hsm_bridge import HsmError

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES: Final = 8192
MAX_CERTS_PER_REQUEST: Final = 32
MAX_NONCE_BYTES: Final = 32  # RFC 8954 §2.1
#: A cached good response is served for this share of its validity.
CACHE_SHARE: Final = 0.5
MAX_CACHE_ENTRIES: Final = 100_000
_HASHES: Final = ("sha1", "sha256", "sha384", "sha512")


def _status_only(status: str) -> bytes:
    return bytes(ocsp.OCSPResponse({"response_status": status}).dump())


MALFORMED: Final = _status_only("malformed_request")
INTERNAL_ERROR: Final = _status_only("internal_error")
TRY_LATER: Final = _status_only("try_later")
UNAUTHORIZED: Final = _status_only("unauthorized")


class MalformedRequestError(Exception):
    """The request is not a well-formed OCSPRequest we can answer."""


@dataclass(frozen=True)
class ParsedRequest:
    cert_ids: list[ocsp.CertId]
    nonce: core.OctetString | None


def parse_request(body: bytes) -> ParsedRequest:
    if not body or len(body) > MAX_REQUEST_BYTES:
        raise MalformedRequestError("empty or oversized request")
    try:
        req = ocsp.OCSPRequest.load(body, strict=True)
        tbs = req["tbs_request"]
        if tbs["version"].native != "v1":
            raise MalformedRequestError("unsupported OCSP version")
        items = tbs["request_list"]
        if not 1 <= len(items) <= MAX_CERTS_PER_REQUEST:
            raise MalformedRequestError("request list must hold 1..32 certificates")
        cert_ids = [item["req_cert"] for item in items]
        for cid in cert_ids:
            cid["hash_algorithm"]["algorithm"].native  # noqa: B018 - force the parse
            cid["serial_number"].native  # noqa: B018
        nonce: core.OctetString | None = None
        extensions = tbs["request_extensions"]
        for ext in extensions if extensions.native is not None else []:
            if ext["extn_id"].native == "nonce":
                value = ext["extn_value"].parsed
                if not isinstance(value, core.OctetString) or not (
                    1 <= len(value.native) <= MAX_NONCE_BYTES
                ):
                    raise MalformedRequestError("nonce must be an OCTET STRING of 1-32 octets")
                nonce = value
            elif ext["critical"].native:
                raise MalformedRequestError(f"unsupported critical extension {ext['extn_id']}")
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as e:
        raise MalformedRequestError("not a DER OCSPRequest") from e
    return ParsedRequest(cert_ids, nonce)


@dataclass(frozen=True)
class _Status:
    status: str  # good | revoked | unknown
    revoked_at: datetime | None = None
    reason: str | None = None


@dataclass(frozen=True)
class _Encoded:
    """What every answer of one responder certificate carries, in DER."""

    signer: HsmKeySigner
    responder_id: bytes
    algorithm: bytes
    certs: bytes


@dataclass
class _Cached:
    der: bytes
    expires: float  # time.monotonic()
    serial: int


class OcspResponder:
    def __init__(
        self,
        db: Database,
        issuer: x509.Certificate,
        identity: ServiceIdentity,
        *,
        validity: timedelta,
        clock: Clock,
        extra_certs: Iterable[x509.Certificate] = (),
    ) -> None:
        self.db = db
        self.issuer = issuer
        self.validity = validity
        self.clock = clock
        self._extra_certs = list(extra_certs)
        name_der = issuer.subject.dump()
        key_bits = bytes(issuer.public_key["public_key"].contents[1:])
        self._issuer_hashes = {
            h: (hashlib.new(h, name_der).digest(), hashlib.new(h, key_bits).digest())
            for h in _HASHES
        }
        self._cache: dict[bytes, _Cached] = {}
        #: Registry answers (good or revoked) by serial, for requests with a
        #: nonce, which cannot reuse a signed answer: dropped on the same
        #: revocation notices as the cached answers, and after the same time.
        self._statuses: dict[str, tuple[_Status, float]] = {}
        self._by_serial: dict[int, set[bytes]] = {}
        self._by_body: dict[bytes, bytes] = {}  # request DER -> cache key
        self._generation = 0
        self.stats = {"cache_hits": 0, "signed": 0, "malformed": 0}
        self.use_identity(identity)

    def use_identity(self, identity: ServiceIdentity) -> None:
        """Sign with this certificate from now on (a renewal); cached
        answers carrying the old one are dropped."""
        self.identity = identity
        # Encoded once and re-loaded: asn1crypto re-encodes a constructed
        # structure on every dump, a loaded one not.
        certs = ocsp.Certificates([identity.certificate, *self._extra_certs])
        self._certs = ocsp.Certificates.load(certs.dump())
        self._responder_id = ocsp.ResponderId.load(
            ocsp.ResponderId(
                name="by_key", value=key_identifier(identity.certificate.public_key)
            ).dump()
        )
        signer = identity.signer
        self._encoded = _Encoded(
            signer=signer,
            responder_id=self._responder_id.dump(),
            algorithm=algos.SignedDigestAlgorithm({"algorithm": signer.signature_algorithm}).dump(),
            certs=self._certs.dump(),
        )
        self.clear_cache()

    # -- revocation listener ---------------------------------------------------

    def revoked(self, serial: str) -> None:
        self._generation += 1
        self._statuses.pop(serial.lower(), None)
        for key in self._by_serial.pop(int(serial, 16), set()):
            self._cache.pop(key, None)

    def clear_cache(self) -> None:
        self._generation += 1
        self._cache.clear()
        self._by_serial.clear()
        self._by_body.clear()
        self._statuses.clear()

    # -- answering ---------------------------------------------------------

    def _ours(self, cid: ocsp.CertId) -> bool:
        hashes = self._issuer_hashes.get(cid["hash_algorithm"]["algorithm"].native)
        return (
            hashes is not None
            and (
                cid["issuer_name_hash"].native,
                cid["issuer_key_hash"].native,
            )
            == hashes
        )

    async def respond(self, body: bytes) -> bytes:
        """An OCSPResponse (DER) for any input; never raises."""
        # Fast path: the same nonce-less request bytes as a cached answer's.
        known = self._by_body.get(body)
        if known is not None:
            hit = self._cache.get(known)
            if hit is not None and hit.expires > time.monotonic():
                self.stats["cache_hits"] += 1
                return hit.der
            self._by_body.pop(body, None)
        try:
            request = parse_request(body)
        except MalformedRequestError:
            self.stats["malformed"] += 1
            return MALFORMED
        cacheable = len(request.cert_ids) == 1 and request.nonce is None
        if cacheable:
            key = request.cert_ids[0].dump()
            hit = self._cache.get(key)
            if hit is not None:
                if hit.expires > time.monotonic():
                    self.stats["cache_hits"] += 1
                    return hit.der
                self._cache.pop(key, None)
        try:
            return await self._answer(request, cacheable, body)
        except (SQLAlchemyError, OSError) as e:
            log.warning("OCSP: registry unavailable: %s", type(e).__name__)
            return TRY_LATER
        except HsmError as e:
            log.warning("OCSP: signing failed: %s", e.code)
            return INTERNAL_ERROR

    async def _answer(self, request: ParsedRequest, cacheable: bool, body: bytes) -> bytes:
        ours = [self._ours(cid) for cid in request.cert_ids]
        if not any(ours):
            return UNAUTHORIZED
        generation = self._generation
        serials = [
            serial_hex(cid["serial_number"].native)
            for cid, mine in zip(request.cert_ids, ours, strict=True)
            if mine and cid["serial_number"].native > 0
        ]
        statuses = await self._lookup(serials)
        now = self.clock().replace(microsecond=0)
        this_update = der.generalized_time(now)
        next_update = der.generalized_time(now + self.validity)
        responses: list[bytes] = []
        statuses_of: list[str] = []
        for cid, mine in zip(request.cert_ids, ours, strict=True):
            serial = cid["serial_number"].native
            status = (
                statuses.get(serial_hex(serial), _Status("unknown"))
                if mine and serial > 0
                else _Status("unknown")
            )
            statuses_of.append(status.status)
            if status.status == "good":
                responses.append(der.good_single_response(cid.dump(), this_update, next_update))
            else:
                responses.append(self._single(cid, status, now).dump())
        # Encoded directly around pieces encoded once (cloudsign/status/der.py).
        identity = self._encoded
        tbs = der.response_data(
            identity.responder_id,
            der.generalized_time(now),
            responses,
            der.nonce_extensions(request.nonce.dump()) if request.nonce is not None else b"",
        )
        signature = await identity.signer.sign(tbs)
        self.stats["signed"] += 1
        answer = der.successful_response(tbs, identity.algorithm, signature, identity.certs)
        if (
            cacheable
            and generation == self._generation
            and statuses_of[0] == "good"
            and len(self._cache) < MAX_CACHE_ENTRIES
            and len(self._by_body) < MAX_CACHE_ENTRIES
        ):
            key = request.cert_ids[0].dump()
            serial = request.cert_ids[0]["serial_number"].native
            ttl = self.validity.total_seconds() * CACHE_SHARE
            self._cache[key] = _Cached(answer, time.monotonic() + ttl, serial)
            self._by_serial.setdefault(serial, set()).add(key)
            self._by_body[body] = key
        return answer

    def _single(self, cid: ocsp.CertId, status: _Status, now: datetime) -> ocsp.SingleResponse:
        cert_status: ocsp.CertStatus
        if status.status == "revoked" and status.revoked_at is not None:
            info: dict[str, Any] = {"revocation_time": status.revoked_at.replace(microsecond=0)}
            if status.reason:
                info["revocation_reason"] = status.reason
            cert_status = ocsp.CertStatus(name="revoked", value=info)
        elif status.status == "good":
            cert_status = ocsp.CertStatus(name="good", value=None)
        else:
            cert_status = ocsp.CertStatus(name="unknown", value=None)
        return ocsp.SingleResponse(
            {
                "cert_id": cid,
                "cert_status": cert_status,
                "this_update": now,
                "next_update": now + self.validity,
            }
        )

    async def _lookup(self, serials: list[str]) -> dict[str, _Status]:
        if not serials:
            return {}
        now = time.monotonic()
        known = {s: hit[0] for s in serials if (hit := self._statuses.get(s)) and hit[1] > now}
        if len(known) == len(serials):
            return known
        generation = self._generation
        found = await self._query([s for s in serials if s not in known])
        if generation == self._generation and len(self._statuses) < MAX_CACHE_ENTRIES:
            until = now + self.validity.total_seconds() * CACHE_SHARE
            for serial, status in found.items():
                self._statuses[serial] = (status, until)
        return {**known, **found}

    async def _query(self, serials: list[str]) -> dict[str, _Status]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(
                        certificates.c.serial,
                        certificates.c.status,
                        certificates.c.revoked_at,
                        certificates.c.revocation_reason,
                    ).where(certificates.c.serial.in_(serials))
                )
            ).all()
        return {
            r.serial: _Status(r.status, r.revoked_at, r.revocation_reason)
            for r in rows
            if r.status in ("good", "revoked")
        }
