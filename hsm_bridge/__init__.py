"""hsm_bridge: everything PKCS#11 for cloudsign.

Token set-up, key generation, the owner-key custody scheme (transport keys,
password key, doubly encrypted blobs), signing and sealing. Knows nothing of
HTTP, storage or the rest of the service.

Which module owns what:

* `session`: per-process PKCS#11 state (loaded module, the one PKCS#11
  thread per module, the shared login) and `HsmSession`, the base class
  with the lifecycle (`start`, `close`, `run_with_session`).
* `transport`: the transport wire format (`TransportMessage`,
  `transport_context`), one-time transport keys and the unwrap of `K_pw`.
* `custody`: owner keys (`CreatedKey`, `UnlockedKey`), the owner-key blob
  format and the templates of owner private keys.
* `activation`: the owner key between authorisation and signature, sealed
  under a per-SAD HSM key and the client's SAD (`SadKey`), reachable from
  every process and destroyed with the SAD.
* `service_keys`: the service's long-lived signing keys (CA, OCSP, TSA,
  audit log, anchoring).
* `sealing`: sealing keys and HMAC keys (`seal`, `unseal`, `hmac_sha256`).
* `keypairs`: key-pair generation, SPKI encoding and digest signing shared
  by `custody` and `service_keys`.
* `roles`: `typing.Protocol` roles (`KeyCustody`, `ServiceKeys`, `Sealer`,
  `KeyedHasher`) for features to depend on instead of `HsmBridge`.
* `algorithms`, `errors`, `secret`: value types, the error hierarchy, `Secret`.
* `provision`, `softhsm`: first-time key provisioning and SoftHSM2 set-up.

`HsmBridge`, defined here, is the concrete PKCS#11 implementation of every
role: the session base with the transport, custody, sealing and service-key
operations mixed in.
"""

from hsm_bridge.activation import HsmSadKeys, SadKey
from hsm_bridge.algorithms import (
    HASHES,
    OWNER_KEY_ALGORITHMS,
    HashAlgorithm,
    KeyAlgorithm,
    SignatureScheme,
    hash_algorithm,
)
from hsm_bridge.custody import CreatedKey, UnlockedKey
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
from hsm_bridge.roles import KeyCustody, KeyedHasher, Sealer, ServiceKeys
from hsm_bridge.secret import Secret
from hsm_bridge.service_keys import HsmServiceKeys
from hsm_bridge.transport import TransportMessage, transport_context


class HsmBridge(HsmSadKeys, HsmServiceKeys):
    """Async front of one PKCS#11 token: owner keys (with their transport keys,
    sealing and SAD binding), service keys, sealing and keyed hashes.

    `start()` logs in once (the login is per application in PKCS#11, shared
    by all bridges of the process) and the bridge opens its own working
    session on the process's PKCS#11 thread.
    """


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
    "KeyCustody",
    "KeyedHasher",
    "SadKey",
    "Sealer",
    "Secret",
    "ServiceKeys",
    "SignatureScheme",
    "TransportKeyError",
    "TransportMessage",
    "UnlockedKey",
    "UnsupportedAlgorithmError",
    "WrongPasswordError",
    "hash_algorithm",
    "transport_context",
]
