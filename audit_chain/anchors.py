"""What an on-chain anchor of a day is, independent of how it is fetched.

This module owns :class:`AnchorRecord` (a day's root and size as found on chain,
with where and how deep) and the :class:`AnchorLookup` Protocol the verifier
needs; :class:`audit_chain.ethereum.AnchorClient` implements it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol

from audit_chain.errors import ChainError

__all__ = ["AnchorLookup", "AnchorRecord"]


@dataclass(frozen=True)
class AnchorRecord:
    """A day's anchor as read from the contract at the chain head.

    ``tx_hash`` is ``None`` when the node no longer serves the event log for the
    block (pruned history); the contract storage is still authoritative.
    """

    day: date
    root: bytes
    size: int
    block_number: int
    confirmations: int
    tx_hash: bytes | None
    contract: str

    def __post_init__(self) -> None:
        if len(self.root) != 32:
            raise ChainError("anchored root must be 32 bytes", code="chain.bad_response")
        if self.size < 0 or self.block_number < 0 or self.confirmations < 0:
            raise ChainError("negative anchor fields", code="chain.bad_response")


class AnchorLookup(Protocol):
    async def find_anchor(self, day: date) -> AnchorRecord | None:
        """The anchor of ``day`` at the current head, or ``None`` if there is none."""
        ...
