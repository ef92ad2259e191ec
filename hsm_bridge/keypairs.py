"""Key-pair building blocks shared by owner keys (`custody`) and service keys
(`service_keys`): generation per algorithm, the SubjectPublicKeyInfo of a
public key object, and signing a digest under a signature scheme.

Plain functions on python-pkcs11 objects; callers run them on the PKCS#11
thread.
"""

from __future__ import annotations

from typing import Any, Final

from asn1crypto import core as asn1_core
from asn1crypto import keys as asn1_keys
from pkcs11 import MGF, Attribute, KeyType, Mechanism, MechanismFlag
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
from pkcs11.util.rsa import encode_rsa_public_key

from hsm_bridge.algorithms import (
    HashAlgorithm,
    KeyAlgorithm,
    SignatureScheme,
    digest_info,
    ecdsa_raw_to_der,
)
from hsm_bridge.errors import UnsupportedAlgorithmError


def generate_pair(
    s: Any,
    algorithm: KeyAlgorithm,
    *,
    store: bool,
    private_template: dict[Attribute, Any],
    label: str | None = None,
) -> tuple[Any, Any]:
    private_template = {**private_template, Attribute.SIGN: True}
    if algorithm is KeyAlgorithm.ED25519:
        params = s.create_domain_parameters(
            KeyType.EC_EDWARDS,
            {Attribute.EC_PARAMS: encode_named_curve_parameters(algorithm.curve_oid)},
            local=True,
        )
        pub, priv = params.generate_keypair(
            store=store,
            label=label,
            mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            private_template=private_template,
        )
    elif algorithm.is_ec:
        params = s.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: encode_named_curve_parameters(algorithm.curve_oid)},
            local=True,
        )
        pub, priv = params.generate_keypair(
            store=store,
            label=label,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            private_template=private_template,
        )
    else:
        pub, priv = s.generate_keypair(
            KeyType.RSA,
            algorithm.rsa_bits,
            store=store,
            label=label,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            private_template=private_template,
        )
    return pub, priv


def spki_of(pub: Any, algorithm: KeyAlgorithm) -> bytes:
    """DER SubjectPublicKeyInfo of a public key object."""
    if algorithm is KeyAlgorithm.ED25519:
        point = bytes(pub[Attribute.EC_POINT])
        # SoftHSM2 returns the point DER-wrapped in an OCTET STRING.
        raw = asn1_core.OctetString.load(point).native if len(point) == 34 else point
        info = asn1_keys.PublicKeyInfo({"algorithm": {"algorithm": "ed25519"}, "public_key": raw})
        return bytes(info.dump())
    if algorithm.is_ec:
        return bytes(encode_ec_public_key(pub))
    rsa = asn1_keys.RSAPublicKey.load(encode_rsa_public_key(pub))
    info = asn1_keys.PublicKeyInfo(
        {"algorithm": {"algorithm": "rsa", "parameters": None}, "public_key": rsa}
    )
    return bytes(info.dump())


def check_scheme(algorithm: KeyAlgorithm, scheme: SignatureScheme) -> None:
    if algorithm is KeyAlgorithm.ED25519:
        ok = scheme is SignatureScheme.EDDSA
    elif algorithm.is_ec:
        ok = scheme in (SignatureScheme.ECDSA, SignatureScheme.ECDSA_RAW)
    else:
        ok = scheme in (SignatureScheme.RSA_PKCS1V15, SignatureScheme.RSA_PSS)
    if not ok:
        raise UnsupportedAlgorithmError(f"{scheme.value} does not fit a {algorithm.value} key")


_PSS_HASH: Final = {
    "sha256": (Mechanism.SHA256, MGF.SHA256),
    "sha384": (Mechanism.SHA384, MGF.SHA384),
    "sha512": (Mechanism.SHA512, MGF.SHA512),
}


def sign_digest_with(
    priv: Any, digest: bytes, hash_alg: HashAlgorithm, scheme: SignatureScheme
) -> bytes:
    if len(digest) != hash_alg.digest_size:
        raise UnsupportedAlgorithmError(
            f"a {hash_alg.name} digest is {hash_alg.digest_size} bytes, got {len(digest)}"
        )
    if scheme is SignatureScheme.ECDSA:
        return ecdsa_raw_to_der(bytes(priv.sign(digest, mechanism=Mechanism.ECDSA)))
    if scheme is SignatureScheme.ECDSA_RAW:
        return bytes(priv.sign(digest, mechanism=Mechanism.ECDSA))
    if scheme is SignatureScheme.RSA_PKCS1V15:
        return bytes(priv.sign(digest_info(hash_alg, digest), mechanism=Mechanism.RSA_PKCS))
    mech, mgf = _PSS_HASH[hash_alg.name]
    return bytes(
        priv.sign(
            digest,
            mechanism=Mechanism.RSA_PKCS_PSS,
            mechanism_param=(mech, mgf, hash_alg.digest_size),
        )
    )
