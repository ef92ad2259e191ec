"""The archive key as M-of-N shares, one per custodian, each sealed under the
custodian's own passphrase.

* **Splitting** is SLIP-0039 (`shamir-mnemonic`, the reference
  implementation by SatoshiLabs): one group, threshold M of N, no SLIP-39
  passphrase (each share is protected on its own instead). Its shares carry
  a random identifier common to one split and an RS1024 checksum, and the
  recovered secret is checked against a digest share: shares of another
  ceremony, a mistyped or altered share, or too few shares fail in
  `combine_mnemonics` instead of yielding a wrong key.
* **A custodian's share file** (`ShareFile`, JSON, format
  `cloudsign-archive-share/1`) holds the share mnemonic encrypted with
  AES-256-GCM under `Argon2id(passphrase, salt)`; the associated data binds
  it to the ceremony, the custodian's name, the member index and the archive
  key's check value, so a file cannot be renamed to another custodian or
  ceremony unnoticed. The file is meant for the custodian's own protected
  medium; nothing here ever writes two custodians' files to one place or
  prints a share.
* **Check value**: `kcv(key)` = the first 8 bytes of
  HMAC-SHA256(key, "cloudsign/archive-key-check/v1"): names the archive key
  in archives, share files and transcripts without revealing it.

This module sees the archive key in the clear: it runs in the ceremony and
restore children only (`hsm_bridge.provision`), which hand it to the HSM and
exit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import shamir_mnemonic
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hsm_bridge.errors import HsmError
from hsm_bridge.secret import Secret

__all__ = [
    "SHARE_FORMAT",
    "CustodianShare",
    "ShareError",
    "ShareFile",
    "combine_archive_key",
    "kcv",
    "split_archive_key",
]

SHARE_FORMAT: Final = "cloudsign-archive-share/1"
ARCHIVE_KEY_BYTES: Final = 32
MIN_THRESHOLD: Final = 3
MIN_SHARES: Final = 5
MAX_SHARES: Final = 16
#: Argon2id for a passphrase typed once per ceremony or restore: 64 MiB, 3 passes.
ARGON2_MEMORY_KIB: Final = 65536
ARGON2_TIME: Final = 3
ARGON2_LANES: Final = 1
MIN_PASSPHRASE_CHARS: Final = 12
_KCV_LABEL: Final = b"cloudsign/archive-key-check/v1"
_AAD_LABEL: Final = b"cloudsign/archive-share/v1\x00"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}")
_HEX = re.compile(r"[0-9a-f]+")


class ShareError(HsmError):
    """A share file, passphrase or set of shares that does not give the key."""


def kcv(key: bytes) -> str:
    return hmac.new(key, _KCV_LABEL, hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class CustodianShare:
    """Who receives a share, with the passphrase that will seal it."""

    name: str
    passphrase: Secret = field(repr=False)


@dataclass(frozen=True)
class ShareFile:
    """One custodian's sealed share, as stored on their medium."""

    ceremony: str
    custodian: str
    index: int
    threshold: int
    shares: int
    key_check: str
    salt: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    sealed: bytes = field(repr=False)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": SHARE_FORMAT,
                "ceremony": self.ceremony,
                "custodian": self.custodian,
                "index": self.index,
                "threshold": self.threshold,
                "shares": self.shares,
                "key_check": self.key_check,
                "kdf": {
                    "name": "argon2id",
                    "memory_kib": ARGON2_MEMORY_KIB,
                    "time": ARGON2_TIME,
                    "lanes": ARGON2_LANES,
                    "salt": b64(self.salt),
                },
                "nonce": b64(self.nonce),
                "sealed": b64(self.sealed),
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ShareFile:
        try:
            raw = json.loads(text)
            if raw["format"] != SHARE_FORMAT:
                raise ShareError(f"not a share file of this service ({raw['format']!r})")
            kdf = raw["kdf"]
            if (kdf["name"], kdf["memory_kib"], kdf["time"], kdf["lanes"]) != (
                "argon2id",
                ARGON2_MEMORY_KIB,
                ARGON2_TIME,
                ARGON2_LANES,
            ):
                raise ShareError("the share file's key derivation is not this service's")
            share = cls(
                ceremony=str(raw["ceremony"]),
                custodian=str(raw["custodian"]),
                index=int(raw["index"]),
                threshold=int(raw["threshold"]),
                shares=int(raw["shares"]),
                key_check=str(raw["key_check"]),
                salt=unb64(kdf["salt"]),
                nonce=unb64(raw["nonce"]),
                sealed=unb64(raw["sealed"]),
            )
        except ShareError:
            raise
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            raise ShareError("the share file is not readable") from e
        if not (_HEX.fullmatch(share.key_check) and _HEX.fullmatch(share.ceremony)):
            raise ShareError("the share file is not readable")
        return share

    def open(self, passphrase: Secret) -> str:
        """The share's mnemonic; a wrong passphrase or an edited file fails."""
        try:
            words = AESGCM(_derive(passphrase, self.salt)).decrypt(
                self.nonce, self.sealed, self._aad()
            )
        except (InvalidTag, ValueError) as e:
            raise ShareError(
                f"the share of {self.custodian!r} does not open: wrong passphrase, "
                "or the file was altered"
            ) from e
        return words.decode()

    def _aad(self) -> bytes:
        return _aad(self.ceremony, self.custodian, self.index, self.key_check)


