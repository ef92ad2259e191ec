"""The OCSP responder's direct DER (cloudsign/status/der.py) is byte for
byte what asn1crypto encodes for the same values, for every shape an
answer takes; openssl verifies real answers in tests/status/test_ocsp.py."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import algos, core, ocsp

from cloudsign.status import der

NOW = datetime(2026, 12, 3, 8, 51, 7, tzinfo=UTC)


def _cert_id(serial: int) -> ocsp.CertId:
    return ocsp.CertId(
        {
            "hash_algorithm": {"algorithm": "sha1"},
            "issuer_name_hash": os.urandom(20),
            "issuer_key_hash": os.urandom(20),
            "serial_number": serial,
        }
    )


def _reference_single(cid: ocsp.CertId, now: datetime) -> bytes:
    return bytes(
        ocsp.SingleResponse(
            {
                "cert_id": cid,
                "cert_status": ocsp.CertStatus(name="good", value=None),
                "this_update": now,
                "next_update": now + timedelta(minutes=10),
            }
        ).dump()
    )


@pytest.mark.parametrize("serial", [1, 0x7F, 0x80, 2**159 - 1])
@pytest.mark.parametrize("nonce_size", [None, 1, 16, 32])
@pytest.mark.parametrize("count", [1, 3, 32])
def test_answers_match_asn1crypto(serial: int, nonce_size: int | None, count: int) -> None:
    responder_id = ocsp.ResponderId(name="by_key", value=os.urandom(20))
    cids = [_cert_id(serial + i) for i in range(count)]
    nonce = core.OctetString(os.urandom(nonce_size)) if nonce_size else None
    data: dict[str, object] = {
        "version": "v1",
        "responder_id": responder_id,
        "produced_at": NOW,
        "responses": [ocsp.SingleResponse.load(_reference_single(c, NOW)) for c in cids],
    }
    if nonce is not None:
        data["response_extensions"] = [{"extn_id": "nonce", "critical": False, "extn_value": nonce}]
    reference_tbs = ocsp.ResponseData(data).dump()
    this, after = der.generalized_time(NOW), der.generalized_time(NOW + timedelta(minutes=10))
    tbs = der.response_data(
        responder_id.dump(),
        der.generalized_time(NOW),
        [der.good_single_response(c.dump(), this, after) for c in cids],
        der.nonce_extensions(nonce.dump()) if nonce is not None else b"",
    )
    assert tbs == reference_tbs

    signature = os.urandom(72)
    algorithm = algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"})
    certs = ocsp.Certificates([])
    reference = ocsp.OCSPResponse(
        {
            "response_status": "successful",
            "response_bytes": {
                "response_type": "basic_ocsp_response",
                "response": ocsp.BasicOCSPResponse(
                    {
                        "tbs_response_data": ocsp.ResponseData.load(reference_tbs),
                        "signature_algorithm": algorithm,
                        "signature": signature,
                        "certs": certs,
                    }
                ),
            },
        }
    ).dump()
    assert der.successful_response(tbs, algorithm.dump(), signature, certs.dump()) == reference
    parsed = ocsp.OCSPResponse.load(reference)
    assert parsed.basic_ocsp_response["tbs_response_data"]["responses"][0]["cert_status"].name == (
        "good"
    )


@pytest.mark.parametrize("size", [0, 1, 127, 128, 255, 256, 65535, 65536])
def test_lengths(size: int) -> None:
    encoded = der.tlv(der.OCTET_STRING, bytes(size))
    assert core.OctetString.load(encoded).native == bytes(size)
