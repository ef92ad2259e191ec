"""Key custody against the real SoftHSM2 token: what the HSM refuses matters
as much as what it does."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import AttributeSensitive, KeyNotWrappable, KeyUnextractable
from pkcs11.util.ec import encode_named_curve_parameters

from cloudsign.instance import prepare_hsm
from cloudsign.settings import Settings
from device_client.device import Argon2Params, derive_password_key, wrap_for_transport
from hsm_bridge import (
    HsmBridge,
    HsmUnavailableError,
    InvalidTransportMessageError,
    KeyAlgorithm,
    KeyBlobError,
    SignatureScheme,
    TransportKeyError,
    TransportMessage,
    WrongPasswordError,
    hash_algorithm,
)
from hsm_bridge.custody import MASTER_KEY_LABEL, OWNER_KEY_TEMPLATE, SIGNING_KEY_TEMPLATE

PARAMS = Argon2Params(b"0123456789abcdef", 1, 8192, 1)
KPW = derive_password_key("correct horse", PARAMS)
WRONG_KPW = derive_password_key("correct h0rse", PARAMS)
SHA256 = hash_algorithm("sha256")


@pytest.fixture(scope="module")
async def bridge(base_settings: Settings) -> AsyncIterator[HsmBridge]:
    access = prepare_hsm(base_settings)
    b = HsmBridge(access.module, access.token_label, access.pin)
    await b.start()
    yield b
    await b.close()


async def message_for(bridge: HsmBridge, kpw: bytes = KPW) -> TransportMessage:
    key_id = str(uuid.uuid4())
    spki = await bridge.create_transport_key(key_id)
    w = wrap_for_transport(kpw, key_id, spki)
    return TransportMessage(w.transport_key_id, w.device_point, w.wrapped_key)


@pytest.mark.parametrize(
    ("algorithm", "scheme"),
    [
        (KeyAlgorithm.EC_P256, SignatureScheme.ECDSA),
        (KeyAlgorithm.RSA_2048, SignatureScheme.RSA_PKCS1V15),
        (KeyAlgorithm.RSA_2048, SignatureScheme.RSA_PSS),
        (KeyAlgorithm.RSA_3072, SignatureScheme.RSA_PKCS1V15),
    ],
)
async def test_create_unlock_sign_verifies(
    bridge: HsmBridge, algorithm: KeyAlgorithm, scheme: SignatureScheme
) -> None:
    cred = str(uuid.uuid4())
    created = await bridge.create_owner_key(await message_for(bridge), algorithm, cred)
    assert "blob" not in repr(created)
    unlocked = await bridge.unlock_owner_key(
        await message_for(bridge), cred, algorithm, created.blob
    )
    docs = [os.urandom(100) for _ in range(3)]
    sigs = await bridge.sign_with_unlocked(
        unlocked, [hashlib.sha256(d).digest() for d in docs], SHA256, scheme
    )
    public = serialization.load_der_public_key(created.public_key_info)
    for doc, sig in zip(docs, sigs, strict=True):
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(sig, doc, ec.ECDSA(hashes.SHA256()))  # DER-encoded
        else:
            assert isinstance(public, rsa.RSAPublicKey)
            assert public.key_size == algorithm.rsa_bits
            pad: padding.AsymmetricPadding = (
                padding.PSS(padding.MGF1(hashes.SHA256()), 32)
                if scheme is SignatureScheme.RSA_PSS
                else padding.PKCS1v15()
            )
            public.verify(sig, doc, pad, hashes.SHA256())


async def test_wrong_password_is_rejected_by_the_hsm(bridge: HsmBridge) -> None:
    cred = str(uuid.uuid4())
    created = await bridge.create_owner_key(await message_for(bridge), KeyAlgorithm.EC_P256, cred)
    wrong = await message_for(bridge, WRONG_KPW)
    with pytest.raises(WrongPasswordError):
        await bridge.unlock_owner_key(wrong, cred, KeyAlgorithm.EC_P256, created.blob)
    # The one-time key went with the failed attempt: no retry on the same message.
    with pytest.raises(TransportKeyError):
        await bridge.unlock_owner_key(wrong, cred, KeyAlgorithm.EC_P256, created.blob)
    await bridge.unlock_owner_key(
        await message_for(bridge), cred, KeyAlgorithm.EC_P256, created.blob
    )


async def test_replayed_transport_message_is_rejected(bridge: HsmBridge) -> None:
    message = await message_for(bridge)
    await bridge.create_owner_key(message, KeyAlgorithm.EC_P256, str(uuid.uuid4()))
    with pytest.raises(TransportKeyError):
        await bridge.create_owner_key(message, KeyAlgorithm.EC_P256, str(uuid.uuid4()))


async def test_message_for_another_transport_key_does_not_unwrap(bridge: HsmBridge) -> None:
    a = await message_for(bridge)
    b = await message_for(bridge)
    crossed = TransportMessage(b.transport_key_id, a.device_point, a.wrapped_key)
    with pytest.raises(TransportKeyError):
        await bridge.create_owner_key(crossed, KeyAlgorithm.EC_P256, str(uuid.uuid4()))


async def test_blob_is_bound_to_its_credential_and_tamper_evident(bridge: HsmBridge) -> None:
    cred = str(uuid.uuid4())
    created = await bridge.create_owner_key(await message_for(bridge), KeyAlgorithm.EC_P256, cred)
    with pytest.raises(KeyBlobError):
        await bridge.unlock_owner_key(
            await message_for(bridge), str(uuid.uuid4()), KeyAlgorithm.EC_P256, created.blob
        )
    tampered = bytearray(created.blob)
    tampered[-1] ^= 1
    with pytest.raises(KeyBlobError):
        await bridge.unlock_owner_key(
            await message_for(bridge), cred, KeyAlgorithm.EC_P256, bytes(tampered)
        )
    with pytest.raises(KeyBlobError):
        await bridge.unlock_owner_key(
            await message_for(bridge), cred, KeyAlgorithm.EC_P256, b"junk"
        )


@pytest.mark.parametrize(
    ("point", "wrapped"),
    [
        (b"\x04" + b"\x01" * 64, b"\x00" * 40),  # not on the curve
        (b"\x02" + b"\x01" * 32, b"\x00" * 40),  # compressed
        (b"\x04" * 65, b"\x00" * 24),  # wrong wrap length
    ],
)
def test_malformed_transport_messages(point: bytes, wrapped: bytes) -> None:
    with pytest.raises(InvalidTransportMessageError):
        TransportMessage("id", point, wrapped)


async def test_owner_private_key_cannot_be_read_or_wrapped_by_another_key(
    bridge: HsmBridge,
) -> None:
    await bridge.run_with_session(_owner_key_properties)


def _owner_pair(raw_session: Any) -> tuple[Any, Any]:
    """A P-256 owner key pair as `create_owner_key` makes it (session objects)."""
    params = raw_session.create_domain_parameters(
        KeyType.EC,
        {Attribute.EC_PARAMS: encode_named_curve_parameters("1.2.840.10045.3.1.7")},
        local=True,
    )
    return params.generate_keypair(store=False, private_template=OWNER_KEY_TEMPLATE)  # type: ignore[no-any-return]


def _owner_key_properties(raw_session: Any) -> None:
    """Raw python-pkcs11 calls, on the bridge's PKCS#11 thread and session."""
    pub, priv = _owner_pair(raw_session)
    other = raw_session.generate_key(KeyType.AES, 256, store=False, template={Attribute.WRAP: True})
    master = raw_session.get_key(object_class=ObjectClass.SECRET_KEY, label=MASTER_KEY_LABEL)
    try:
        with pytest.raises(AttributeSensitive):
            priv[Attribute.VALUE]
        with pytest.raises(KeyNotWrappable):
            other.wrap_key(priv, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        inner = master.wrap_key(priv, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        # As it exists while signing: nothing can wrap it, not even the master key.
        signing = _as_signing_key(master, inner, SIGNING_KEY_TEMPLATE)
        assert signing[Attribute.EXTRACTABLE] is False
        with pytest.raises((KeyUnextractable, KeyNotWrappable)):
            master.wrap_key(signing, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        with pytest.raises(AttributeSensitive):
            signing[Attribute.VALUE]
        signing.destroy()
    finally:
        priv.destroy()
        pub.destroy()
        other.destroy()


async def test_master_key_is_trusted_private_and_unreadable(bridge: HsmBridge) -> None:
    await bridge.run_with_session(_master_key_properties)


def _master_key_properties(raw_session: Any) -> None:
    master = raw_session.get_key(object_class=ObjectClass.SECRET_KEY, label=MASTER_KEY_LABEL)
    assert master[Attribute.TRUSTED] is True
    assert master[Attribute.PRIVATE] is True
    # Extractable for a backup, but only under a trusted key (the archive key).
    assert master[Attribute.EXTRACTABLE] is True
    assert master[Attribute.WRAP_WITH_TRUSTED] is True
    assert master[Attribute.SENSITIVE] is True
    with pytest.raises(AttributeSensitive):
        master[Attribute.VALUE]
    mine = raw_session.generate_key(KeyType.AES, 256, store=False, template={Attribute.WRAP: True})
    try:
        with pytest.raises(KeyNotWrappable):
            mine.wrap_key(master, mechanism=Mechanism.AES_KEY_WRAP_PAD)
    finally:
        mine.destroy()
    # The staging copy made during provisioning is gone.
    assert not list(raw_session.get_objects({Attribute.LABEL: MASTER_KEY_LABEL + "-staging"}))


async def test_sealing_round_trip_and_binding(bridge: HsmBridge) -> None:
    sealed = await bridge.seal("totp", b"seed", b"owner-1")
    assert b"seed" not in sealed
    assert await bridge.unseal("totp", sealed, b"owner-1") == b"seed"
    with pytest.raises(KeyBlobError):
        await bridge.unseal("totp", sealed, b"owner-2")
    with pytest.raises(KeyBlobError):
        await bridge.unseal("biometric", sealed, b"owner-1")


async def test_signing_runs_off_the_event_loop(bridge: HsmBridge) -> None:
    """Many concurrent callers are all served, one PKCS#11 call at a time."""
    import asyncio

    cred = str(uuid.uuid4())
    created = await bridge.create_owner_key(await message_for(bridge), KeyAlgorithm.EC_P256, cred)
    unlocked = await bridge.unlock_owner_key(
        await message_for(bridge), cred, KeyAlgorithm.EC_P256, created.blob
    )
    results = await asyncio.gather(
        *[
            bridge.sign_with_unlocked(unlocked, [os.urandom(32)], SHA256, SignatureScheme.ECDSA)
            for _ in range(20)
        ]
    )
    assert len({r[0] for r in results}) == 20


async def test_service_keys_ed25519_secp256k1_and_hmac(bridge: HsmBridge) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    suffix = uuid.uuid4().hex[:8]
    spki = await bridge.generate_signing_key(f"test-log-{suffix}", KeyAlgorithm.ED25519)
    ed = serialization.load_der_public_key(spki)
    assert isinstance(ed, Ed25519PublicKey)
    ed.verify(await bridge.sign_message(f"test-log-{suffix}", b"checkpoint"), b"checkpoint")

    spki = await bridge.generate_signing_key(f"test-eth-{suffix}", KeyAlgorithm.EC_SECP256K1)
    k1 = serialization.load_der_public_key(spki)
    assert isinstance(k1, ec.EllipticCurvePublicKey) and k1.curve.name == "secp256k1"
    digest = hashlib.sha256(b"tx").digest()
    raw = await bridge.sign_digest(
        f"test-eth-{suffix}", KeyAlgorithm.EC_SECP256K1, digest, SHA256, SignatureScheme.ECDSA_RAW
    )
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32]), int.from_bytes(raw[32:]))
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    k1.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))

    a = await bridge.hmac_sha256("audit-owner", b"owner-1")
    assert a == await bridge.hmac_sha256("audit-owner", b"owner-1")
    assert a != await bridge.hmac_sha256("audit-owner", b"owner-2")
    assert len(a) == 32


