"""v1 leaves (still parsed and verified: days logged before commitments are
made of them), checkpoints/signed notes and day arithmetic. v2 leaves and
openings: test_leaf_v2.py."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from audit_chain.checkpoint import (
    Checkpoint,
    Ed25519NoteSigner,
    NoteVerifier,
    ed25519_key_id,
    parse_signed_note,
    sign_checkpoint,
    sign_checkpoint_async,
)
from audit_chain.days import DayClock, day_from_number, day_number
from audit_chain.errors import AuditChainError, CheckpointError, LeafFormatError, SignerError
from audit_chain.leaf import DroppedLeaf, EventLeaf, EventType, leaf_hash, parse_leaf

TAG = bytes(range(32))
T0 = datetime(2025, 3, 1, 10, 30, 0, 123456, tzinfo=UTC)


# -------------------------------------------------------------------- v1 leaves


def test_leaf_canonical_bytes_are_fixed() -> None:
    leaf = EventLeaf(
        index=7,
        event_type=EventType.KEY_USE,
        time=T0,
        owner_tag=TAG,
        document_hash=b"\xaa" * 32,
        extra={"b": 1, "a": "x"},
    )
    assert leaf.to_bytes() == (
        b'{"document":"' + b"aa" * 32 + b'","extra":{"a":"x","b":1},"index":7,'
        b'"owner":"' + TAG.hex().encode() + b'","time":"2025-03-01T10:30:00.123456Z",'
        b'"type":"key.use","v":1}'
    )
    assert leaf.leaf_hash() == hashlib.sha256(b"\x00" + leaf.to_bytes()).digest()
    assert parse_leaf(leaf.to_bytes()) == leaf
    assert len({leaf, parse_leaf(leaf.to_bytes())}) == 1


def test_leaf_time_normalised_to_utc() -> None:
    almaty = timezone(timedelta(hours=5))
    leaf = EventLeaf(0, EventType.KEY_CREATE, T0.astimezone(almaty), TAG)
    assert leaf.time.tzinfo == UTC
    assert leaf.to_bytes() == EventLeaf(0, EventType.KEY_CREATE, T0, TAG).to_bytes()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"index": -1},
        {"index": True},
        {"event_type": "key.steal"},
        {"time": datetime(2025, 1, 1)},  # naive
        {"owner_tag": b"short"},
        {"owner_tag": "not bytes"},
        {"credential_tag": b"x"},
        {"document_hash": b"\x01" * 32},  # not a key.use event
        {"extra": {"Bad Key": 1}},
        {"extra": {"f": 1.5}},
        {"extra": {"s": "x" * 1000}},
        {"extra": {f"k{i}": i for i in range(40)}},
        {"extra": {"n": 2**60}},
    ],
)
def test_leaf_validates_on_construction(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {
        "index": 1,
        "event_type": EventType.KEY_CREATE,
        "time": T0,
        "owner_tag": TAG,
    }
    base.update(kwargs)
    with pytest.raises(LeafFormatError):
        EventLeaf(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b"not json",
        # whitespace is not canonical
        b'{"index": 1,"owner":"' + TAG.hex().encode() + b'","time":"2025-03-01T10:30:00.123456Z",'
        b'"type":"key.create","v":1}',
        # keys out of order
        b'{"owner":"' + TAG.hex().encode() + b'","index":1,"time":"2025-03-01T10:30:00.123456Z",'
        b'"type":"key.create","v":1}',
        # duplicate key
        b'{"index":1,"index":1,"owner":"' + TAG.hex().encode() + b'",'
        b'"time":"2025-03-01T10:30:00.123456Z","type":"key.create","v":1}',
        # float, unknown key, wrong version, uppercase hex, empty extra
        b'{"index":1.0,"owner":"' + TAG.hex().encode() + b'","time":"2025-03-01T10:30:00.123456Z",'
        b'"type":"key.create","v":1}',
        b'{"index":1,"owner":"' + TAG.hex().encode() + b'","time":"2025-03-01T10:30:00.123456Z",'
        b'"type":"key.create","user":"alice","v":1}',
        b'{"index":1,"owner":"' + TAG.hex().encode() + b'","time":"2025-03-01T10:30:00.123456Z",'
        b'"type":"key.create","v":2}',
        b'{"index":1,"owner":"' + TAG.hex().upper().encode() + b'",'
        b'"time":"2025-03-01T10:30:00.123456Z","type":"key.create","v":1}',
        b'{"extra":{},"index":1,"owner":"' + TAG.hex().encode() + b'",'
        b'"time":"2025-03-01T10:30:00.123456Z","type":"key.create","v":1}',
        b'{"index":1,"owner":"' + TAG.hex().encode() + b'","time":"2025-02-30T10:30:00.123456Z",'
        b'"type":"key.create","v":1}',
    ],
)
def test_parse_leaf_refuses_non_canonical(data: bytes) -> None:
    with pytest.raises(LeafFormatError):
        parse_leaf(data)


@given(
    index=st.integers(min_value=0, max_value=2**63 - 1),
    event_type=st.sampled_from(list(EventType)),
    micros=st.integers(min_value=0, max_value=10**15),
    tag=st.binary(min_size=16, max_size=64),
    extra=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_.-]{0,31}", fullmatch=True),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
            st.text(max_size=50).filter(lambda s: not any(0xD800 <= ord(c) < 0xE000 for c in s)),
        ),
        max_size=5,
    ),
)
def test_leaf_round_trip(
    index: int, event_type: EventType, micros: int, tag: bytes, extra: dict[str, object]
) -> None:
    when = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    leaf = EventLeaf(index, event_type, when, tag, extra=extra)  # type: ignore[arg-type]
    assert parse_leaf(leaf.to_bytes()) == leaf


def test_dropped_leaf_keeps_hash() -> None:
    leaf = EventLeaf(3, EventType.KEY_DESTROY, T0, TAG)
    dropped = DroppedLeaf(3, leaf.leaf_hash())
    assert dropped.leaf_hash() == leaf_hash(leaf.to_bytes())
    with pytest.raises(LeafFormatError):
        DroppedLeaf(3, b"short")


# ------------------------------------------------------------------ checkpoints


def test_key_id_matches_signed_note_definition() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    signer = Ed25519NoteSigner("example.com/log", key)
    expected = hashlib.sha256(b"example.com/log\n\x01" + signer.public_key).digest()[:4]
    assert signer.key_id == expected == ed25519_key_id("example.com/log", signer.public_key)
    vkey = signer.verifier().vkey
    assert vkey.startswith("example.com/log+" + expected.hex() + "+")
    assert NoteVerifier.from_vkey(vkey) == signer.verifier()


def test_checkpoint_note_format_and_verify() -> None:
    signer = Ed25519NoteSigner.generate("example.com/log")
    cp = Checkpoint("example.com/log", 1234, hashlib.sha256(b"r").digest())
    note = sign_checkpoint(cp, signer)
    lines = note.split("\n")
    assert lines[0] == "example.com/log"
    assert lines[1] == "1234"
    assert base64.b64decode(lines[2]) == cp.root_hash
    assert lines[3] == ""
    assert lines[4].startswith("\u2014 example.com/log ")
    blob = base64.b64decode(lines[4].split(" ")[2])
    assert blob[:4] == signer.key_id
    assert len(blob) == 68
    assert note.endswith("\n")
    assert signer.verifier().open_checkpoint(note, origin="example.com/log") == cp


def test_checkpoint_tampering_detected() -> None:
    signer = Ed25519NoteSigner.generate("example.com/log")
    verifier = signer.verifier()
    cp = Checkpoint("example.com/log", 10, hashlib.sha256(b"r").digest())
    note = sign_checkpoint(cp, signer)
    with pytest.raises(CheckpointError) as e:
        verifier.open_checkpoint(note.replace("\n10\n", "\n11\n"))
    assert e.value.code == "checkpoint.bad_signature"
    other = Ed25519NoteSigner.generate("example.com/log")
    with pytest.raises(CheckpointError) as e:
        verifier.open_checkpoint(sign_checkpoint(cp, other))
    assert e.value.code == "checkpoint.unknown_key"
    with pytest.raises(CheckpointError):
        verifier.open_checkpoint(note, origin="other")
    for bad in [note.replace("\n\n", "\n"), note[:-1], "", note.replace("\u2014", "-")]:
        with pytest.raises(CheckpointError):
            verifier.open_checkpoint(bad)


def test_extra_signatures_are_ignored() -> None:
    signer = Ed25519NoteSigner.generate("log")
    witness = Ed25519NoteSigner.generate("witness")
    cp = Checkpoint("log", 1, hashlib.sha256(b"r").digest(), ("ext line",))
    note = sign_checkpoint(cp, signer)
    cosigned = note + parse_signed_note(sign_checkpoint(cp, witness)).signatures[0].line()
    assert signer.verifier().open_checkpoint(cosigned) == cp
    assert witness.verifier().open_checkpoint(cosigned) == cp


async def test_async_signer_and_signer_errors() -> None:
    soft = Ed25519NoteSigner.generate("log")

    class AsyncSigner:
        name = "log"
        key_id = soft.key_id

        async def sign(self, message: bytes) -> bytes:
            return soft.sign(message)

    class BrokenSigner:
        name = "log"
        key_id = soft.key_id

        def sign(self, message: bytes) -> bytes:
            raise RuntimeError("HSM unplugged")

    cp = Checkpoint("log", 1, hashlib.sha256(b"r").digest())
    note = await sign_checkpoint_async(cp, AsyncSigner())
    assert soft.verifier().open_checkpoint(note) == cp
    with pytest.raises(SignerError):
        sign_checkpoint(cp, BrokenSigner())
    with pytest.raises(SignerError):
        await sign_checkpoint_async(cp, BrokenSigner())


def test_checkpoint_validation() -> None:
    with pytest.raises(CheckpointError):
        Checkpoint("", 1, bytes(32))
    with pytest.raises(CheckpointError):
        Checkpoint("o", -1, bytes(32))
    with pytest.raises(CheckpointError):
        Checkpoint("o", 1, bytes(31))
    with pytest.raises(CheckpointError):
        Checkpoint.from_body("o\n01\n" + base64.b64encode(bytes(32)).decode() + "\n")


# ------------------------------------------------------------------------- days


def test_day_clock_default_is_utc_plus_5() -> None:
    clock = DayClock()
    # 19:00 UTC on 1 March is already 2 March in Kazakhstan.
    assert clock.day_of(datetime(2025, 3, 1, 18, 59, 59, tzinfo=UTC)) == date(2025, 3, 1)
    assert clock.day_of(datetime(2025, 3, 1, 19, 0, 0, tzinfo=UTC)) == date(2025, 3, 2)
    start, end = clock.bounds(date(2025, 3, 2))
    assert start == datetime(2025, 3, 1, 19, 0, tzinfo=UTC)
    assert end == datetime(2025, 3, 2, 19, 0, tzinfo=UTC)
    assert clock.contains(date(2025, 3, 2), start)
    assert not clock.contains(date(2025, 3, 2), end)


def test_day_clock_configurable_and_validated() -> None:
    utc = DayClock(timedelta(0))
    assert utc.bounds(date(2025, 1, 1))[0] == datetime(2025, 1, 1, tzinfo=UTC)
    with pytest.raises(AuditChainError):
        DayClock(timedelta(hours=15))
    with pytest.raises(AuditChainError):
        utc.day_of(datetime(2025, 1, 1))


@given(st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2200, 1, 1)))
def test_instant_falls_in_its_day(naive: datetime) -> None:
    clock = DayClock()
    instant = naive.replace(tzinfo=UTC)
    day = clock.day_of(instant)
    start, end = clock.bounds(day)
    assert start <= instant < end
    assert day_from_number(day_number(day)) == day
