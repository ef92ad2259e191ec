"""The error hierarchy of audit_chain: one root exception with a stable ``code``.

Every public entry point raises only :class:`AuditChainError` (or a subclass);
builtin exceptions from parsing, cryptography or the network are wrapped with
``raise ... from e`` so callers (the service, the CLI) branch on ``code`` and
never on message text.
"""

from __future__ import annotations

__all__ = [
    "AnvilError",
    "AuditChainError",
    "ChainError",
    "CheckpointError",
    "ExportError",
    "LeafFormatError",
    "OpeningError",
    "ProofError",
    "SignerError",
    "VerificationError",
]


class AuditChainError(Exception):
    """Root of every error raised by audit_chain.

    ``code`` is stable across releases and meant for programs; the message is
    for people and may change.
    """

    default_code = "audit_chain.error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code: str = code or self.default_code
        self.message: str = message

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class LeafFormatError(AuditChainError):
    """An event leaf (or its canonical encoding) is malformed."""

    default_code = "leaf.invalid"


class OpeningError(AuditChainError):
    """A leaf opening (salt and private part) does not open the leaf's commitment."""

    default_code = "leaf.opening_mismatch"


class ProofError(AuditChainError):
    """A Merkle inclusion or consistency proof is malformed or does not verify."""

    default_code = "proof.invalid"


class CheckpointError(AuditChainError):
    """A checkpoint / signed note is malformed or its signature does not verify.

    Codes: ``checkpoint.invalid`` (format), ``checkpoint.bad_signature``,
    ``checkpoint.unknown_key`` (no signature by the expected key).
    """

    default_code = "checkpoint.invalid"


class SignerError(AuditChainError):
    """A signer (HSM-backed or software) failed or returned an unusable signature."""

    default_code = "signer.failed"


class ExportError(AuditChainError):
    """A day export is malformed, or the writer was given inconsistent input."""

    default_code = "export.invalid"


class ChainError(AuditChainError):
    """An Ethereum anchoring operation failed.

    Codes: ``chain.unreachable`` (RPC endpoint down or not answering),
    ``chain.reverted`` (the contract rejected the call), ``chain.already_anchored``
    (the day already has an anchor; write-once), ``chain.not_owner`` (the
    signer is not the contract owner), ``chain.timeout`` (the transaction was not
    mined in time), ``chain.bad_response`` (the node answered nonsense),
    ``chain.invalid_input``.
    """

    default_code = "chain.error"


class AnvilError(AuditChainError):
    """The local anvil node could not be found, started or stopped.

    Codes: ``anvil.missing`` (binary not found), ``anvil.start_failed``,
    ``anvil.rpc``, ``anvil.state`` (the state file did not reach a block in time).
    """

    default_code = "anvil.error"


class VerificationError(AuditChainError):
    """One step of the auditor's checklist failed.

    ``step`` is the checklist number, ``step_name`` its short name, ``day`` the
    day being verified (ISO date) when known. ``code`` is ``verify.<step_name>``.
    """

    default_code = "verify.failed"

    def __init__(self, step: int, step_name: str, day: str | None, message: str) -> None:
        where = f"day {day}: " if day else ""
        super().__init__(
            f"{where}step {step} ({step_name}) failed: {message}", code=f"verify.{step_name}"
        )
        self.step = step
        self.step_name = step_name
        self.day = day
        self.detail = message