async def test_bridge_restarts_cleanly(base_settings: Settings) -> None:
    access = prepare_hsm(base_settings)
    b = HsmBridge(access.module, access.token_label, access.pin)
    await b.start()
    first = await b.seal("totp", b"x", b"aad")
    await b.close()
    await b.start()
    assert await b.unseal("totp", first, b"aad") == b"x"
    await b.close()
    with pytest.raises(HsmUnavailableError):
        await b.seal("totp", b"x", b"aad")


async def test_the_master_key_unwraps_nothing_readable_or_exportable(bridge: HsmBridge) -> None:
    """CKA_UNWRAP_TEMPLATE: a holder of the PIN who has an owner's key still
    wrapped under the master key (what the owner's password opens), or who
    wraps a service key under the master key, gets no extractable,
    non-sensitive or persistent copy out of the master key."""
    await bridge.run_with_session(_unwrap_refusals)


def _as_signing_key(master: Any, inner: bytes, template: dict[Any, Any], **kw: Any) -> Any:
    """The owner key unwrapped under the master key, as signing does it."""
    return master.unwrap_key(
        ObjectClass.PRIVATE_KEY,
        KeyType.EC,
        inner,
        mechanism=Mechanism.AES_KEY_WRAP_PAD,
        capabilities=pkcs11.MechanismFlag.SIGN,
        template=template,
        **kw,
    )


