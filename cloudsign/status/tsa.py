"""Time-stamping authority (RFC 3161, with RFC 5816 ESSCertIDv2).

`TimeStampAuthority.respond(body)` turns any input into a TimeStampResp:
a granted token, or a rejection with failInfo badRequest (not a
TimeStampReq, oversized), badAlg (hash not accepted), badDataFormat (imprint
length does not fit the hash), unacceptedPolicy or unacceptedExtension.

The token is CMS SignedData over TSTInfo, signed in the HSM by the TSU key;
its certificate has the single critical extendedKeyUsage timeStamping.
Serial numbers are the generation time in nanoseconds followed by 64
random bits: unique across restarts and processes, and ordered by time.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from asn1crypto import algos, cms, core, tsp, x509

from cloudsign.clock import Clock
from cloudsign.status.certs import ServiceIdentity
from hsm_bridge import HsmError

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES: Final = 8192
#: Hashes a message imprint may use, with their digest sizes.
ACCEPTED_HASHES: Final = {"sha256": 32, "sha384": 48, "sha512": 64}


class TimeStampResp(tsp.TimeStampResp):  # type: ignore[misc]
    """RFC 3161 §2.4.2 with timeStampToken OPTIONAL, as the RFC has it
    (asn1crypto 1.5 makes it mandatory, so a rejection could not be encoded)."""

    _fields = [  # noqa: RUF012 - asn1crypto's declarative spec
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


class TsaRejection(Exception):
    def __init__(self, fail_info: str, text: str) -> None:
        super().__init__(text)
        self.fail_info = fail_info
        self.text = text


def rejection(fail_info: str, text: str) -> bytes:
    return bytes(
        TimeStampResp(
            {
                "status": {
                    "status": "rejection",
                    "status_string": [text],
                    "fail_info": tsp.PKIFailureInfo({fail_info}),
                }
            }
        ).dump()
    )


def _ns_now() -> datetime:
    return datetime.fromtimestamp(time.time_ns() / 1e9, UTC)


def new_token_serial() -> int:
    return (time.time_ns() << 64) | secrets.randbits(64)


@dataclass(frozen=True)
class TsaConfig:
    policy_oid: str
    accuracy_ms: int


class TimeStampAuthority:
    def __init__(
        self,
        identity: ServiceIdentity,
        config: TsaConfig,
        *,
        chain: Iterable[x509.Certificate] = (),
        clock: Clock = _ns_now,
    ) -> None:
        self.config = config
        self.clock = clock
        self._chain = list(chain)
        self.issued = 0
        self.use_identity(identity)

    def use_identity(self, identity: ServiceIdentity) -> None:
        """Time-stamp with this certificate from now on (a renewal). A token
        being made meanwhile keeps the unit it started with."""
        self._unit = _Unit.of(identity, self._chain)

    @property
    def identity(self) -> ServiceIdentity:
        return self._unit.identity

    def parse(self, body: bytes) -> tsp.TimeStampReq:
        if not body or len(body) > MAX_REQUEST_BYTES:
            raise TsaRejection("bad_request", "empty or oversized request")
        try:
            req = tsp.TimeStampReq.load(body, strict=True)
            version = req["version"].native
            imprint = req["message_imprint"]
            algorithm = imprint["hash_algorithm"]["algorithm"].native
            hashed = imprint["hashed_message"].native
            policy = req["req_policy"].native
            req["nonce"].native  # noqa: B018 - force the parse
            req["cert_req"].native  # noqa: B018
            extensions = req["extensions"].native
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as e:
            raise TsaRejection("bad_request", "not a DER TimeStampReq") from e
        if version != "v1":
            raise TsaRejection("bad_request", "TimeStampReq version must be 1")
        if algorithm not in ACCEPTED_HASHES:
            raise TsaRejection("bad_alg", f"hash algorithm {algorithm} is not accepted")
        if len(hashed) != ACCEPTED_HASHES[algorithm]:
            raise TsaRejection("bad_data_format", "message imprint length does not fit its hash")
        if policy is not None and policy != self.config.policy_oid:
            raise TsaRejection(
                "unaccepted_policy", f"this TSA issues under {self.config.policy_oid}"
            )
        if extensions:
            raise TsaRejection("unaccepted_extensions", "no request extensions are supported")
        return req

    async def respond(self, body: bytes) -> bytes:
        """A TimeStampResp (DER) for any input; never raises."""
        try:
            req = self.parse(body)
            token = await self._token(req)
        except TsaRejection as e:
            return rejection(e.fail_info, e.text)
        except HsmError as e:
            log.warning("TSA: signing failed: %s", e.code)
            return rejection("system_failure", "the time-stamping unit is unavailable")
        return bytes(
            TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump()
        )

    async def _token(self, req: tsp.TimeStampReq) -> cms.ContentInfo:
        unit = self._unit
        gen_time = self.clock()
        gen_time = gen_time.replace(microsecond=gen_time.microsecond // 1000 * 1000)
        info: dict[str, Any] = {
            "version": "v1",
            "policy": self.config.policy_oid,
            "message_imprint": req["message_imprint"],
            "serial_number": new_token_serial(),
            "gen_time": gen_time,
            "accuracy": _accuracy(self.config.accuracy_ms),
            "tsa": unit.tsa_name,
        }
        if req["nonce"].native is not None:
            info["nonce"] = req["nonce"].native
        tst_info = tsp.TSTInfo(info)
        content = tst_info.dump()
        signed_attrs = _sorted_attributes(
            [
                {"type": "content_type", "values": ["tst_info"]},
                {"type": "signing_time", "values": [_signing_time(gen_time)]},
                {"type": "message_digest", "values": [hashlib.new(unit.digest, content).digest()]},
                unit.signing_cert_attr,
            ]
        )
        signer = unit.identity.signer
        signature = await signer.sign(signed_attrs.dump())
        cert = unit.identity.certificate
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    name="issuer_and_serial_number",
                    value={"issuer": cert.issuer, "serial_number": cert.serial_number},
                ),
                "digest_algorithm": {"algorithm": unit.digest},
                "signed_attrs": signed_attrs,
                "signature_algorithm": _signature_algorithm(signer.signature_algorithm),
                "signature": signature,
            }
        )
        signed_data: dict[str, Any] = {
            "version": "v3",
            "digest_algorithms": [{"algorithm": unit.digest}],
            "encap_content_info": {
                "content_type": "tst_info",
                "content": core.ParsableOctetString(content),
            },
            "signer_infos": [signer_info],
        }
        if req["cert_req"].native:
            signed_data["certificates"] = unit.cert_set
        self.issued += 1
        return cms.ContentInfo(
            {"content_type": "signed_data", "content": cms.SignedData(signed_data)}
        )


@dataclass(frozen=True)
class _Unit:
    """What every token of one TSA certificate carries, encoded once."""

    identity: ServiceIdentity
    digest: str
    tsa_name: x509.GeneralName
    signing_cert_attr: cms.CMSAttribute
    cert_set: cms.CertificateSet

    @classmethod
    def of(cls, identity: ServiceIdentity, chain: list[x509.Certificate]) -> _Unit:
        cert = identity.certificate
        digest = identity.signer.hash_name
        signing_cert_v2 = tsp.SigningCertificateV2(
            {
                "certs": [
                    {
                        "hash_algorithm": {"algorithm": digest},
                        "cert_hash": hashlib.new(digest, cert.dump()).digest(),
                        "issuer_serial": {
                            "issuer": [x509.GeneralName(name="directory_name", value=cert.issuer)],
                            "serial_number": cert.serial_number,
                        },
                    }
                ]
            }
        )
        # Encoded once and re-loaded: asn1crypto re-encodes a constructed
        # structure on every dump (milliseconds for these), a loaded one not.
        return cls(
            identity=identity,
            digest=digest,
            tsa_name=_frozen(x509.GeneralName(name="directory_name", value=cert.subject)),
            signing_cert_attr=_frozen(
                cms.CMSAttribute({"type": "signing_certificate_v2", "values": [signing_cert_v2]})
            ),
            cert_set=_frozen(
                cms.CertificateSet(
                    [cms.CertificateChoices(name="certificate", value=c) for c in [cert, *chain]]
                )
            ),
        )


def _frozen(value: Any) -> Any:
    """The same value, loaded from its encoding (cheap to embed and dump)."""
    return type(value).load(value.dump())


def _accuracy(ms: int) -> dict[str, int]:
    seconds, millis = divmod(ms, 1000)
    out: dict[str, int] = {}
    if seconds:
        out["seconds"] = seconds
    if millis:
        out["millis"] = millis
    return out


def _signing_time(at: datetime) -> cms.Time:
    at = at.replace(microsecond=0)
    if at.year >= 2050:
        return cms.Time(name="generalized_time", value=at)
    return cms.Time(name="utc_time", value=at)


def _signature_algorithm(name: str) -> algos.SignedDigestAlgorithm:
    # CMS names RSA PKCS#1 v1.5 signatures by the key algorithm alone.
    return algos.SignedDigestAlgorithm(
        {"algorithm": "rsassa_pkcs1v15" if name.endswith("_rsa") else name}
    )


def _sorted_attributes(attrs: list[dict[str, Any] | cms.CMSAttribute]) -> cms.CMSAttributes:
    """DER orders a SET OF by encoding; verifiers that re-encode (OpenSSL)
    check the signature over the sorted form."""
    built = [a if isinstance(a, cms.CMSAttribute) else cms.CMSAttribute(a) for a in attrs]
    built.sort(key=lambda a: a.dump())
    return cms.CMSAttributes(built)


__all__ = ["TimeStampAuthority", "TsaConfig", "TsaRejection", "rejection"]
