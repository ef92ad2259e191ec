"""Identity proofing (rule 6): at the registration desk by an officer, or
remotely against the national registry's photo; activation codes; the
pending accounts they open (service.py, registry.py)."""

from cloudsign.proofing.registry import (
    HttpIdentityRegistry,
    IdentityRegistry,
    RegistryRecord,
    load_registry_key,
)
from cloudsign.proofing.service import (
    DOCUMENT_TYPES,
    Capture,
    DeskProofing,
    ProofingRefusedError,
    ProofingService,
    normalise_code,
)

__all__ = [
    "DOCUMENT_TYPES",
    "Capture",
    "DeskProofing",
    "HttpIdentityRegistry",
    "IdentityRegistry",
    "ProofingRefusedError",
    "ProofingService",
    "RegistryRecord",
    "load_registry_key",
    "normalise_code",
]
