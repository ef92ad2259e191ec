"""Checkpoints in the C2SP tlog-checkpoint signed-note format, signed with Ed25519.

This module owns the checkpoint text and its signatures:

* :class:`Checkpoint` — origin line, decimal tree size, base64 root hash, optional
  extension lines; the note body.
* signed notes — the body, a blank line, then ``— <name> <base64(key id || sig)>``
  lines (C2SP signed-note). Signing goes through the :class:`NoteSigner` /
  :class:`AsyncNoteSigner` Protocols, which the service implements with its HSM;
  :class:`Ed25519NoteSigner` is a software implementation for tests and tools.
* :class:`NoteVerifier` — a raw Ed25519 public key with its note name; verifies
  a note and returns the checkpoint. Its text form is the signed-note verifier
  key ``<name>+<hex key id>+<base64(0x01 || public key)>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import inspect
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit_chain.errors import CheckpointError, SignerError
from audit_chain.merkle import HASH_SIZE

__all__ = [
    "AsyncNoteSigner",
    "Checkpoint",
    "Ed25519NoteSigner",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "SignedNote",
    "ed25519_key_id",
    "parse_signed_note",
    "sign_checkpoint",
    "sign_checkpoint_async",
    "sign_note",
    "sign_note_async",
]

#: Signature type identifier of Ed25519 in the signed-note key hash.
ED25519_ALG: Final = 0x01
MAX_NOTE_BYTES: Final = 16 * 1024
MAX_SIGNATURES: Final = 16
MAX_EXTENSION_LINES: Final = 16
_SIG_PREFIX: Final = "\u2014 "  # em dash, space
_NAME = re.compile(r"[^\s+]+")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def key_fingerprint(vkey: str) -> str:
    """What the centre publishes (e.g. in its CA policy) for auditors to pin
    the log key by: SHA-256 of the verifier key text (`name+id+base64`,
    UTF-8), in groups of four hex digits. The auditor page computes the same."""
    digest = hashlib.sha256(vkey.encode("utf-8")).hexdigest()
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def ed25519_key_id(name: str, public_key: bytes) -> bytes:
    """Signed-note key id: first 4 bytes of SHA-256(name || 0x0A || 0x01 || key)."""
    return hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([ED25519_ALG]) + public_key
    ).digest()[:4]


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise CheckpointError("a key name is non-empty, without spaces or '+'")
    return name


def _b64decode(text: str, what: str) -> bytes:
    if not _B64.fullmatch(text):
        raise CheckpointError(f"{what} is not standard base64")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise CheckpointError(f"{what} is not standard base64") from e


def _check_text(text: str, what: str) -> None:
    for ch in text:
        if ch != "\n" and (ord(ch) < 0x20 or ord(ch) == 0x7F):
            raise CheckpointError(f"{what} contains a control character")


# ------------------------------------------------------------------- checkpoint


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint: ``origin``, tree ``size``, ``root_hash``, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str) or not self.origin or "\n" in self.origin:
            raise CheckpointError("origin must be a non-empty single line")
        _check_text(self.origin, "origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise CheckpointError("size must be an int")
        if not 0 <= self.size < 2**64:
            raise CheckpointError("size out of range")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise CheckpointError("root hash must be 32 bytes")
        object.__setattr__(self, "extensions", tuple(self.extensions))
        if len(self.extensions) > MAX_EXTENSION_LINES:
            raise CheckpointError("too many extension lines")
        for line in self.extensions:
            if not isinstance(line, str) or not line or "\n" in line:
                raise CheckpointError("extension lines are non-empty single lines")
            _check_text(line, "extension line")

    def body(self) -> str:
        """The note text that gets signed (ends with a newline)."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def from_body(cls, body: str) -> Checkpoint:
        """Parse a note body (no signatures) as a checkpoint."""
        if not body.endswith("\n"):
            raise CheckpointError("checkpoint body must end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError("checkpoint needs origin, size and root hash lines")
        origin, size_text, root_text, *extensions = lines
        if not _DECIMAL.fullmatch(size_text):
            raise CheckpointError("tree size is not a canonical decimal")
        root = _b64decode(root_text, "root hash")
        if base64.b64encode(root).decode() != root_text:
            raise CheckpointError("root hash is not canonical base64")
        return cls(origin, int(size_text), root, tuple(extensions))


# ---------------------------------------------------------------- signed notes


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        blob = base64.b64encode(self.key_id + self.signature).decode()
        return f"{_SIG_PREFIX}{self.name} {blob}\n"


@dataclass(frozen=True)
class SignedNote:
    """A parsed signed note: ``body`` (ends with newline) and its signature lines."""

    body: str
    signatures: tuple[NoteSignature, ...]

    def text(self) -> str:
        return self.body + "\n" + "".join(s.line() for s in self.signatures)


def parse_signed_note(text: str) -> SignedNote:
    """Split a signed note into body and signatures (no verification)."""
    if not isinstance(text, str):
        raise CheckpointError("a signed note is text")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_NOTE_BYTES:
        raise CheckpointError(f"note exceeds {MAX_NOTE_BYTES} bytes")
    _check_text(text, "note")
    sep = text.rfind("\n\n")
    if sep < 0:
        raise CheckpointError("note has no blank line before its signatures")
    body, sig_block = text[: sep + 1], text[sep + 2 :]
    if not body.strip("\n") or body.startswith("\n"):
        raise CheckpointError("note body is empty")
    if not sig_block.endswith("\n"):
        raise CheckpointError("note must end with a newline")
    signatures: list[NoteSignature] = []
    for line in sig_block[:-1].split("\n"):
        if not line.startswith(_SIG_PREFIX):
            raise CheckpointError("malformed signature line")
        parts = line[len(_SIG_PREFIX) :].split(" ")
        if len(parts) != 2:
            raise CheckpointError("malformed signature line")
        name = _check_name(parts[0])
        blob = _b64decode(parts[1], "signature")
        if len(blob) < 5:
            raise CheckpointError("signature too short")
        signatures.append(NoteSignature(name, blob[:4], blob[4:]))
    if not signatures:
        raise CheckpointError("note has no signatures")
    if len(signatures) > MAX_SIGNATURES:
        raise CheckpointError("note has too many signatures")
    return SignedNote(body, tuple(signatures))


# --------------------------------------------------------------------- signers


@runtime_checkable
class NoteSigner(Protocol):
    """Signs note bodies with Ed25519; the service backs this with its HSM."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes:
        """4 bytes, :func:`ed25519_key_id` of ``name`` and the public key."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Pure Ed25519 signature (64 bytes) over ``message``."""
        ...


class AsyncNoteSigner(Protocol):
    """Async variant of :class:`NoteSigner` (an HSM call off the event loop)."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def sign(self, message: bytes) -> Awaitable[bytes]: ...


class Ed25519NoteSigner:
    """Software :class:`NoteSigner` with a ``cryptography`` Ed25519 key."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._name = _check_name(name)
        self._key = private_key
        self._public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._key_id = ed25519_key_id(name, self._public)

    @classmethod
    def generate(cls, name: str) -> Ed25519NoteSigner:
        return cls(name, Ed25519PrivateKey.generate())

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self._name, self._public)


