"""Inclusion bundle: the JSON the service serves so a citizen can prove one event.

This module owns that format. A bundle carries the leaf (or only its hash if
its content was dropped by retention or is not public), its index, an RFC 9162
inclusion proof up to a tree size, the signed checkpoint of that size, the day
whose on-chain anchor holds that checkpoint, and — only in the bundles the
service gives an event's owner — the opening of a v2 leaf's commitment::

    {"format": "cloudsign-inclusion/2", "day": "2025-01-31", "index": 41,
     "tree_size": 1000, "leaf": {...} | null, "leaf_hash": "<hex>",
     "proof": ["<hex>", ...], "checkpoint": "<signed note>",
     "opening": {...} | null}

Bundles in the earlier format ``cloudsign-inclusion/1`` (no ``opening``) are
still read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from audit_chain.days import parse_day
from audit_chain.errors import AuditChainError, ProofError
from audit_chain.leaf import (
    Leaf,
    LeafOpening,
    leaf_from_json_obj,
    loads_strict,
    opening_from_json_obj,
)
from audit_chain.merkle import HASH_SIZE, MAX_PROOF_LENGTH, MerkleTree

__all__ = ["BUNDLE_FORMAT", "InclusionBundle", "build_inclusion_bundle"]

BUNDLE_FORMAT: Final = "cloudsign-inclusion/2"
LEGACY_BUNDLE_FORMAT: Final = "cloudsign-inclusion/1"
MAX_BUNDLE_BYTES: Final = 64 * 1024
_LEGACY_KEYS: Final = frozenset(
    {"format", "day", "index", "tree_size", "leaf", "leaf_hash", "proof", "checkpoint"}
)
_KEYS: Final = _LEGACY_KEYS | {"opening"}


@dataclass(frozen=True)
class InclusionBundle:
    day: date
    index: int
    tree_size: int
    leaf: Leaf | None
    leaf_hash: bytes
    proof: tuple[bytes, ...]
    checkpoint: str
    opening: LeafOpening | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "proof", tuple(self.proof))
        for name in ("index", "tree_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ProofError(f"{name} must be a non-negative int")
        if self.index >= self.tree_size:
            raise ProofError("index must be below tree size")
        if not isinstance(self.leaf_hash, bytes) or len(self.leaf_hash) != HASH_SIZE:
            raise ProofError("leaf hash must be 32 bytes")
        if len(self.proof) > MAX_PROOF_LENGTH or any(
            not isinstance(p, bytes) or len(p) != HASH_SIZE for p in self.proof
        ):
            raise ProofError("proof must be a list of 32-byte hashes")
        if not isinstance(self.checkpoint, str):
            raise ProofError("checkpoint must be a signed note")
        if self.opening is not None and not isinstance(self.opening, LeafOpening):
            raise ProofError("opening must be a LeafOpening")

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            "day": self.day.isoformat(),
            "index": self.index,
            "tree_size": self.tree_size,
            "leaf": None if self.leaf is None else self.leaf.to_json_obj(),
            "leaf_hash": self.leaf_hash.hex(),
            "proof": [p.hex() for p in self.proof],
            "checkpoint": self.checkpoint,
            "opening": None if self.opening is None else self.opening.to_json_obj(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_json_obj(), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, data: str | bytes) -> InclusionBundle:
        if len(data) > MAX_BUNDLE_BYTES:
            raise ProofError("inclusion bundle is too large")
        try:
            obj = loads_strict(data)
            if not isinstance(obj, dict):
                raise ProofError("a bundle is a JSON object")
            if obj.get("format") not in (BUNDLE_FORMAT, LEGACY_BUNDLE_FORMAT):
                raise ProofError(f"unsupported bundle format {obj.get('format')!r}")
            keys = _KEYS if obj["format"] == BUNDLE_FORMAT else _LEGACY_KEYS
            if set(obj) != keys:
                raise ProofError(f"bundle keys must be {sorted(keys)}")
            opening = obj.get("opening")
            if not isinstance(obj["proof"], list):
                raise ProofError("proof must be a list")
            return cls(
                day=parse_day(obj["day"]),
                index=obj["index"],
                tree_size=obj["tree_size"],
                leaf=None if obj["leaf"] is None else leaf_from_json_obj(obj["leaf"]),
                leaf_hash=bytes.fromhex(obj["leaf_hash"]),
                proof=tuple(bytes.fromhex(p) for p in obj["proof"]),
                checkpoint=obj["checkpoint"],
                opening=None if opening is None else opening_from_json_obj(opening),
            )
        except (TypeError, ValueError) as e:
            raise ProofError(f"malformed inclusion bundle: {e}") from e
        except ProofError:
            raise
        except AuditChainError as e:
            raise ProofError(f"malformed inclusion bundle: {e.message}") from e


def build_inclusion_bundle(
    tree: MerkleTree,
    index: int,
    tree_size: int,
    day: date,
    checkpoint_note: str,
    leaf: Leaf | None = None,
    proof: Sequence[bytes] | None = None,
    opening: LeafOpening | None = None,
) -> InclusionBundle:
    """Server side: bundle the proof of leaf ``index`` up to the checkpoint of ``day``.

    ``tree_size`` must be the size stated in ``checkpoint_note``; ``leaf`` is the
    content if still retained (and public, or the bundle is for its owner);
    ``opening`` only for the owner of the event.
    """
    path = list(proof) if proof is not None else tree.inclusion_proof(index, tree_size)
    return InclusionBundle(
        day=day,
        index=index,
        tree_size=tree_size,
        leaf=leaf,
        leaf_hash=tree.leaf_hash(index),
        proof=tuple(path),
        checkpoint=checkpoint_note,
        opening=opening,
    )
