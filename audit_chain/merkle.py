"""RFC 9162 Merkle tree over leaf hashes: roots, inclusion and consistency proofs.

This module owns the tree arithmetic. Everything works from 32-byte *leaf
hashes* (SHA-256(0x00 || leaf)), never from leaf content, because retention may
delete an entry's content while its leaf hash has to stay in the tree.

* :func:`root_from_leaf_hashes`, :func:`verify_inclusion`,
  :func:`verify_consistency` — stateless, exactly the RFC 9162 §2.1.3.2 and
  §2.1.4.2 verification algorithms.
* :class:`CompactRange` — the right frontier of a tree (one hash per set bit of
  its size). Enough to append leaves and compute new roots without the earlier
  leaves: a day export carries the frontier at the previous checkpoint.
* :class:`MerkleTree` — an append-only in-memory tree that caches every complete
  subtree hash level by level (``bytearray`` per level, 64 bytes per leaf in
  total), so a root is O(log n) and a proof O(log² n) hashes at any size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from audit_chain.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "MerkleTree",
    "consistency_proof_from",
    "inclusion_proof_from",
    "node_hash",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
#: MTH({}) = SHA-256 of the empty string.
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
#: Proofs longer than this cannot belong to a tree of fewer than 2**64 leaves.
MAX_PROOF_LENGTH: Final = 64 * 2
_NODE_PREFIX: Final = b"\x01"
_sha256 = hashlib.sha256


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node: SHA-256(0x01 || left || right)."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hash(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} must be {HASH_SIZE} bytes")
    return value


def _check_size(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProofError(f"{what} must be a non-negative int")
    return value


# --------------------------------------------------------------------------- roots


def root_from_leaf_hashes(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH of the given leaf hashes, streaming (O(log n) memory)."""
    rng = CompactRange()
    for h in leaf_hashes:
        rng.append(h)
    return rng.root()


