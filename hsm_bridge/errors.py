"""The hsm_bridge exception hierarchy.

One root, `HsmError`, with a stable machine-readable `code`. Messages never
carry key material, PINs, wrapped blobs or passwords: they say what failed,
not with what.
"""

from __future__ import annotations


class HsmError(Exception):
    """Root of every error raised by hsm_bridge."""

    code = "hsm_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HsmUnavailableError(HsmError):
    """The PKCS#11 module, token or login is not usable."""

    code = "hsm_unavailable"


class HsmConfigurationError(HsmError):
    """The token lacks an object or mechanism the service needs."""

    code = "hsm_misconfigured"


class WrongPasswordError(HsmError):
    """The password key did not decrypt the owner's key blob inside the HSM."""

    code = "wrong_password"


class TransportKeyError(HsmError):
    """The one-time transport key is unknown, already used or expired,
    or the wrapped password key does not unwrap under it."""

    code = "transport_key_invalid"


class InvalidTransportMessageError(HsmError):
    """The device's transport message is malformed (bad point, bad length)."""

    code = "transport_message_invalid"


class KeyBlobError(HsmError):
    """The stored key blob is malformed or belongs to another credential."""

    code = "key_blob_invalid"


class UnsupportedAlgorithmError(HsmError):
    """The requested key algorithm or signature scheme is not supported."""

    code = "unsupported_algorithm"
