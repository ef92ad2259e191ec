"""DER for the OCSP hot path: the few fixed structures of a signed answer,
joined from pieces that are already encoded.

asn1crypto builds an answer from dictionaries in about two milliseconds,
most of a nonce answer's cost; the structures here are fixed, so the
responder encodes them directly (tag, length, contents, X.690 §8.1) around
pieces asn1crypto encoded once (responder id, certificates, algorithm) or
the request carries (CertID, nonce). Statuses other than `good` still go
through asn1crypto. `tests/status/test_ocsp_der.py` checks that every
answer is byte for byte what asn1crypto makes of the same values, and the
OCSP tests verify them with openssl.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

SEQUENCE: Final = 0x30
OCTET_STRING: Final = 0x04
BIT_STRING: Final = 0x03
ENUMERATED: Final = 0x0A
GENERALIZED_TIME: Final = 0x18
OID: Final = 0x06

#: id-pkix-ocsp-nonce (1.3.6.1.5.5.7.48.1.2) and id-pkix-ocsp-basic (…48.1.1).
NONCE_OID: Final = bytes.fromhex("06092b0601050507300102")
BASIC_OID: Final = bytes.fromhex("06092b0601050507300101")
#: CertStatus `good`: [0] IMPLICIT NULL.
GOOD: Final = b"\x80\x00"


def tlv(tag: int, contents: bytes) -> bytes:
    n = len(contents)
    if n < 0x80:
        return bytes((tag, n)) + contents
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + contents


def explicit(number: int, contents: bytes) -> bytes:
    """A context-specific, constructed [number] EXPLICIT wrapper."""
    return tlv(0xA0 | number, contents)


def generalized_time(moment: datetime) -> bytes:
    """GeneralizedTime in UTC, whole seconds (RFC 5280 §4.1.2.5.2)."""
    return tlv(GENERALIZED_TIME, moment.strftime("%Y%m%d%H%M%SZ").encode())


def good_single_response(cert_id: bytes, this_update: bytes, next_update: bytes) -> bytes:
    """SingleResponse for a good certificate; times already encoded."""
    return tlv(SEQUENCE, cert_id + GOOD + this_update + explicit(0, next_update))


def nonce_extensions(nonce: bytes) -> bytes:
    """responseExtensions [1] holding the request's nonce (`nonce` is the
    DER OCTET STRING it sent, RFC 8954)."""
    extension = tlv(SEQUENCE, NONCE_OID + tlv(OCTET_STRING, nonce))
    return explicit(1, tlv(SEQUENCE, extension))


def response_data(
    responder_id: bytes, produced_at: bytes, singles: list[bytes], extensions: bytes
) -> bytes:
    """ResponseData (version v1 is the DEFAULT, so it is absent in DER)."""
    return tlv(SEQUENCE, responder_id + produced_at + tlv(SEQUENCE, b"".join(singles)) + extensions)


def successful_response(tbs: bytes, algorithm: bytes, signature: bytes, certs: bytes) -> bytes:
    """OCSPResponse(successful, BasicOCSPResponse(tbs, algorithm, signature, [0] certs))."""
    basic = tlv(
        SEQUENCE,
        tbs + algorithm + tlv(BIT_STRING, b"\x00" + signature) + explicit(0, certs),
    )
    response_bytes = tlv(SEQUENCE, BASIC_OID + tlv(OCTET_STRING, basic))
    return tlv(SEQUENCE, tlv(ENUMERATED, b"\x00") + explicit(0, response_bytes))