def _signature_line(body: str, signer_name: str, key_id: bytes, sig: object) -> str:
    if not isinstance(sig, bytes) or len(sig) != 64:
        raise SignerError("an Ed25519 signer must return 64 bytes")
    if not isinstance(key_id, bytes) or len(key_id) != 4:
        raise SignerError("a note signer's key_id is 4 bytes")
    return body + "\n" + NoteSignature(_check_name(signer_name), key_id, sig).line()


def _check_body(body: str) -> bytes:
    if not isinstance(body, str) or not body.endswith("\n") or "\n\n" in body:
        raise CheckpointError("a note body ends with a newline and has no blank line")
    _check_text(body, "note body")
    return body.encode("utf-8")


def sign_note(body: str, signer: NoteSigner) -> str:
    """Sign ``body`` and return the signed-note text."""
    message = _check_body(body)
    try:
        sig = signer.sign(message)
    except Exception as e:  # any signer failure (HSM, driver) becomes one error type
        raise SignerError(f"note signer failed: {e}") from e
    if inspect.isawaitable(sig):
        raise SignerError("this signer is async; use sign_note_async")
    return _signature_line(body, signer.name, signer.key_id, sig)


async def sign_note_async(body: str, signer: NoteSigner | AsyncNoteSigner) -> str:
    """Sign ``body`` with a sync or async signer."""
    message = _check_body(body)
    try:
        result: object = signer.sign(message)
        if inspect.isawaitable(result):
            result = await result
    except Exception as e:  # any signer failure (HSM, driver) becomes one error type
        raise SignerError(f"note signer failed: {e}") from e
    return _signature_line(body, signer.name, signer.key_id, result)


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    return sign_note(checkpoint.body(), signer)


