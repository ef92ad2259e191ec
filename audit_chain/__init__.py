"""audit_chain: a verifiable, blockchain-anchored audit log of signing-key events.

This package owns the log's cryptography and formats — canonical event leaves
(v2: public index, type and time plus a salted commitment to the rest, opened
only by the owner's or an auditor's opening; v1 still verified), the RFC 9162
Merkle tree, signed checkpoints, day exports, inclusion bundles, the on-chain
anchor contract and its client — and the auditor's verifier and CLI. It runs
without the service: it never imports ``cloudsign`` (or any other project
package); the service calls it and implements its signer Protocols with the
HSM. See ``docs/audit_chain.md``.
"""

from audit_chain.anchors import AnchorLookup, AnchorRecord
from audit_chain.anvil import AnvilProcess, find_anvil
from audit_chain.bundle import InclusionBundle, build_inclusion_bundle
from audit_chain.checkpoint import (
    AsyncNoteSigner,
    Checkpoint,
    Ed25519NoteSigner,
    NoteSigner,
    NoteVerifier,
    ed25519_key_id,
    key_fingerprint,
    sign_checkpoint,
    sign_checkpoint_async,
)
from audit_chain.days import DEFAULT_UTC_OFFSET, DayClock, day_number
from audit_chain.errors import (
    AnvilError,
    AuditChainError,
    ChainError,
    CheckpointError,
    ExportError,
    LeafFormatError,
    OpeningError,
    ProofError,
    SignerError,
    VerificationError,
)
from audit_chain.ethereum import (
    AnchorClient,
    AnchorReceipt,
    AsyncTransactionSigner,
    EthereumAccount,
    SoftwareSecp256k1Signer,
    TransactionSigner,
)
from audit_chain.export import (
    CONTENTS_FULL,
    CONTENTS_PUBLIC,
    DayExportHeader,
    DayExportReader,
    iter_day_export,
    write_day_export,
)
from audit_chain.leaf import (
    CommittedLeaf,
    DroppedLeaf,
    EventLeaf,
    EventType,
    Leaf,
    LeafOpening,
    OpenedLeaf,
    WithheldLeaf,
    leaf_hash,
    parse_leaf,
    parse_opening,
)
from audit_chain.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleTree,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from audit_chain.verify import (
    ProvenEvent,
    VerifiedDay,
    verify_day,
    verify_day_offline,
    verify_inclusion_bundle,
)

__all__ = [
    "CONTENTS_FULL",
    "CONTENTS_PUBLIC",
    "DEFAULT_UTC_OFFSET",
    "EMPTY_ROOT",
    "AnchorClient",
    "AnchorLookup",
    "AnchorReceipt",
    "AnchorRecord",
    "AnvilError",
    "AnvilProcess",
    "AsyncNoteSigner",
    "AsyncTransactionSigner",
    "AuditChainError",
    "ChainError",
    "Checkpoint",
    "CheckpointError",
    "CommittedLeaf",
    "CompactRange",
    "DayClock",
    "DayExportHeader",
    "DayExportReader",
    "DroppedLeaf",
    "Ed25519NoteSigner",
    "EthereumAccount",
    "EventLeaf",
    "EventType",
    "ExportError",
    "InclusionBundle",
    "Leaf",
    "LeafFormatError",
    "LeafOpening",
    "MerkleTree",
    "NoteSigner",
    "NoteVerifier",
    "OpenedLeaf",
    "OpeningError",
    "ProofError",
    "ProvenEvent",
    "SignerError",
    "SoftwareSecp256k1Signer",
    "TransactionSigner",
    "VerificationError",
    "VerifiedDay",
    "WithheldLeaf",
    "build_inclusion_bundle",
    "day_number",
    "ed25519_key_id",
    "find_anvil",
    "iter_day_export",
    "key_fingerprint",
    "leaf_hash",
    "parse_leaf",
    "parse_opening",
    "root_from_leaf_hashes",
    "sign_checkpoint",
    "sign_checkpoint_async",
    "verify_consistency",
    "verify_day",
    "verify_day_offline",
    "verify_inclusion",
    "verify_inclusion_bundle",
    "write_day_export",
]
