"""SadStore against the real database and SoftHSM2 token: what a SAD grants,
and nothing more; the key it binds is reachable only with the SAD, and only
while the SAD lives."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pkcs11 import Attribute
from sqlalchemy import select

from cloudsign.appkeys import DATABASE, HSM
from cloudsign.signing.sad import MAX_TRANSACTION_LIFETIME, Grant, Left, SadError, SadStore
from cloudsign.signing.tables import sad_hashes, sads
from device_client.device import Argon2Params, derive_password_key, wrap_for_transport
from hsm_bridge import (
    HsmBridge,
    KeyAlgorithm,
    KeyBlobError,
    SignatureScheme,
    TransportMessage,
    UnlockedKey,
    hash_algorithm,
)
from hsm_bridge.activation import SAD_KEY_LABEL

SHA256 = hash_algorithm("sha256")
SHA384 = hash_algorithm("sha384")
KPW = derive_password_key("correct horse", Argon2Params(b"0123456789abcdef", 1, 8192, 1))
TTL = timedelta(seconds=300)


class Clock:
    """Starts at the real time, so the server's own sweep leaves these alone."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def _message(bridge: HsmBridge) -> TransportMessage:
    key_id = str(uuid.uuid4())
    w = wrap_for_transport(KPW, key_id, await bridge.create_transport_key(key_id))
    return TransportMessage(w.transport_key_id, w.device_point, w.wrapped_key)


@pytest.fixture(scope="module")
async def owner_key(app: Any) -> tuple[UnlockedKey, bytes]:
    """A real owner key, opened by its password: (unlocked, SPKI)."""
    bridge: HsmBridge = app[HSM]
    cred = "c1"
    created = await bridge.create_owner_key(await _message(bridge), KeyAlgorithm.EC_P256, cred)
    unlocked = await bridge.unlock_owner_key(
        await _message(bridge), cred, KeyAlgorithm.EC_P256, created.blob
    )
    return unlocked, created.public_key_info


@pytest.fixture
def store(app: Any) -> SadStore:
    return SadStore(app[DATABASE], app[HSM], clock=Clock())


def _grant(hs: list[bytes], *, owner: str = "o1", hash_alg: Any = SHA256) -> Grant:
    return Grant(owner, "c1", "ab", hash_alg, hs, ("face", "otp", "password"))


def _hashes(n: int) -> list[bytes]:
    return [os.urandom(32) for _ in range(n)]


async def _reserve(store: SadStore, sad: object, hs: list[bytes], **kw: Any) -> Any:
    args = {"owner_id": "o1", "credential_id": "c1", "hashes": hs, "hash_alg": SHA256, **kw}
    return await store.reserve(sad, **args)


async def _count_keys(app: Any, sad_id: str) -> int:
    def count(session: Any) -> int:
        objects = session.get_objects({Attribute.LABEL: SAD_KEY_LABEL})
        return sum(bytes(o[Attribute.ID]).startswith(sad_id.encode() + b"|") for o in objects)

    return int(await app[HSM].run_with_session(count))


async def test_each_authorised_hash_signs_once_and_nothing_else(
    store: SadStore, owner_key: Any, app: Any
) -> None:
    unlocked, spki = owner_key
    hs = _hashes(3)
    sad, auth = await store.issue(_grant(hs), unlocked, TTL)
    assert await _count_keys(app, auth.id) == 1
    first = await _reserve(store, sad, hs[:2])
    with pytest.raises(SadError, match="already signed"):
        await _reserve(store, sad, [hs[0]])
    with pytest.raises(SadError, match="not authorised"):
        await _reserve(store, sad, _hashes(1))
    with pytest.raises(SadError, match="twice"):
        await _reserve(store, sad, [hs[2]] * 2)
    sigs = await store.sign(first, sad, hs[:2], SHA256, SignatureScheme.ECDSA)
    public = load_der_public_key(spki)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for h, s in zip(hs[:2], sigs, strict=True):
        public.verify(s, h, ec.ECDSA(Prehashed(hashes.SHA256())))
    async with app[DATABASE].transaction() as conn:
        assert await store.mark_signed(conn, first, hs[:2]) is Left.FREE  # one hash is left
    assert not await store.finish_if_used(first)
    last = await _reserve(store, sad, [hs[2]])
    await store.sign(last, sad, [hs[2]], SHA256, SignatureScheme.ECDSA)
    async with app[DATABASE].transaction() as conn:
        assert await store.mark_signed(conn, last, [hs[2]]) is Left.USED_UP
    # Used up: the record went with the transaction, the HSM key after it.
    assert await _count_keys(app, auth.id) == 1
    await store.finished(last, Left.USED_UP)
    assert await _count_keys(app, auth.id) == 0
    with pytest.raises(SadError, match="unknown, expired"):
        await _reserve(store, sad, [hs[2]])
    with pytest.raises(SadError, match="unknown, expired"):
        await store.sign(last, sad, [hs[2]], SHA256, SignatureScheme.ECDSA)


