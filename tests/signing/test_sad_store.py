"""SadStore on its own: what a SAD grants, and nothing more (no HTTP, no HSM)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from cloudsign.signing.sad import (
    MAX_TRANSACTION_LIFETIME,
    Authorization,
    SadError,
    SadStore,
    new_authorization_id,
)
from hsm_bridge import KeyAlgorithm, UnlockedKey, hash_algorithm

SHA256 = hash_algorithm("sha256")
SHA384 = hash_algorithm("sha384")
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _auth(
    hashes: list[bytes], *, ttl: int = 300, hash_alg=SHA256, owner: str = "o1"
) -> Authorization:  # type: ignore[no-untyped-def]
    return Authorization(
        id=new_authorization_id(),
        owner_id=owner,
        credential_id="c1",
        certificate_serial="ab",
        hash_alg=hash_alg,
        hashes=frozenset(hashes),
        num_signatures=len(hashes),
        factors=("face", "otp", "password"),
        unlocked=UnlockedKey("c1", KeyAlgorithm.EC_P256, b"wrapped"),
        created_at=T0,
        expires_at=T0 + timedelta(seconds=ttl),
    )


def _hashes(n: int) -> list[bytes]:
    return [os.urandom(32) for _ in range(n)]


def test_each_authorised_hash_signs_once_and_nothing_else() -> None:
    store = SadStore(clock=Clock())
    hs = _hashes(3)
    sad = store.issue(_auth(hs))
    assert store.reserve(sad, owner_id="o1", credential_id="c1", hashes=hs[:2], hash_alg=SHA256)
    with pytest.raises(SadError, match="already signed"):
        store.reserve(sad, owner_id="o1", credential_id="c1", hashes=[hs[0]], hash_alg=SHA256)
    with pytest.raises(SadError, match="not authorised"):
        store.reserve(sad, owner_id="o1", credential_id="c1", hashes=_hashes(1), hash_alg=SHA256)
    with pytest.raises(SadError, match="twice"):
        store.reserve(sad, owner_id="o1", credential_id="c1", hashes=[hs[2]] * 2, hash_alg=SHA256)
    auth = store.reserve(sad, owner_id="o1", credential_id="c1", hashes=[hs[2]], hash_alg=SHA256)
    assert auth.remaining == 0


def test_a_failed_signature_gives_its_hashes_back() -> None:
    store = SadStore(clock=Clock())
    hs = _hashes(2)
    sad = store.issue(_auth(hs))
    auth = store.reserve(sad, owner_id="o1", credential_id="c1", hashes=hs, hash_alg=SHA256)
    store.release(auth, hs)
    assert store.reserve(sad, owner_id="o1", credential_id="c1", hashes=hs, hash_alg=SHA256)


@pytest.mark.parametrize(
    ("owner", "credential"), [("o2", "c1"), ("o1", "c2")], ids=["other owner", "other key"]
)
def test_a_sad_is_nobody_elses(owner: str, credential: str) -> None:
    store = SadStore(clock=Clock())
    hs = _hashes(1)
    sad = store.issue(_auth(hs))
    with pytest.raises(SadError, match="unknown, expired or not valid"):
        store.reserve(sad, owner_id=owner, credential_id=credential, hashes=hs, hash_alg=SHA256)


def test_unknown_missing_and_wrong_algorithm() -> None:
    store = SadStore(clock=Clock())
    hs = _hashes(1)
    sad = store.issue(_auth(hs))
    for token in (None, "", "not-a-sad", 7):
        with pytest.raises(SadError):
            store.reserve(token, owner_id="o1", credential_id="c1", hashes=hs, hash_alg=SHA256)
    with pytest.raises(SadError, match="hash algorithm"):
        store.reserve(sad, owner_id="o1", credential_id="c1", hashes=hs, hash_alg=SHA384)


def test_expiry_and_sweep_follow_the_clock() -> None:
    clock = Clock()
    store = SadStore(clock=clock)
    hs = _hashes(1)
    sad = store.issue(_auth(hs, ttl=10))
    clock.now = T0 + timedelta(seconds=10)
    with pytest.raises(SadError):
        store.reserve(sad, owner_id="o1", credential_id="c1", hashes=hs, hash_alg=SHA256)
    store.issue(_auth(_hashes(1)))  # issuing sweeps what expired
    assert repr(store) == "SadStore(1 live)"


def test_extend_replaces_the_sad_within_the_transaction_lifetime() -> None:
    clock = Clock()
    store = SadStore(clock=clock)
    hs = _hashes(2)
    old = store.issue(_auth(hs, ttl=60))
    clock.now = T0 + timedelta(seconds=50)
    new, auth = store.extend(old, owner_id="o1", credential_id="c1", ttl=timedelta(seconds=60))
    assert new != old and auth.expires_at == clock.now + timedelta(seconds=60)
    with pytest.raises(SadError):
        store.reserve(old, owner_id="o1", credential_id="c1", hashes=hs[:1], hash_alg=SHA256)
    assert store.reserve(new, owner_id="o1", credential_id="c1", hashes=hs[:1], hash_alg=SHA256)
    # However long it asks for, it ends with its first authorisation's hour.
    clock.now = T0 + timedelta(seconds=100)
    _latest, auth = store.extend(new, owner_id="o1", credential_id="c1", ttl=timedelta(hours=2))
    assert auth.expires_at == T0 + MAX_TRANSACTION_LIFETIME


def test_the_unlocked_key_is_not_in_the_repr() -> None:
    auth = _auth(_hashes(1))
    assert "wrapped" not in repr(auth) and "unlocked" not in repr(auth)