def split_archive_key(
    key: bytes, custodians: Sequence[CustodianShare], threshold: int, ceremony: str
) -> list[ShareFile]:
    """One sealed share per custodian, any `threshold` of which give `key`."""
    check_custodians([c.name for c in custodians], threshold)
    if len(key) != ARCHIVE_KEY_BYTES:
        raise ShareError(f"an archive key is {ARCHIVE_KEY_BYTES} bytes")
    for c in custodians:
        if len(c.passphrase.reveal()) < MIN_PASSPHRASE_CHARS:
            raise ShareError(
                f"the passphrase of {c.name!r} is shorter than {MIN_PASSPHRASE_CHARS} characters"
            )
    [mnemonics] = shamir_mnemonic.generate_mnemonics(
        1, [(threshold, len(custodians))], key, b"", True, 0
    )
    check = kcv(key)
    files = []
    for index, (custodian, words) in enumerate(zip(custodians, mnemonics, strict=True)):
        salt, nonce = os.urandom(16), os.urandom(12)
        aad = _aad(ceremony, custodian.name, index, check)
        sealed = AESGCM(_derive(custodian.passphrase, salt)).encrypt(nonce, words.encode(), aad)
        files.append(
            ShareFile(
                ceremony=ceremony,
                custodian=custodian.name,
                index=index,
                threshold=threshold,
                shares=len(custodians),
                key_check=check,
                salt=salt,
                nonce=nonce,
                sealed=sealed,
            )
        )
    return files


def combine_archive_key(opened: Sequence[tuple[ShareFile, Secret]], key_check: str) -> bytes:
    """The archive key from sealed shares and their passphrases; checked
    against `key_check` (the archive's). Refuses too few shares, shares of
    different ceremonies, repeated custodians and any share that does not
    fit, naming what is wrong and revealing nothing."""
    if not opened:
        raise ShareError("no share given")
    ceremonies = {share.ceremony for share, _ in opened}
    if len(ceremonies) != 1:
        raise ShareError("the shares come from different ceremonies")
    first = opened[0][0]
    if first.key_check != key_check:
        raise ShareError("the shares are of another archive key than this archive's")
    indices = [share.index for share, _ in opened]
    if len(set(indices)) != len(indices):
        raise ShareError("the same custodian's share was given twice")
    if len(opened) < first.threshold:
        raise ShareError(
            f"{len(opened)} share(s) given; this archive key needs {first.threshold} "
            f"of its {first.shares} custodians"
        )
    words = [share.open(passphrase) for share, passphrase in opened]
    need = first.threshold
    key = _combine(words[:need])
    if not hmac.compare_digest(kcv(key), key_check):
        raise ShareError("the shares combine to another key than this archive's")
    # SLIP-39 takes exactly `threshold` shares: each one beyond must give
    # the same key with the others, so a wrong share is refused, not outvoted.
    for (share, _), extra in zip(opened[need:], words[need:], strict=True):
        if not hmac.compare_digest(_combine([*words[: need - 1], extra]), key):
            raise ShareError(f"the share of {share.custodian!r} does not fit the others")
    return key


def _combine(words: list[str]) -> bytes:
    try:
        key: bytes = shamir_mnemonic.combine_mnemonics(words, b"")
    except (shamir_mnemonic.MnemonicError, ValueError) as e:
        # The library's message quotes share words: not repeated here.
        raise ShareError("the shares do not combine: one of them is not of this set") from e
    return key


def check_custodians(names: Sequence[str], threshold: int) -> None:
    if not MIN_SHARES <= len(names) <= MAX_SHARES:
        raise ShareError(f"{MIN_SHARES} to {MAX_SHARES} custodians, got {len(names)}")
    if not MIN_THRESHOLD <= threshold < len(names):
        raise ShareError(
            f"the threshold is {MIN_THRESHOLD} or more and below the number of custodians"
        )
    if len(set(names)) != len(names):
        raise ShareError("each custodian once")
    for name in names:
        if not _NAME.fullmatch(name):
            raise ShareError(f"a custodian name is letters, digits and ' ._@-', got {name!r}")


def _derive(passphrase: Secret, salt: bytes) -> bytes:
    return hash_secret_raw(
        passphrase.reveal().encode(),
        salt,
        time_cost=ARGON2_TIME,
        memory_cost=ARGON2_MEMORY_KIB,
        parallelism=ARGON2_LANES,
        hash_len=32,
        type=Type.ID,
    )


def _aad(ceremony: str, custodian: str, index: int, key_check: str) -> bytes:
    return _AAD_LABEL + json.dumps([ceremony, custodian, index, key_check]).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: Any) -> bytes:
    """Strict base64 text; a ValueError (binascii.Error) or TypeError else."""
    if not isinstance(text, str):
        raise TypeError("not base64 text")
    return base64.b64decode(text, validate=True)