async def test_a_request_that_leaves_another_in_flight_keeps_the_sad_for_it(
    store: SadStore, owner_key: Any, app: Any
) -> None:
    """Two requests over one SAD's hashes: the first to record sees the
    other's reservation and leaves the SAD (and its HSM key) to it; the last
    one ends it."""
    unlocked, _spki = owner_key
    hs = _hashes(4)
    sad, auth = await store.issue(_grant(hs), unlocked, TTL)
    a = await _reserve(store, sad, hs[:2])
    b = await _reserve(store, sad, hs[2:])
    async with app[DATABASE].transaction() as conn:
        left_a = await store.mark_signed(conn, a, hs[:2])
    assert left_a is Left.IN_FLIGHT
    await store.finished(a, left_a)
    assert await _count_keys(app, auth.id) == 1  # b still signs with it
    await store.sign(b, sad, hs[2:], SHA256, SignatureScheme.ECDSA)
    async with app[DATABASE].transaction() as conn:
        left_b = await store.mark_signed(conn, b, hs[2:])
    assert left_b is Left.USED_UP
    await store.finished(b, left_b)
    assert await _count_keys(app, auth.id) == 0
    with pytest.raises(SadError, match="unknown, expired"):
        await _reserve(store, sad, [hs[0]])


async def test_the_record_and_the_pin_sign_nothing_without_the_sad(
    store: SadStore, owner_key: Any, app: Any
) -> None:
    """What a database read gives a PIN holder: a sealed key that opens only
    with the client's SAD, and nothing that looks like a key or the SAD."""
    unlocked, _spki = owner_key
    hs = _hashes(1)
    sad, auth = await store.issue(_grant(hs), unlocked, TTL)
    async with app[DATABASE].read() as conn:
        row = (await conn.execute(select(sads).where(sads.c.id == auth.id))).one()
    assert unlocked.wrapped not in row.sealed_key and sad.encode() not in bytes(row.digest)
    bridge: HsmBridge = app[HSM]
    for guess in (b"", os.urandom(32), row.digest, sad.encode()[:-1]):
        with pytest.raises(KeyBlobError):
            await bridge.sign_with_sad(auth.key, guess, hs, SHA256, SignatureScheme.ECDSA)
    # Nor can the sealed key be moved to another SAD or credential.
    other, other_auth = await store.issue(_grant(_hashes(1)), unlocked, TTL)
    moved = dataclasses.replace(other_auth.key, sealed=row.sealed_key)
    with pytest.raises(KeyBlobError):
        await bridge.sign_with_sad(moved, other.encode(), hs, SHA256, SignatureScheme.ECDSA)
    assert "sealed" not in repr(auth) and repr(row.sealed_key) not in repr(auth)


async def test_two_processes_racing_for_one_hash_sign_it_once(app: Any, owner_key: Any) -> None:
    """Two stores (as two processes would have) over one database."""
    one, two = (SadStore(app[DATABASE], app[HSM], clock=Clock()) for _ in range(2))
    unlocked, _spki = owner_key
    hs = _hashes(1)
    sad, _auth = await one.issue(_grant(hs), unlocked, TTL)
    results = await asyncio.gather(
        *(_reserve(s, sad, hs) for s in (one, two, one, two)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, SadError) for r in results if isinstance(r, BaseException))


