"""RFC 6962/9162 Merkle tree: known answers, reference cross-checks, properties."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_chain.errors import ProofError
from audit_chain.leaf import leaf_hash
from audit_chain.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleTree,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

# The classic 8-leaf vectors of the certificate-transparency reference
# implementations (transparency-dev/merkle testonly/constants.go and
# reference_test.go, originally CT's cpp/merkletree/merkle_tree_test.cc).
LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (index, size, path)
INCLUSION = [
    (0, 1, []),
    (0, 2, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"]),
    (1, 2, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
# (old size, new size, path)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

LEAF_HASHES = [leaf_hash(x) for x in LEAVES]


def _h(xs: list[str]) -> list[bytes]:
    return [bytes.fromhex(x) for x in xs]


# ---------------------------------------------------------------- reference MTH


def ref_root(hashes: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH, literally (recursive, no caching)."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return node_hash(ref_root(hashes[:k]), ref_root(hashes[k:]))


def ref_path(m: int, hashes: list[bytes]) -> list[bytes]:
    n = len(hashes)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*ref_path(m, hashes[:k]), ref_root(hashes[k:])]
    return [*ref_path(m - k, hashes[k:]), ref_root(hashes[:k])]


def ref_subproof(m: int, hashes: list[bytes], b: bool) -> list[bytes]:
    n = len(hashes)
    if m == n:
        return [] if b else [ref_root(hashes)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*ref_subproof(m, hashes[:k], b), ref_root(hashes[k:])]
    return [*ref_subproof(m - k, hashes[k:], False), ref_root(hashes[:k])]


def inclusion_shape(index: int, size: int, length: int) -> list[bool] | None:
    """Sides the RFC 9162 walk puts each proof element on (None: walk fails).

    A proof for (index, size) also verifies for another size exactly when the
    walk has the same shape: RFC 9162 binds the size through the signed
    checkpoint, not through the proof. The wrong-size property is stated with it.
    """
    fn, sn = index, size - 1
    if index >= size:
        return None
    out = []
    for _ in range(length):
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            out.append(True)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            out.append(False)
        fn >>= 1
        sn >>= 1
    return out if sn == 0 else None


def consistency_shape(old: int, new: int, length: int) -> tuple[bool, list[bool]] | None:
    if not 0 < old < new:
        return None
    pow2 = old & (old - 1) == 0
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    out = []
    for _ in range(length + (1 if pow2 else 0) - 1):
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            out.append(True)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            out.append(False)
        fn >>= 1
        sn >>= 1
    return (pow2, out) if sn == 0 else None


# ----------------------------------------------------------------- known answers


def test_empty_tree_hash() -> None:
    assert EMPTY_ROOT.hex() == ROOTS[0]
    assert MerkleTree().root() == EMPTY_ROOT
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_known_roots(size: int) -> None:
    expected = bytes.fromhex(ROOTS[size])
    assert root_from_leaf_hashes(LEAF_HASHES[:size]) == expected
    assert MerkleTree.from_leaf_hashes(LEAF_HASHES[:size]).root() == expected
    incremental = MerkleTree()
    incremental.extend(LEAF_HASHES)
    assert incremental.root(size) == expected


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_known_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    tree = MerkleTree.from_leaf_hashes(LEAF_HASHES)
    assert tree.inclusion_proof(index, size) == _h(path)
    verify_inclusion(LEAF_HASHES[index], index, size, _h(path), bytes.fromhex(ROOTS[size]))


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY)
def test_known_consistency_proofs(old: int, new: int, path: list[str]) -> None:
    tree = MerkleTree.from_leaf_hashes(LEAF_HASHES)
    assert tree.consistency_proof(old, new) == _h(path)
    verify_consistency(old, new, bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new]), _h(path))


def test_known_frontiers() -> None:
    # transparency-dev testonly.CompactTrees(): sizes 3 and 7.
    tree = MerkleTree.from_leaf_hashes(LEAF_HASHES)
    assert [h.hex() for h in tree.frontier(3).hashes] == [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    ]
    assert [h.hex() for h in tree.frontier(7).hashes] == [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    ]


def test_rejects_bad_inputs() -> None:
    tree = MerkleTree.from_leaf_hashes(LEAF_HASHES)
    with pytest.raises(ProofError):
        tree.inclusion_proof(8, 8)
    with pytest.raises(ProofError):
        tree.inclusion_proof(0, 9)
    with pytest.raises(ProofError):
        tree.consistency_proof(5, 4)
    with pytest.raises(ProofError):
        verify_inclusion(b"x", 0, 1, [], EMPTY_ROOT)
    with pytest.raises(ProofError):
        verify_consistency(0, 3, EMPTY_ROOT, tree.root(3), [tree.root(3)])
    with pytest.raises(ProofError):
        verify_consistency(3, 3, tree.root(3), tree.root(3), [tree.root(3)])
    with pytest.raises(ProofError):
        CompactRange(3, [EMPTY_ROOT])
    # An empty old tree is a prefix of every tree.
    verify_consistency(0, 3, EMPTY_ROOT, tree.root(3), [])


# ------------------------------------------------------------------- properties

sizes = st.integers(min_value=1, max_value=300)


def _hashes(n: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n)]


@settings(max_examples=150, deadline=None)
@given(size=sizes)
def test_roots_match_reference(size: int) -> None:
    hs = _hashes(size)
    expected = ref_root(hs)
    assert MerkleTree.from_leaf_hashes(hs).root() == expected
    t = MerkleTree()
    t.extend(hs)
    assert t.root() == expected
    assert root_from_leaf_hashes(hs) == expected
    # frontier of a prefix extended by the rest equals the whole
    cut = size // 3
    rng = t.frontier(cut)
    rng.extend(hs[cut:])
    assert rng.root() == expected


@settings(max_examples=200, deadline=None)
@given(data=st.data(), size=sizes)
def test_inclusion_property(data: st.DataObject, size: int) -> None:
    hs = _hashes(size)
    tree = MerkleTree.from_leaf_hashes(hs)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = tree.inclusion_proof(index)
    assert proof == ref_path(index, hs)
    root = tree.root()
    verify_inclusion(hs[index], index, size, proof, root)

    # Any flipped byte anywhere in the proof fails.
    if proof:
        j = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        b = data.draw(st.integers(min_value=0, max_value=31))
        bad = list(proof)
        bad[j] = bad[j][:b] + bytes([bad[j][b] ^ 0x01]) + bad[j][b + 1 :]
        with pytest.raises(ProofError):
            verify_inclusion(hs[index], index, size, bad, root)
    # Flipped leaf hash fails.
    flipped = bytes([hs[index][0] ^ 0x80]) + hs[index][1:]
    with pytest.raises(ProofError):
        verify_inclusion(flipped, index, size, proof, root)
    # Wrong index fails.
    other = data.draw(st.integers(min_value=0, max_value=size))
    if other != index:
        with pytest.raises(ProofError):
            verify_inclusion(hs[index], other, size, proof, root)
    # Wrong size fails.
    wrong_size = data.draw(st.integers(min_value=1, max_value=size + 5))
    if inclusion_shape(index, wrong_size, len(proof)) != inclusion_shape(index, size, len(proof)):
        with pytest.raises(ProofError):
            verify_inclusion(hs[index], index, wrong_size, proof, root)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), new=sizes)
def test_consistency_property(data: st.DataObject, new: int) -> None:
    hs = _hashes(new)
    tree = MerkleTree.from_leaf_hashes(hs)
    old = data.draw(st.integers(min_value=1, max_value=new))
    proof = tree.consistency_proof(old, new)
    assert proof == (ref_subproof(old, hs, True) if old < new else [])
    old_root, new_root = tree.root(old), tree.root(new)
    verify_consistency(old, new, old_root, new_root, proof)

    if proof:
        j = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        b = data.draw(st.integers(min_value=0, max_value=31))
        bad = list(proof)
        bad[j] = bad[j][:b] + bytes([bad[j][b] ^ 0x01]) + bad[j][b + 1 :]
        with pytest.raises(ProofError):
            verify_consistency(old, new, old_root, new_root, bad)
        with pytest.raises(ProofError):
            verify_consistency(old, new, old_root, new_root, proof[:-1])
    wrong_old = data.draw(st.integers(min_value=1, max_value=new))
    shape = consistency_shape(old, new, len(proof))
    if consistency_shape(wrong_old, new, len(proof)) != shape and wrong_old != old:
        with pytest.raises(ProofError):
            verify_consistency(wrong_old, new, old_root, new_root, proof)
    wrong_new = data.draw(st.integers(min_value=old, max_value=new + 5))
    if consistency_shape(old, wrong_new, len(proof)) != shape and wrong_new != new:
        with pytest.raises(ProofError):
            verify_consistency(old, wrong_new, old_root, new_root, proof)
    with pytest.raises(ProofError):
        verify_consistency(old, new, old_root, node_hash(new_root, new_root), proof)