def _unwrap_refusals(raw_session: Any) -> None:
    pub, priv = _owner_pair(raw_session)
    sealing = raw_session.get_key(
        object_class=ObjectClass.SECRET_KEY, label="cloudsign-seal-credential"
    )
    master = raw_session.get_key(object_class=ObjectClass.SECRET_KEY, label=MASTER_KEY_LABEL)
    try:
        owner_inner = master.wrap_key(priv, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        # A service key is wrappable by the trusted master key too.
        service_inner = master.wrap_key(sealing, mechanism=Mechanism.AES_KEY_WRAP_PAD)
        attempts: list[tuple[dict[Any, Any], dict[str, Any]]] = [
            ({**SIGNING_KEY_TEMPLATE, Attribute.EXTRACTABLE: True}, {}),
            ({**SIGNING_KEY_TEMPLATE, Attribute.SENSITIVE: False}, {}),
            ({**SIGNING_KEY_TEMPLATE, Attribute.EXTRACTABLE: pkcs11.DEFAULT}, {}),
            ({**SIGNING_KEY_TEMPLATE, Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False}, {}),
            (SIGNING_KEY_TEMPLATE, {"store": True}),
        ]
        for template, kw in attempts:
            with pytest.raises(pkcs11.exceptions.TemplateInconsistent):
                _as_signing_key(master, owner_inner, template, **kw)
        for template in (
            {Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: True},
            {Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: False},
        ):
            with pytest.raises(pkcs11.exceptions.TemplateInconsistent):
                master.unwrap_key(
                    ObjectClass.SECRET_KEY,
                    KeyType.AES,
                    service_inner,
                    mechanism=Mechanism.AES_KEY_WRAP_PAD,
                    template=template,
                )
        # What signing does is still allowed.
        signing = _as_signing_key(master, owner_inner, SIGNING_KEY_TEMPLATE)
        assert signing[Attribute.EXTRACTABLE] is False
        signing.destroy()
    finally:
        priv.destroy()
        pub.destroy()