async def test_a_failed_signature_gives_its_hashes_back(store: SadStore, owner_key: Any) -> None:
    hs = _hashes(2)
    sad, _auth = await store.issue(_grant(hs), owner_key[0], TTL)
    auth = await _reserve(store, sad, hs)
    await store.release(auth, hs)
    assert await _reserve(store, sad, hs)


@pytest.mark.parametrize(
    ("owner", "credential"), [("o2", "c1"), ("o1", "c2")], ids=["other owner", "other key"]
)
async def test_a_sad_is_nobody_elses(
    store: SadStore, owner_key: Any, owner: str, credential: str
) -> None:
    hs = _hashes(1)
    sad, _auth = await store.issue(_grant(hs), owner_key[0], TTL)
    with pytest.raises(SadError, match="unknown, expired or not valid"):
        await _reserve(store, sad, hs, owner_id=owner, credential_id=credential)


async def test_unknown_missing_and_wrong_algorithm(store: SadStore, owner_key: Any) -> None:
    hs = _hashes(1)
    sad, _auth = await store.issue(_grant(hs), owner_key[0], TTL)
    for token in (None, "", "not-a-sad", 7):
        with pytest.raises(SadError):
            await _reserve(store, token, hs)
    with pytest.raises(SadError, match="hash algorithm"):
        await _reserve(store, sad, hs, hash_alg=SHA384)


async def test_expiry_and_the_sweep_end_the_record_and_the_key(
    store: SadStore, owner_key: Any, app: Any
) -> None:
    clock = store.clock
    assert isinstance(clock, Clock)
    hs = _hashes(1)
    sad, auth = await store.issue(_grant(hs), owner_key[0], timedelta(seconds=10))
    clock.now += timedelta(seconds=10)
    with pytest.raises(SadError):
        await _reserve(store, sad, hs)
    # A key whose record never got written (a process killed in between).
    orphan = await app[HSM].bind_to_sad(owner_key[0], "orphan-" + auth.id, b"t", clock.now)
    assert await _count_keys(app, orphan.sad_id) == 1
    clock.now += timedelta(seconds=2)
    assert await store.sweep() >= 1
    assert await _count_keys(app, auth.id) == 0
    assert await _count_keys(app, orphan.sad_id) == 0
    async with app[DATABASE].read() as conn:
        left = (await conn.execute(select(sad_hashes).where(sad_hashes.c.sad_id == auth.id))).all()
    assert not left


async def test_revoking_the_owner_ends_every_sad_and_key(
    store: SadStore, owner_key: Any, app: Any
) -> None:
    owner = str(uuid.uuid4())
    issued = [await store.issue(_grant(_hashes(1), owner=owner), owner_key[0], TTL) for _ in "ab"]
    assert await store.revoke_owner(owner) == 2
    for sad, auth in issued:
        assert await _count_keys(app, auth.id) == 0
        with pytest.raises(SadError):
            await store.find(sad, owner_id=owner, credential_id="c1")


async def test_extend_replaces_the_sad_within_the_transaction_lifetime(
    store: SadStore, owner_key: Any, app: Any
) -> None:
    clock = store.clock
    assert isinstance(clock, Clock)
    start = clock.now
    hs = _hashes(2)
    old, auth = await store.issue(_grant(hs), owner_key[0], timedelta(seconds=60))
    clock.now = start + timedelta(seconds=50)
    new, extended = await store.extend(
        old, owner_id="o1", credential_id="c1", ttl=timedelta(seconds=60)
    )
    assert new != old and extended.expires_at == clock.now + timedelta(seconds=60)
    assert extended.id == auth.id and await _count_keys(app, auth.id) == 1
    with pytest.raises(SadError):
        await _reserve(store, old, hs[:1])
    with pytest.raises(SadError):  # the old SAD extends nothing either
        await store.extend(old, owner_id="o1", credential_id="c1", ttl=timedelta(seconds=60))
    reserved = await _reserve(store, new, hs[:1])
    assert await store.sign(reserved, new, hs[:1], SHA256, SignatureScheme.ECDSA)
    # However long it asks for, it ends with its first authorisation's hour.
    clock.now = start + timedelta(seconds=100)
    _latest, last = await store.extend(
        new, owner_id="o1", credential_id="c1", ttl=timedelta(hours=2)
    )
    assert last.expires_at == auth.created_at + MAX_TRANSACTION_LIFETIME
