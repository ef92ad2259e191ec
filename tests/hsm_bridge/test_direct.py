"""The direct C_SignInit/C_Sign path (`hsm_bridge.direct`) against the real
SoftHSM2: it is the one the bridge uses there, its signatures verify for
every scheme, and a refused call is an error that leaves it usable."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pkcs11 import KeyType
from pkcs11.exceptions import PKCS11Error

from cloudsign.instance import prepare_hsm
from cloudsign.settings import Settings
from hsm_bridge import HsmBridge, KeyAlgorithm, SignatureScheme, hash_algorithm
from hsm_bridge.direct import DirectSigner
from hsm_bridge.keypairs import generate_pair, sign_digest_with, spki_of

SHA256 = hash_algorithm("sha256")
DOC = os.urandom(200)
DIGEST = hashlib.sha256(DOC).digest()


@pytest.fixture(scope="module")
async def bridge(base_settings: Settings) -> AsyncIterator[HsmBridge]:
    access = prepare_hsm(base_settings)
    b = HsmBridge(access.module, access.token_label, access.pin)
    await b.start()
    yield b
    await b.close()


def _direct(bridge: HsmBridge) -> DirectSigner:
    direct = bridge._direct
    assert direct is not None, "SoftHSM2 exports C_SignInit/C_Sign: the direct path must be on"
    return direct


@pytest.mark.parametrize(
    ("algorithm", "scheme"),
    [
        (KeyAlgorithm.EC_P256, SignatureScheme.ECDSA),
        (KeyAlgorithm.EC_P384, SignatureScheme.ECDSA_RAW),
        (KeyAlgorithm.RSA_2048, SignatureScheme.RSA_PKCS1V15),
        (KeyAlgorithm.RSA_2048, SignatureScheme.RSA_PSS),
    ],
)
async def test_direct_signatures_verify(
    bridge: HsmBridge, algorithm: KeyAlgorithm, scheme: SignatureScheme
) -> None:
    direct = _direct(bridge)

    def sign(session: Any) -> tuple[bytes, list[bytes]]:
        pub, priv = generate_pair(session, algorithm, store=False, private_template={})
        try:
            spki = spki_of(pub, algorithm)
            return spki, [sign_digest_with(priv, DIGEST, SHA256, scheme, direct) for _ in range(3)]
        finally:
            priv.destroy()
            pub.destroy()

    spki, signatures = await bridge.run_with_session(sign)
    public = load_der_public_key(spki)
    for sig in signatures:
        if isinstance(public, ec.EllipticCurvePublicKey):
            if scheme is SignatureScheme.ECDSA_RAW:
                half = len(sig) // 2
                assert half == 48
                from cryptography.hazmat.primitives.asymmetric.utils import (
                    encode_dss_signature,
                )

                sig = encode_dss_signature(int.from_bytes(sig[:half]), int.from_bytes(sig[half:]))
            public.verify(sig, DOC, ec.ECDSA(hashes.SHA256()))
        else:
            assert isinstance(public, rsa.RSAPublicKey)
            pad: padding.AsymmetricPadding = (
                padding.PSS(padding.MGF1(hashes.SHA256()), 32)
                if scheme is SignatureScheme.RSA_PSS
                else padding.PKCS1v15()
            )
            public.verify(sig, DOC, pad, hashes.SHA256())
    if scheme is not SignatureScheme.RSA_PKCS1V15:
        # Randomised schemes: three signatures of one digest all differ.
        assert len(set(signatures)) == 3


async def test_a_refused_call_raises_and_the_signer_keeps_working(bridge: HsmBridge) -> None:
    direct = _direct(bridge)

    def attempt(session: Any) -> bytes:
        aes = session.generate_key(KeyType.AES, 256, store=False)
        pub, priv = generate_pair(session, KeyAlgorithm.EC_P256, store=False, private_template={})
        try:
            for wrong in (aes, pub):  # no CKA_SIGN / not a private key
                with pytest.raises(PKCS11Error, match=r"C_Sign(Init)? returned"):
                    sign_digest_with(wrong, DIGEST, SHA256, SignatureScheme.ECDSA, direct)
            return sign_digest_with(priv, DIGEST, SHA256, SignatureScheme.ECDSA, direct)
        finally:
            for obj in (aes, pub, priv):
                obj.destroy()

    assert (await bridge.run_with_session(attempt)).startswith(b"\x30")