class CompactRange:
    """Right frontier of a tree of ``size`` leaves.

    ``hashes`` holds one subtree hash per set bit of ``size``, largest subtree
    first (the order the transparency-dev ``compact.Range`` uses for ranges
    starting at 0). Appending costs amortised one node hash.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        _check_size(size, "size")
        hashes = list(hashes)
        if len(hashes) != size.bit_count():
            raise ProofError(
                f"a frontier of size {size} has {size.bit_count()} hashes, got {len(hashes)}"
            )
        for h in hashes:
            _check_hash(h, "frontier hash")
        self._size = size
        self._hashes = hashes

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def copy(self) -> CompactRange:
        return CompactRange(self._size, self._hashes)

    def append(self, leaf_hash: bytes) -> None:
        if len(leaf_hash) != HASH_SIZE:
            raise ProofError("leaf hash must be 32 bytes")
        hashes = self._hashes
        h = leaf_hash
        size = self._size
        # Each trailing 1 bit of the old size is a complete subtree that merges
        # with the new node, exactly like carrying in binary addition.
        while size & 1:
            h = _sha256(_NODE_PREFIX + hashes.pop() + h).digest()
            size >>= 1
        hashes.append(h)
        self._size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        hashes = self._hashes
        h = hashes[-1]
        for left in reversed(hashes[:-1]):
            h = _sha256(_NODE_PREFIX + left + h).digest()
        return h


# --------------------------------------------------------------- proof generation

SubtreeHash = Callable[[int, int], bytes]


def inclusion_proof_from(index: int, size: int, subtree_hash: SubtreeHash) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[0:size]) using ``subtree_hash(lo, hi)``.

    ``subtree_hash`` must return MTH(D[lo:hi]); it is only called for ranges
    whose ``lo`` is a multiple of the largest power of two <= ``hi - lo``.
    """
    _check_size(index, "index")
    _check_size(size, "size")
    if index >= size:
        raise ProofError(f"index {index} is not below tree size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    # Iterative form of the recursive definition; proof elements are produced
    # top-down, and the RFC lists them bottom-up, hence the final reverse.
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(subtree_hash(lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree_hash(lo, lo + k))
            lo = lo + k
    path.reverse()
    return path


def consistency_proof_from(old_size: int, new_size: int, subtree_hash: SubtreeHash) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(old_size, D[0:new_size]) using ``subtree_hash``."""
    _check_size(old_size, "old_size")
    _check_size(new_size, "new_size")
    if old_size > new_size:
        raise ProofError(f"old size {old_size} exceeds new size {new_size}")
    if old_size == 0 or old_size == new_size:
        return []
    path: list[bytes] = []
    lo, hi = 0, new_size
    m = old_size
    have_root = True  # the "b" flag of SUBPROOF
    while True:
        n = hi - lo
        if m == n:
            if not have_root:
                path.append(subtree_hash(lo, hi))
            break
        k = _split(n)
        if m <= k:
            path.append(subtree_hash(lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree_hash(lo, lo + k))
            lo = lo + k
            m -= k
            have_root = False
    path.reverse()
    return path


# ------------------------------------------------------------- proof verification


def _check_proof(proof: Sequence[bytes]) -> list[bytes]:
    if isinstance(proof, bytes | str) or not isinstance(proof, Sequence):
        raise ProofError("proof must be a sequence of hashes")
    if len(proof) > MAX_PROOF_LENGTH:
        raise ProofError("proof is too long")
    return [_check_hash(p, "proof element") for p in proof]


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that ``proof`` implies for ``leaf_hash`` at ``index`` (RFC 9162 §2.1.3.2)."""
    _check_hash(leaf_hash, "leaf hash")
    _check_size(index, "index")
    _check_size(size, "size")
    path = _check_proof(proof)
    if index >= size:
        raise ProofError(f"index {index} is not below tree size {size}")
    fn, sn = index, size - 1
    r = leaf_hash
    for p in path:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise :class:`ProofError` unless ``proof`` puts ``leaf_hash`` at ``index`` under ``root``."""
    _check_hash(root, "root")
    if root_from_inclusion_proof(leaf_hash, index, size, proof) != root:
        raise ProofError("inclusion proof does not lead to the expected root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows the old tree is a prefix of the new.

    RFC 9162 §2.1.4.2, plus the edge cases it leaves implicit: equal sizes need an
    empty proof and equal roots; an empty old tree is a prefix of anything.
    """
    _check_size(old_size, "old_size")
    _check_size(new_size, "new_size")
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    path = _check_proof(proof)
    if old_size > new_size:
        raise ProofError(f"old size {old_size} exceeds new size {new_size}")
    if old_size == new_size:
        if path:
            raise ProofError("consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("equal tree sizes with different roots")
        return
    if old_size == 0:
        if path:
            raise ProofError("consistency proof from the empty tree must be empty")
        if old_root != EMPTY_ROOT:
            raise ProofError("the empty tree has a fixed root")
        return
    if not path:
        raise ProofError("consistency proof is empty")
    if old_size & (old_size - 1) == 0:
        path = [old_root, *path]
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != old_root:
        raise ProofError("consistency proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("consistency proof does not lead to the new root")


# --------------------------------------------------------------------- the tree


class MerkleTree:
    """Append-only tree of leaf hashes with a level cache of complete subtrees.

    ``_levels[k]`` is a ``bytearray`` of the hashes of the complete subtrees of
    2**k leaves, left to right; ``_levels[0]`` is the leaf hashes themselves.
    Memory is ~64 bytes per leaf; 1,000,000 leaves need ~64 MB.
    """

    __slots__ = ("_levels", "_size")

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: Iterable[bytes]) -> MerkleTree:
        """Build in bulk, level by level (faster than repeated :meth:`append`)."""
        tree = cls()
        level0 = bytearray()
        count = 0
        for h in leaf_hashes:
            if len(h) != HASH_SIZE:
                raise ProofError("leaf hash must be 32 bytes")
            level0 += h
            count += 1
        tree._levels = [level0]
        tree._size = count
        level = level0
        sha, prefix = _sha256, _NODE_PREFIX
        while len(level) >= 2 * HASH_SIZE:
            end = len(level) - len(level) % (2 * HASH_SIZE)
            level = bytearray(
                b"".join([sha(prefix + level[i : i + 64]).digest() for i in range(0, end, 64)])
            )
            tree._levels.append(level)
        return tree

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return self._size

    def append(self, leaf_hash: bytes) -> int:
        """Append one leaf hash; return its index."""
        if not isinstance(leaf_hash, bytes | bytearray) or len(leaf_hash) != HASH_SIZE:
            raise ProofError("leaf hash must be 32 bytes")
        index = self._size
        levels = self._levels
        levels[0] += leaf_hash
        n = index + 1
        k = 0
        # A new complete subtree of 2**(k+1) leaves exists whenever n is divisible by it.
        while n & 1 == 0:
            level = levels[k]
            node = _sha256(_NODE_PREFIX + level[-64:]).digest()
            if len(levels) == k + 1:
                levels.append(bytearray())
            levels[k + 1] += node
            n >>= 1
            k += 1
        self._size = index + 1
        return index

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        for h in leaf_hashes:
            self.append(h)

    def leaf_hash(self, index: int) -> bytes:
        if not 0 <= index < self._size:
            raise ProofError(f"no leaf {index} in a tree of size {self._size}")
        return bytes(self._levels[0][index * 32 : index * 32 + 32])

    def _node(self, level: int, offset: int) -> bytes:
        start = offset * HASH_SIZE
        return bytes(self._levels[level][start : start + HASH_SIZE])

    def _subtree_hash(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n & (n - 1) == 0:
            k = n.bit_length() - 1
            return self._node(k, lo >> k)
        k = _split(n)
        return node_hash(self._subtree_hash(lo, lo + k), self._subtree_hash(lo + k, hi))

    def _check_tree_size(self, size: int | None) -> int:
        if size is None:
            return self._size
        _check_size(size, "size")
        if size > self._size:
            raise ProofError(f"tree size {size} exceeds the {self._size} leaves held")
        return size

    def frontier(self, size: int | None = None) -> CompactRange:
        """The compact range (right frontier) of the tree of the first ``size`` leaves."""
        size = self._check_tree_size(size)
        hashes: list[bytes] = []
        lo = 0
        for k in range(size.bit_length() - 1, -1, -1):
            if size >> k & 1:
                hashes.append(self._node(k, lo >> k))
                lo += 1 << k
        return CompactRange(size, hashes)

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all)."""
        return self.frontier(size).root()

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof_from(index, self._check_tree_size(size), self._subtree_hash)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return consistency_proof_from(old_size, self._check_tree_size(new_size), self._subtree_hash)
