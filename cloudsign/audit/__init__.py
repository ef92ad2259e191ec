"""cloudsign.audit: the service side of the audit chain.

Turns the `events` table into the `audit_chain` log: sequencing into
contiguous leaves (`log.py`), the event-to-leaf mapping with HSM owner tags
(`leaves.py`), signed day checkpoints and exports, retention, on-chain
anchoring through the HSM's Ethereum key (`anchoring.py`), the public
read-only endpoints (`api.py`) and the background loops (`tasks.py`).
"""

from cloudsign.audit.anchoring import Anchorer, AnchorState
from cloudsign.audit.log import (
    AuditLog,
    AuditLogError,
    CheckpointRecord,
    NotYetCheckpointedError,
    TamperedLogError,
)
from cloudsign.audit.signers import (
    NOTE_KEY_LABEL,
    HsmNoteSigner,
    HsmTransactionSigner,
    ensure_audit_keys,
)
from cloudsign.audit.tasks import run_retention, run_sequencer, sequencer_round

__all__ = [
    "NOTE_KEY_LABEL",
    "AnchorState",
    "Anchorer",
    "AuditLog",
    "AuditLogError",
    "CheckpointRecord",
    "HsmNoteSigner",
    "HsmTransactionSigner",
    "NotYetCheckpointedError",
    "TamperedLogError",
    "ensure_audit_keys",
    "run_retention",
    "run_sequencer",
    "sequencer_round",
]
