"""Which signature an owner key makes for a request: the one table of CSC
`signAlgo` OIDs (with the hash each implies), the check of a signAlgo
against the key and the hash, RSASSA-PSS parameters, and the OIDs a
credential advertises (CSC `credentials/info`)."""

from __future__ import annotations

from typing import Final, NamedTuple

from asn1crypto import algos, x509

from cloudsign.errors import ValidationError
from hsm_bridge import HashAlgorithm, KeyAlgorithm, SignatureScheme, hash_algorithm


class SignAlgo(NamedTuple):
    key_kind: str  # ec | rsa | rsa-pss
    implied_hash: str | None  # the hash the OID names, or None (give hashAlgo)


#: CSC signAlgo OIDs: signature algorithms, then the plain key-type OID of
#: each kind, which clients also send (the order `credentials/info` lists).
SIGN_ALGOS: Final[dict[str, SignAlgo]] = {
    "1.2.840.10045.4.3.2": SignAlgo("ec", "sha256"),
    "1.2.840.10045.4.3.3": SignAlgo("ec", "sha384"),
    "1.2.840.10045.4.3.4": SignAlgo("ec", "sha512"),
    "1.2.840.10045.2.1": SignAlgo("ec", None),
    "1.2.840.113549.1.1.11": SignAlgo("rsa", "sha256"),
    "1.2.840.113549.1.1.12": SignAlgo("rsa", "sha384"),
    "1.2.840.113549.1.1.13": SignAlgo("rsa", "sha512"),
    "1.2.840.113549.1.1.10": SignAlgo("rsa-pss", None),
    "1.2.840.113549.1.1.1": SignAlgo("rsa", None),
}


def implied_hash(sign_algo: str) -> HashAlgorithm | None:
    """The hash a signAlgo names (CSC lets it stand in for hashAlgo)."""
    entry = SIGN_ALGOS.get(sign_algo)
    if entry is None or entry.implied_hash is None:
        return None
    return hash_algorithm(entry.implied_hash)


def scheme_for(
    algorithm: KeyAlgorithm,
    sign_algo: str | None,
    hash_alg: HashAlgorithm,
    pss_params: bytes | None,
) -> SignatureScheme:
    """The signature scheme a CSC signAlgo asks for, checked against the key."""
    if sign_algo is None:
        return SignatureScheme.ECDSA if algorithm.is_ec else SignatureScheme.RSA_PKCS1V15
    entry = SIGN_ALGOS.get(sign_algo)
    if entry is None:
        raise ValidationError("this signAlgo is not supported", field="signAlgo")
    if entry.implied_hash is not None and entry.implied_hash != hash_alg.name:
        raise ValidationError("signAlgo and hashAlgo disagree", field="signAlgo")
    if entry.key_kind == "ec":
        if not algorithm.is_ec:
            raise ValidationError("an ECDSA signAlgo for an RSA key", field="signAlgo")
        return SignatureScheme.ECDSA
    if not algorithm.is_rsa:
        raise ValidationError("an RSA signAlgo for an EC key", field="signAlgo")
    if entry.key_kind == "rsa-pss":
        if pss_params is not None:
            check_pss_params(pss_params, hash_alg)
        return SignatureScheme.RSA_PSS
    return SignatureScheme.RSA_PKCS1V15


def check_pss_params(der: bytes, hash_alg: HashAlgorithm) -> None:
    """RSASSA-PSS-params must use `hash_alg` for hash and MGF1, salt = digest size."""
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


def signature_mechanisms(certificate: x509.Certificate) -> list[str]:
    """The signAlgo OIDs a credential advertises: those of SIGN_ALGOS that
    fit the certificate's key."""
    kinds = ("ec",) if certificate.public_key.algorithm == "ec" else ("rsa", "rsa-pss")
    return [oid for oid, entry in SIGN_ALGOS.items() if entry.key_kind in kinds]


__all__ = [
    "SIGN_ALGOS",
    "SignAlgo",
    "check_pss_params",
    "implied_hash",
    "scheme_for",
    "signature_mechanisms",
]
