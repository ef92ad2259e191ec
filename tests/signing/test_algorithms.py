"""The signAlgo table on its own: which scheme each OID asks for, against
which key and hash, and what a credential advertises."""

from __future__ import annotations

import pytest
from asn1crypto import algos

from cloudsign.errors import ValidationError
from cloudsign.signing.algorithms import (
    SIGN_ALGOS,
    check_pss_params,
    implied_hash,
    scheme_for,
)
from hsm_bridge import KeyAlgorithm, SignatureScheme, hash_algorithm

EC, RSA = KeyAlgorithm.EC_P256, KeyAlgorithm.RSA_2048
SHA256, SHA384 = hash_algorithm("sha256"), hash_algorithm("sha384")


@pytest.mark.parametrize(
    ("key", "oid", "hash_alg", "scheme"),
    [
        (EC, None, SHA256, SignatureScheme.ECDSA),
        (RSA, None, SHA256, SignatureScheme.RSA_PKCS1V15),
        (EC, "1.2.840.10045.4.3.2", SHA256, SignatureScheme.ECDSA),
        (EC, "1.2.840.10045.4.3.3", SHA384, SignatureScheme.ECDSA),
        (EC, "1.2.840.10045.2.1", SHA384, SignatureScheme.ECDSA),
        (RSA, "1.2.840.113549.1.1.11", SHA256, SignatureScheme.RSA_PKCS1V15),
        (RSA, "1.2.840.113549.1.1.1", SHA384, SignatureScheme.RSA_PKCS1V15),
        (RSA, "1.2.840.113549.1.1.10", SHA256, SignatureScheme.RSA_PSS),
    ],
)
def test_scheme_for(key: KeyAlgorithm, oid: str | None, hash_alg, scheme) -> None:  # type: ignore[no-untyped-def]
    assert scheme_for(key, oid, hash_alg, None) is scheme


@pytest.mark.parametrize(
    ("key", "oid", "hash_alg", "message"),
    [
        (EC, "1.2.840.10045.4.3.2", SHA384, "disagree"),
        (RSA, "1.2.840.10045.4.3.2", SHA256, "RSA key"),
        (EC, "1.2.840.113549.1.1.11", SHA256, "EC key"),
        (EC, "1.2.3.4", SHA256, "not supported"),
    ],
)
def test_scheme_refusals(key: KeyAlgorithm, oid: str, hash_alg, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match=message):
        scheme_for(key, oid, hash_alg, None)


def test_implied_hashes_come_from_the_one_table() -> None:
    for oid, entry in SIGN_ALGOS.items():
        implied = implied_hash(oid)
        assert (implied.name if implied else None) == entry.implied_hash
        if entry.implied_hash is not None:
            # The table agrees with asn1crypto's names for the OIDs.
            assert algos.SignedDigestAlgorithmId(oid).native.startswith(entry.implied_hash)
    assert implied_hash("1.2.3.4") is None


def _pss(hash_name: str, mgf_hash: str, salt: int) -> bytes:
    return algos.RSASSAPSSParams(
        {
            "hash_algorithm": {"algorithm": hash_name},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": mgf_hash}},
            "salt_length": salt,
        }
    ).dump()


def test_pss_parameters() -> None:
    check_pss_params(_pss("sha256", "sha256", 32), SHA256)
    for bad in (
        _pss("sha384", "sha256", 32),
        _pss("sha256", "sha384", 32),
        _pss("sha256", "sha256", 20),
    ):
        with pytest.raises(ValidationError, match="PSS parameters"):
            check_pss_params(bad, SHA256)
    with pytest.raises(ValidationError, match="not RSASSA-PSS-params"):
        check_pss_params(b"\xff\x00garbage", SHA256)
