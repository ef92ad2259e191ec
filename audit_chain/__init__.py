"""audit_chain: a verifiable, blockchain-anchored audit log of signing-key events.

This package owns the log's cryptography and formats — canonical event leaves,
the RFC 9162 Merkle tree, signed checkpoints, day exports, inclusion bundles,
the on-chain anchor contract and its client — and the auditor's verifier and
CLI. It runs without the service: it never imports ``cloudsign`` (or any other
project package); the service calls it and implements its signer Protocols with
the HSM.
"""

from audit_chain.errors import (
    AnvilError,
    AuditChainError,
    ChainError,
    CheckpointError,
    ExportError,
    LeafFormatError,
    ProofError,
    SignerError,
    VerificationError,
)

__all__ = [
    "AnvilError",
    "AuditChainError",
    "ChainError",
    "CheckpointError",
    "ExportError",
    "LeafFormatError",
    "ProofError",
    "SignerError",
    "VerificationError",
]