async def sign_checkpoint_async(
    checkpoint: Checkpoint, signer: NoteSigner | AsyncNoteSigner
) -> str:
    return await sign_note_async(checkpoint.body(), signer)


# -------------------------------------------------------------------- verifier


@dataclass(frozen=True)
class NoteVerifier:
    """The log's public key: note ``name`` and raw 32-byte Ed25519 ``public_key``."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise CheckpointError("an Ed25519 public key is 32 bytes")
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError as e:
            raise CheckpointError("not an Ed25519 public key") from e

    @property
    def key_id(self) -> bytes:
        return ed25519_key_id(self.name, self.public_key)

    @property
    def vkey(self) -> str:
        """Signed-note verifier key text: ``name+hexid+base64(0x01||key)``."""
        blob = base64.b64encode(bytes([ED25519_ALG]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    @classmethod
    def from_vkey(cls, text: str) -> NoteVerifier:
        parts = text.strip().split("+")
        # base64 itself may contain '+': rejoin everything after the second '+'.
        if len(parts) < 3:
            raise CheckpointError("a verifier key is name+keyid+base64key")
        name, key_id_hex, blob_text = parts[0], parts[1], "+".join(parts[2:])
        blob = _b64decode(blob_text, "verifier key")
        if len(blob) != 33 or blob[0] != ED25519_ALG:
            raise CheckpointError("only Ed25519 verifier keys are supported")
        verifier = cls(name, blob[1:])
        if key_id_hex != verifier.key_id.hex():
            raise CheckpointError("verifier key id does not match name and key")
        return verifier

    def verify_note(self, text: str) -> str:
        """Verify the note carries a valid signature by this key; return its body."""
        note = parse_signed_note(text)
        key = Ed25519PublicKey.from_public_bytes(self.public_key)
        mine = [s for s in note.signatures if s.name == self.name and s.key_id == self.key_id]
        if not mine:
            raise CheckpointError(
                f"note is not signed by {self.name}", code="checkpoint.unknown_key"
            )
        for sig in mine:
            try:
                key.verify(sig.signature, note.body.encode("utf-8"))
            except InvalidSignature as e:
                raise CheckpointError(
                    f"signature by {self.name} does not verify", code="checkpoint.bad_signature"
                ) from e
        return note.body

    def open_checkpoint(self, text: str, origin: str | None = None) -> Checkpoint:
        """Verify a signed checkpoint note and return the checkpoint it states."""
        checkpoint = Checkpoint.from_body(self.verify_note(text))
        if origin is not None and checkpoint.origin != origin:
            raise CheckpointError(
                f"checkpoint origin {checkpoint.origin!r} is not {origin!r}",
                code="checkpoint.wrong_origin",
            )
        return checkpoint
