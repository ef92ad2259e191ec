"""hsm_bridge: everything PKCS#11 for cloudsign.

Token set-up, key generation, the owner-key custody scheme (transport keys,
password key, doubly encrypted blobs), signing and sealing. Knows nothing of
HTTP, storage or the rest of the service.
"""

from hsm_bridge.algorithms import (
    HASHES,
    OWNER_KEY_ALGORITHMS,
    HashAlgorithm,
    KeyAlgorithm,
    SignatureScheme,
    hash_algorithm,
)
from hsm_bridge.bridge import (
    CreatedKey,
    HsmBridge,
    TransportMessage,
    UnlockedKey,
    transport_context,
)
from hsm_bridge.errors import (
    HsmConfigurationError,
    HsmError,
    HsmUnavailableError,
    InvalidTransportMessageError,
    KeyBlobError,
    TransportKeyError,
    UnsupportedAlgorithmError,
    WrongPasswordError,
)
from hsm_bridge.secret import Secret

__all__ = [
    "HASHES",
    "OWNER_KEY_ALGORITHMS",
    "CreatedKey",
    "HashAlgorithm",
    "HsmBridge",
    "HsmConfigurationError",
    "HsmError",
    "HsmUnavailableError",
    "InvalidTransportMessageError",
    "KeyAlgorithm",
    "KeyBlobError",
    "Secret",
    "SignatureScheme",
    "TransportKeyError",
    "TransportMessage",
    "UnlockedKey",
    "UnsupportedAlgorithmError",
    "WrongPasswordError",
    "hash_algorithm",
    "transport_context",
]
