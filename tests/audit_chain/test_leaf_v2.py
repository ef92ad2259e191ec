"""v2 leaves: the public leaf, the commitment, openings, and that v1 leaves
(logged before commitments) still parse."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ac_support import DATA
from hypothesis import given
from hypothesis import strategies as st

from audit_chain.errors import LeafFormatError, OpeningError
from audit_chain.leaf import (
    COMMITMENT_LABEL,
    CommittedLeaf,
    EventLeaf,
    EventType,
    LeafOpening,
    OpenedLeaf,
    leaf_from_json_obj,
    leaf_hash,
    parse_leaf,
    parse_opening,
)

T0 = datetime(2025, 3, 1, 10, 30, 0, 123456, tzinfo=UTC)
SALT = bytes(range(32))
OWNER = bytes(range(100, 132))
CREDENTIAL = b"\x11" * 16
DOCUMENT = b"\xaa" * 32


def _opening(**over: Any) -> LeafOpening:
    values: dict[str, Any] = {
        "salt": SALT,
        "owner_tag": OWNER,
        "credential_tag": CREDENTIAL,
        "document_hash": DOCUMENT,
        "extra": {"serial": "04d2", "n": 1},
    }
    values.update(over)
    return LeafOpening(**values)


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_public_leaf_and_commitment_are_fixed() -> None:
    opening = _opening()
    leaf = opening.seal(41, EventType.KEY_USE, T0)
    message = (
        b'{"credential":"' + CREDENTIAL.hex().encode() + b'","document":"'
        + DOCUMENT.hex().encode() + b'","extra":{"n":1,"serial":"04d2"},"index":41,'
        b'"owner":"' + OWNER.hex().encode() + b'","time":"2025-03-01T10:30:00.123456Z",'
        b'"type":"key.use","v":2}'
    )  # fmt: skip
    assert opening.committed_message(41, EventType.KEY_USE, T0) == message
    commitment = hashlib.sha256(b"cloudsign-audit-leaf-commitment/2\x00" + SALT + message).digest()
    assert COMMITMENT_LABEL == b"cloudsign-audit-leaf-commitment/2\x00"
    assert leaf.commitment == commitment
    assert leaf.to_bytes() == (
        b'{"commitment":"' + commitment.hex().encode() + b'","index":41,'
        b'"time":"2025-03-01T10:30:00.123456Z","type":"key.use","v":2}'
    )
    # Pinned: a change to the encoding or the formula changes every leaf hash.
    assert leaf.leaf_hash().hex() == (
        "c647df868ce731b00fc6be8a0f03303814dd214dcb14f79b920d3f80edd7741f"
    )
    assert leaf.leaf_hash() == hashlib.sha256(b"\x00" + leaf.to_bytes()).digest()
    assert opening.to_bytes() == (
        b'{"credential":"' + CREDENTIAL.hex().encode() + b'","document":"'
        + DOCUMENT.hex().encode() + b'","extra":{"n":1,"serial":"04d2"},'
        b'"owner":"' + OWNER.hex().encode() + b'","salt":"' + SALT.hex().encode() + b'"}'
    )  # fmt: skip
    assert parse_leaf(leaf.to_bytes()) == leaf
    assert parse_opening(opening.to_bytes()) == opening


def test_commitment_is_domain_separated() -> None:
    opening = _opening()
    message = opening.committed_message(41, EventType.KEY_USE, T0)
    commitment = opening.commitment(41, EventType.KEY_USE, T0)
    assert commitment != hashlib.sha256(SALT + message).digest()
    assert commitment != leaf_hash(message)
    assert commitment != hashlib.sha256(message).digest()


@given(
    index=st.integers(min_value=0, max_value=2**63 - 1),
    event_type=st.sampled_from(list(EventType)),
    micros=st.integers(min_value=0, max_value=10**15),
    commitment=st.binary(min_size=32, max_size=32),
)
def test_direct_encoding_is_the_canonical_json(
    index: int, event_type: EventType, micros: int, commitment: bytes
) -> None:
    when = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    leaf = CommittedLeaf(index, event_type, when, commitment)
    as_json = _json(leaf.to_json_obj())
    assert leaf.to_bytes() == as_json
    assert parse_leaf(as_json) == leaf


@given(
    tag=st.binary(min_size=16, max_size=64),
    credential=st.none() | st.binary(min_size=8, max_size=64),
    document=st.none() | st.sampled_from([b"\x01" * 32, b"\x02" * 48, b"\x03" * 64]),
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
    salt=st.binary(min_size=32, max_size=32),
)
def test_opening_round_trip_and_opens_its_leaf(
    tag: bytes,
    credential: bytes | None,
    document: bytes | None,
    extra: dict[str, Any],
    salt: bytes,
) -> None:
    opening = LeafOpening(salt, tag, credential, document, extra)
    leaf = opening.seal(9, EventType.KEY_USE, T0)
    # The spliced encodings are exactly the JSON encoder's canonical form.
    assert opening.to_bytes() == _json(opening.to_json_obj())
    expected = {**opening.to_json_obj(), "index": 9, "time": "2025-03-01T10:30:00.123456Z"}
    expected.update({"type": "key.use", "v": 2})
    del expected["salt"]
    assert opening.committed_message(9, EventType.KEY_USE, T0) == _json(expected)
    assert parse_opening(opening.to_bytes()) == opening
    assert parse_leaf(leaf.to_bytes()) == leaf
    assert opening.opens(leaf)
    OpenedLeaf(leaf, opening)  # checks on construction


@pytest.mark.parametrize(
    "change",
    [
        {"salt": bytes(32)},
        {"owner_tag": bytes(32)},
        {"credential_tag": None},
        {"credential_tag": b"\x12" * 16},
        {"document_hash": b"\xab" * 32},
        {"document_hash": None},
        {"extra": {"serial": "04d3", "n": 1}},
        {"extra": {}},
    ],
)
def test_an_altered_opening_does_not_open(change: dict[str, Any]) -> None:
    leaf = _opening().seal(41, EventType.KEY_USE, T0)
    altered = _opening(**change)
    assert not altered.opens(leaf)
    with pytest.raises(OpeningError) as e:
        altered.check(leaf)
    assert e.value.code == "leaf.opening_mismatch"
    with pytest.raises(OpeningError):
        OpenedLeaf(leaf, altered)


@pytest.mark.parametrize(
    "change",
    [
        {"index": 42},
        {"event_type": EventType.KEY_CREATE},
        {"time": T0 + timedelta(microseconds=1)},
    ],
)
def test_the_commitment_binds_the_public_fields(change: dict[str, Any]) -> None:
    # One opening opens exactly one leaf: not a copy of it elsewhere in the
    # log, nor one with another type or time.
    opening = _opening(document_hash=None)
    leaf = opening.seal(41, EventType.KEY_USE, T0)
    moved = dataclasses.replace(leaf, **change)
    assert not opening.opens(moved)


def test_two_leaves_of_one_owner_share_nothing_public_but_type_and_time() -> None:
    first = LeafOpening.new(OWNER, CREDENTIAL, DOCUMENT, {"scheme": "pades"})
    second = LeafOpening.new(OWNER, CREDENTIAL, DOCUMENT, {"scheme": "pades"})
    assert first.salt != second.salt and len(first.salt) == 32
    a = first.seal(1, EventType.KEY_USE, T0).to_json_obj()
    b = second.seal(2, EventType.KEY_USE, T0).to_json_obj()
    shared = {k for k in a if a[k] == b[k]}
    assert shared == {"type", "time", "v"}
    for public in (a, b):
        text = json.dumps(public)
        for private in (OWNER.hex(), CREDENTIAL.hex(), DOCUMENT.hex(), "pades"):
            assert private not in text


@pytest.mark.parametrize(
    "data",
    [
        # an owner tag in a v2 leaf
        b'{"commitment":"' + b"00" * 32 + b'","index":1,"owner":"' + OWNER.hex().encode()
        + b'","time":"2025-03-01T10:30:00.123456Z","type":"key.use","v":2}',
        # no commitment
        b'{"index":1,"time":"2025-03-01T10:30:00.123456Z","type":"key.use","v":2}',
        # short, uppercase
        b'{"commitment":"' + b"00" * 31 + b'","index":1,"time":"2025-03-01T10:30:00.123456Z",'
        b'"type":"key.use","v":2}',
        b'{"commitment":"' + b"AB" * 32 + b'","index":1,"time":"2025-03-01T10:30:00.123456Z",'
        b'"type":"key.use","v":2}',
        # not canonical: whitespace, key order
        b'{"commitment": "' + b"00" * 32 + b'","index":1,"time":"2025-03-01T10:30:00.123456Z",'
        b'"type":"key.use","v":2}',
        b'{"index":1,"commitment":"' + b"00" * 32 + b'","time":"2025-03-01T10:30:00.123456Z",'
        b'"type":"key.use","v":2}',
        # a version that is a boolean, or unknown
        b'{"commitment":"' + b"00" * 32 + b'","index":1,"time":"2025-03-01T10:30:00.123456Z",'
        b'"type":"key.use","v":true}',
        b'{"commitment":"' + b"00" * 32 + b'","index":1,"time":"2025-03-01T10:30:00.123456Z",'
        b'"type":"key.use","v":3}',
    ],
)  # fmt: skip
def test_parse_refuses_malformed_v2_leaves(data: bytes) -> None:
    with pytest.raises(LeafFormatError):
        parse_leaf(data)


@pytest.mark.parametrize(
    "change",
    [
        {"salt": bytes(16)},  # one size only: 32 bytes
        {"salt": "00" * 32},
        {"owner_tag": b"short"},
        {"credential_tag": b"x"},
        {"document_hash": b"\x01" * 20},
        {"extra": {"f": 1.5}},
        {"extra": {"Bad Key": 1}},
    ],
)
def test_opening_validates_on_construction(change: dict[str, Any]) -> None:
    with pytest.raises(LeafFormatError):
        _opening(**change)


def test_document_only_on_key_use_and_bounded_message() -> None:
    with pytest.raises(LeafFormatError):
        _opening().seal(1, EventType.CERT_ISSUE, T0)
    big = {f"k{i}": "x" * 256 for i in range(16)}
    with pytest.raises(LeafFormatError):
        _opening(extra=big).seal(1, EventType.KEY_USE, T0)


def test_parse_opening_refuses_non_canonical_and_unknown_keys() -> None:
    good = _opening().to_json_obj()
    for bad in (
        json.dumps(good).encode(),  # whitespace
        json.dumps({**good, "index": 1}, sort_keys=True, separators=(",", ":")).encode(),
        json.dumps({**good, "extra": {}}, sort_keys=True, separators=(",", ":")).encode(),
        json.dumps({"owner": good["owner"]}, separators=(",", ":")).encode(),
    ):
        with pytest.raises(LeafFormatError):
            parse_opening(bad)


def test_opening_repr_shows_no_value() -> None:
    text = repr(_opening())
    for secret in (SALT.hex(), OWNER.hex(), DOCUMENT.hex(), "04d2"):
        assert secret not in text
    assert repr(_opening()) == "LeafOpening(credential=True, document=True, extra=2 keys)"


def test_v1_leaves_still_parse_and_have_nothing_to_open() -> None:
    lines = (DATA / "v1-2025-03-01.jsonl").read_bytes().splitlines()[1:]
    leaves = [parse_leaf(line) for line in lines]
    assert all(isinstance(leaf, EventLeaf) and leaf.version == 1 for leaf in leaves)
    with pytest.raises(OpeningError):
        _opening().check(leaves[0])  # type: ignore[arg-type]
    # The same event in v2 hashes differently: a v1 day keeps its v1 hashes.
    v1 = leaves[0]
    assert isinstance(v1, EventLeaf)
    v2 = LeafOpening(SALT, v1.owner_tag, v1.credential_tag).seal(v1.index, v1.event_type, v1.time)
    assert v2.leaf_hash() != v1.leaf_hash()
    assert leaf_from_json_obj(json.loads(lines[0])) == v1
