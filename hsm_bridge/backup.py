"""HSM backup: every long-lived key of the token wrapped inside the HSM under
the archive key, and its restore into a new token.

**What an archive holds** (`ARCHIVE_FORMAT`, one JSON document):

* every persistent secret and private key of the token except the archive
  key itself and the short-lived SAD and transport keys: the master
  wrapping key, the sealing and HMAC keys, the CA, OCSP, TSA, audit-log and
  anchoring keys, each as `C_WrapKey(CKM_AES_KEY_WRAP_PAD)` under the archive
  key (RFC 5649: the wrap carries its own integrity check), with the
  attributes a restore gives it back (label, id, key type, capabilities,
  `CKA_TRUSTED`) and, for a private key, its public key's attributes;
* a MAC over the whole document: HMAC-SHA256 made in the HSM with a fresh
  session key that is itself wrapped under the archive key (`mac_key`), so
  the restore checks, in the new HSM and before anything is restored, that
  no label, attribute or key was changed, added or removed;
* `files`: whatever else the caller (cloudsign's CLI) adds, e.g. the CA
  certificates; covered by the MAC like the rest.

Keys leave the HSM only as `C_WrapKey` output under the archive key: a
long-lived key is `CKA_WRAP_WITH_TRUSTED` (`hsm_bridge.templates`) and the
archive key is trusted and may wrap only (no `CKA_UNWRAP` on the live
token), so holding the user PIN gives wrapped blobs and nothing to open
them with.

**One exception, SoftHSM2's:** SoftHSM2 2.6.1 cannot wrap or unwrap EdDSA
keys (`C_WrapKey`/`C_UnwrapKey` answer `CKR_KEY_NOT_WRAPPABLE` for
`CKK_EC_EDWARDS`: "Not yet" in its source). The audit log's Ed25519 key
must survive a restore (checkpoints are verified against it), so on a
ceremony token it is made in the ceremony child from a random seed, put
into the token with `C_CreateObject` (sensitive, not extractable) and its
seed wrapped *in that child* under the archive key, which the child holds
anyway while it splits it (`SOFTWARE_WRAPPED`, stored beside the token in
`EXTRA_KEYS_FILE`, ciphertext only). The restore child, which also holds
the archive key after combining the shares, unwraps it the same way. Both
children exit right after; the seed never reaches the service or a disk in
the clear. A module that wraps EdDSA keys (most network HSMs) needs none of
this: `generate_signing_key` makes the key inside, and the archive wraps it
like the others.

**What a database backup has to do with it:** owner keys are not in the
archive. Each owner's key lives in the database only, as a blob sealed by
the `credential` sealing key around the owner's password layer around
`WRAP_master(key)` (`hsm_bridge.custody`). An archive restores the master
and sealing keys, which never change for the life of a token, so a database
backup of *any* date opens with an HSM archive of the same token: owners
enrolled after the archive was made sign after a restore (tested). What
the archive must be renewed for: a *new* long-lived HSM key (a renewed
OCSP/TSA key pair, another CA key), which an older archive does not hold.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pkcs11 import DEFAULT, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error

from hsm_bridge.activation import SAD_KEY_LABEL
from hsm_bridge.algorithms import KeyAlgorithm
from hsm_bridge.errors import HsmError
from hsm_bridge.keypairs import spki_of
from hsm_bridge.session import MASTER_KEY_LABEL, RETIRED_MASTER_PREFIX
from hsm_bridge.shares import b64, unb64
from hsm_bridge.templates import (
    EXPORTABLE_UNDER_TRUSTED,
    MASTER_UNWRAP_TEMPLATE,
    NO_CAPABILITIES,
    RETIRED_MASTER_UNWRAP_TEMPLATE,
)
from hsm_bridge.transport import TRANSPORT_LABEL_PREFIX

__all__ = [
    "ARCHIVE_FORMAT",
    "ARCHIVE_KEY_LABEL",
    "ARCHIVE_RECORD_FILE",
    "BackupError",
    "ExportedToken",
    "archive_digest",
    "canonical",
    "export_token",
    "parse_archive",
    "public_keys",
]

ARCHIVE_FORMAT: Final = "cloudsign-hsm-backup/1"
ARCHIVE_KEY_LABEL: Final = "cloudsign-archive"
#: Beside the token directory, written by the ceremony: the archive key's
#: check value and ceremony id, and the keys the module cannot wrap, wrapped
#: under the archive key by the ceremony child (see the module doc). No
#: secret in the clear.
ARCHIVE_RECORD_FILE: Final = "archive-key.json"
#: How a `SOFTWARE_WRAPPED` entry was wrapped: RFC 5649 in the child.
SOFTWARE_WRAPPED: Final = "aes-kwp-in-ceremony-child"
HSM_WRAPPED: Final = "C_WrapKey/CKM_AES_KEY_WRAP_PAD"
MAX_ARCHIVE_BYTES: Final = 4 * 1024 * 1024

_SECRET_FLAGS: Final = (
    Attribute.ENCRYPT,
    Attribute.DECRYPT,
    Attribute.SIGN,
    Attribute.VERIFY,
    Attribute.WRAP,
    Attribute.UNWRAP,
    Attribute.DERIVE,
)
_PRIVATE_FLAGS: Final = (Attribute.SIGN, Attribute.DECRYPT, Attribute.UNWRAP, Attribute.DERIVE)
_PUBLIC_VALUES: Final = {
    KeyType.EC: (Attribute.EC_PARAMS, Attribute.EC_POINT),
    KeyType.EC_EDWARDS: (Attribute.EC_PARAMS, Attribute.EC_POINT),
    KeyType.RSA: (Attribute.MODULUS, Attribute.PUBLIC_EXPONENT),
}
_KEY_TYPES: Final = {
    t.name: t
    for t in (KeyType.AES, KeyType.GENERIC_SECRET, KeyType.EC, KeyType.EC_EDWARDS, KeyType.RSA)
}


class BackupError(HsmError):
    """An archive that cannot be made, read or restored; says why."""


@dataclass(frozen=True)
class ExportedToken:
    """An archive document (JSON-ready, MAC included) and what it holds."""

    document: dict[str, Any]
    labels: tuple[str, ...]


def canonical(document: Mapping[str, Any]) -> bytes:
    """The bytes the MAC covers: the document without its `mac`."""
    body = {k: v for k, v in document.items() if k != "mac"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def archive_digest(document: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical form with the MAC: names one archive."""
    whole = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(whole).hexdigest()


def is_ephemeral(label: str) -> bool:
    """Short-lived keys that no backup should carry (SAD, transport keys)."""
    return label == SAD_KEY_LABEL or label.startswith(TRANSPORT_LABEL_PREFIX)


def export_token(
    session: Any,
    *,
    token_label: str,
    created_at: str,
    archive_record: Mapping[str, Any],
    files: Mapping[str, str],
) -> ExportedToken:
    """Wrap every long-lived key under the archive key and MAC the result.
    Runs on the PKCS#11 thread with a user session. Raises BackupError
    naming every key that cannot be archived (made before backups existed:
    not extractable under a trusted key), rather than making a partial
    archive."""
    archive = _archive_key(session)
    entries: list[dict[str, Any]] = []
    refused: list[str] = []
    for obj in list(session.get_objects({Attribute.TOKEN: True})):
        object_class = obj[Attribute.CLASS]
        if object_class not in (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY):
            continue
        label = str(obj[Attribute.LABEL])
        if label == ARCHIVE_KEY_LABEL or is_ephemeral(label):
            continue
        key_type = KeyType(obj[Attribute.KEY_TYPE])
        private = object_class == ObjectClass.PRIVATE_KEY
        entry: dict[str, Any] = {
            "label": label,
            "id": bytes(obj[Attribute.ID]).hex(),
            "class": "private" if private else "secret",
            "key_type": key_type.name,
            "flags": {a.name: bool(obj[a]) for a in (_PRIVATE_FLAGS if private else _SECRET_FLAGS)},
            "trusted": (not private) and bool(obj[Attribute.TRUSTED]),
        }
        if label == MASTER_KEY_LABEL:
            entry["unwrap_template"] = "master"
        elif label.startswith(RETIRED_MASTER_PREFIX):
            entry["unwrap_template"] = "retired"
        if key_type == KeyType.EC_EDWARDS:
            extra = archive_record.get("keys", {}).get(label)
            if extra is None:
                refused.append(
                    f"{label} (an EdDSA key SoftHSM2 cannot wrap, made outside a ceremony)"
                )
                continue
            entry["wrapped"] = str(extra["wrapped"])
            entry["wrapping"] = SOFTWARE_WRAPPED
        elif not (obj[Attribute.EXTRACTABLE] and obj[Attribute.WRAP_WITH_TRUSTED]):
            refused.append(f"{label} (made not extractable, before backups)")
            continue
        else:
            try:
                wrapped = archive.wrap_key(obj, mechanism=Mechanism.AES_KEY_WRAP_PAD)
            except PKCS11Error as e:
                refused.append(f"{label} ({type(e).__name__})")
                continue
            entry["wrapped"] = b64(bytes(wrapped))
            entry["wrapping"] = HSM_WRAPPED
        if private:
            entry["public"] = _public_of(session, label, key_type)
        entries.append(entry)
    if refused:
        raise BackupError(
            "these keys cannot be backed up, so this token cannot be restored from an "
            "archive (a token made by `cloudsign ceremony` can): " + "; ".join(sorted(refused))
        )
    entries.sort(key=lambda e: (e["class"], e["label"]))
    mac_key = session.generate_key(
        KeyType.GENERIC_SECRET,
        256,
        store=False,
        mechanism=Mechanism.GENERIC_SECRET_KEY_GEN,
        template={
            **NO_CAPABILITIES,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: True,
            Attribute.SIGN: True,
        },
    )
    try:
        document: dict[str, Any] = {
            "format": ARCHIVE_FORMAT,
            "archive_id": secrets.token_hex(16),
            "created_at": created_at,
            "token_label": token_label,
            "key_check": str(archive_record["key_check"]),
            "ceremony": str(archive_record["ceremony"]),
            "keys": entries,
            "files": dict(sorted(files.items())),
            "mac_key": b64(bytes(archive.wrap_key(mac_key, mechanism=Mechanism.AES_KEY_WRAP_PAD))),
        }
        document["mac"] = bytes(
            mac_key.sign(canonical(document), mechanism=Mechanism.SHA256_HMAC)
        ).hex()
    finally:
        mac_key.destroy()
    return ExportedToken(document, tuple(e["label"] for e in entries))


def public_keys(session: Any) -> dict[str, bytes]:
    """Every long-lived public key on the token: label → DER SPKI."""
    out: dict[str, bytes] = {}
    for pub in list(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY})):
        label = str(pub[Attribute.LABEL])
        if is_ephemeral(label) or not pub[Attribute.TOKEN]:
            continue
        key_type = KeyType(pub[Attribute.KEY_TYPE])
        # spki_of reads the curve from the object; the algorithm only tells
        # EdDSA, other EC and RSA apart.
        algorithm = {
            KeyType.EC_EDWARDS: KeyAlgorithm.ED25519,
            KeyType.EC: KeyAlgorithm.EC_P256,
        }.get(key_type, KeyAlgorithm.RSA_2048)
        out[label] = spki_of(pub, algorithm)
    return out


def _archive_key(session: Any) -> Any:
    found = list(
        session.get_objects(
            {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: ARCHIVE_KEY_LABEL}
        )
    )
    if not found:
        raise BackupError(
            "this token has no archive key: it was made by `cloudsign init`, not by "
            "`cloudsign ceremony`, and no backup can be made of it"
        )
    return found[0]


def _public_of(session: Any, label: str, key_type: KeyType) -> dict[str, Any]:
    found = list(
        session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.LABEL: label})
    )
    if len(found) != 1:
        raise BackupError(f"the key {label!r} has {len(found)} public keys on the token")
    pub = found[0]
    values = {a.name: b64(bytes(pub[a])) for a in _PUBLIC_VALUES[key_type]}
    return {"private": bool(pub[Attribute.PRIVATE]), "values": values}


# -- reading and restoring (the restore child) ---------------------------------------


def parse_archive(text: str | bytes) -> dict[str, Any]:
    """The archive document, its shape checked (not its MAC: that needs the HSM)."""
    if len(text) > MAX_ARCHIVE_BYTES:
        raise BackupError("the archive is larger than any this service writes")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise BackupError("the archive is not readable JSON") from e
    if not isinstance(document, dict) or document.get("format") != ARCHIVE_FORMAT:
        raise BackupError("not an HSM archive of this service")
    try:
        for key in (
            "archive_id",
            "created_at",
            "token_label",
            "key_check",
            "ceremony",
            "mac_key",
            "mac",
        ):
            if not isinstance(document[key], str):
                raise TypeError(key)
        if not isinstance(document["files"], dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in document["files"].items()
        ):
            raise TypeError("files")
        keys = document["keys"]
        if not isinstance(keys, list) or not keys:
            raise TypeError("keys")
        for entry in keys:
            _check_entry(entry)
        bytes.fromhex(document["mac"])
    except (KeyError, TypeError, ValueError) as e:
        raise BackupError(f"the archive is malformed ({e})") from e
    _check_roles(keys)
    return document


def _check_roles(entries: list[dict[str, Any]]) -> None:
    """What a restore will make trusted, or able to wrap and unwrap, follows
    from fixed rules, not from the archive: exactly one master key (trusted,
    under `MASTER_UNWRAP_TEMPLATE`), retired masters (unwrap only, under
    theirs), and no other key with `CKA_TRUSTED`, `CKA_WRAP` or
    `CKA_UNWRAP`. The MAC cannot be relied on for this: a holder of the user
    PIN can wrap a key of their own under the live token's archive key and
    MAC a document around it; such a document still cannot add a trusted
    or wrapping key, or take the master key's template off."""
    labels = [e["label"] for e in entries]
    if len(set(labels)) != len(labels):
        raise BackupError("the archive names a key twice")
    masters = [e for e in entries if e["label"] == MASTER_KEY_LABEL]
    if len(masters) != 1:
        raise BackupError("the archive does not hold exactly one master key")
    for entry in entries:
        label = entry["label"]
        wraps = entry["flags"].get("WRAP", False) or entry["flags"].get("UNWRAP", False)
        if label == MASTER_KEY_LABEL:
            ok = (
                entry.get("trusted") is True
                and entry.get("unwrap_template") == "master"
                and entry["class"] == "secret"
            )
        elif label.startswith(RETIRED_MASTER_PREFIX):
            ok = (
                not entry.get("trusted")
                and entry.get("unwrap_template") == "retired"
                and not entry["flags"].get("WRAP", False)
                and entry["class"] == "secret"
            )
        else:
            ok = not entry.get("trusted") and not wraps and "unwrap_template" not in entry
        if not ok:
            raise BackupError(
                f"the archive gives {label[:64]!r} a role no restore grants "
                "(trust, wrapping or an unwrap template of its own)"
            )


def _check_entry(entry: Any) -> None:
    if not isinstance(entry, dict):
        raise TypeError("key entry")
    if entry["class"] not in ("secret", "private") or entry["key_type"] not in _KEY_TYPES:
        raise TypeError("key class or type")
    if not isinstance(entry["label"], str) or not isinstance(entry["flags"], dict):
        raise TypeError("label or flags")
    bytes.fromhex(entry["id"])
    unb64(entry["wrapped"])
    if entry["wrapping"] not in (HSM_WRAPPED, SOFTWARE_WRAPPED):
        raise TypeError("wrapping")
    allowed = {a.name for a in (_PRIVATE_FLAGS if entry["class"] == "private" else _SECRET_FLAGS)}
    if not set(entry["flags"]) <= allowed:
        raise TypeError("flags")
    if entry["class"] == "private":
        values = entry["public"]["values"]
        expected = {a.name for a in _PUBLIC_VALUES[_KEY_TYPES[entry["key_type"]]]}
        if set(values) != expected:
            raise TypeError("public key values")
        for value in values.values():
            unb64(value)


def verify_archive_mac(unwrapper: Any, document: Mapping[str, Any]) -> None:
    """Unwrap the MAC key under the archive key (in the HSM) and check the
    document's MAC; raises BackupError on any difference."""
    try:
        mac_key = unwrapper.unwrap_key(
            ObjectClass.SECRET_KEY,
            KeyType.GENERIC_SECRET,
            unb64(document["mac_key"]),
            mechanism=Mechanism.AES_KEY_WRAP_PAD,
            template={
                **NO_CAPABILITIES,
                Attribute.TOKEN: False,
                Attribute.PRIVATE: False,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.VERIFY: True,
            },
        )
    except PKCS11Error as e:
        raise BackupError(
            "the archive's MAC key does not unwrap: altered, or another archive key"
        ) from e
    try:
        ok = mac_key.verify(
            canonical(document), bytes.fromhex(document["mac"]), mechanism=Mechanism.SHA256_HMAC
        )
    except PKCS11Error:
        ok = False
    finally:
        mac_key.destroy()
    if not ok:
        raise BackupError("the archive was altered after it was made (its MAC does not match)")


def unwrap_template(entry: Mapping[str, Any], *, token: bool, private: bool) -> dict[Any, Any]:
    """The attributes a restored key gets back (see `export_token`)."""
    is_private = entry["class"] == "private"
    flags = _PRIVATE_FLAGS if is_private else _SECRET_FLAGS
    template: dict[Any, Any] = {
        **EXPORTABLE_UNDER_TRUSTED,
        Attribute.TOKEN: token,
        Attribute.PRIVATE: private,
        Attribute.LABEL: entry["label"],
        Attribute.ID: bytes.fromhex(entry["id"]),
        **{a: bool(entry["flags"].get(a.name, False)) for a in flags},
    }
    if is_private:
        # Set by python-pkcs11 for every key, invalid on a private key object.
        template.update(
            {Attribute.ENCRYPT: DEFAULT, Attribute.VERIFY: DEFAULT, Attribute.WRAP: DEFAULT}
        )
    if entry.get("trusted"):
        template[Attribute.TRUSTED] = True
    if entry.get("unwrap_template") == "master":
        template[Attribute.UNWRAP_TEMPLATE] = dict(MASTER_UNWRAP_TEMPLATE)
    elif entry.get("unwrap_template") == "retired":
        template[Attribute.UNWRAP_TEMPLATE] = dict(RETIRED_MASTER_UNWRAP_TEMPLATE)
    return template


def retired(entry: Mapping[str, Any], archive_id: str) -> dict[str, Any]:
    """The archive's master key entry as a retired master (a rotation):
    not trusted, unwraps only, under its own unwrap template."""
    return {
        **entry,
        "label": RETIRED_MASTER_PREFIX + archive_id[:16],
        "trusted": False,
        "unwrap_template": "retired",
        "flags": {**entry["flags"], "WRAP": False},
    }


def key_type_of(entry: Mapping[str, Any]) -> KeyType:
    return _KEY_TYPES[entry["key_type"]]


def object_class_of(entry: Mapping[str, Any]) -> ObjectClass:
    return ObjectClass.PRIVATE_KEY if entry["class"] == "private" else ObjectClass.SECRET_KEY


def public_template(entry: Mapping[str, Any]) -> dict[Any, Any]:
    public = entry["public"]
    return {
        Attribute.CLASS: ObjectClass.PUBLIC_KEY,
        Attribute.KEY_TYPE: key_type_of(entry),
        Attribute.TOKEN: True,
        Attribute.PRIVATE: bool(public["private"]),
        Attribute.LABEL: entry["label"],
        Attribute.ID: bytes.fromhex(entry["id"]),
        Attribute.VERIFY: True,
        **{Attribute[name]: unb64(value) for name, value in public["values"].items()},
    }


def seeded_key_objects(
    label: str, key_id: bytes, seed: bytes
) -> tuple[list[dict[Any, Any]], bytes]:
    """The private and public key objects of an Ed25519 key made from `seed`
    (`C_CreateObject`: sensitive, never extractable), and its raw public key."""
    from asn1crypto import core as asn1_core
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from pkcs11.util.ec import encode_named_curve_parameters

    public = (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    params = encode_named_curve_parameters(KeyAlgorithm.ED25519.curve_oid)
    common = {
        Attribute.KEY_TYPE: KeyType.EC_EDWARDS,
        Attribute.TOKEN: True,
        Attribute.LABEL: label,
        Attribute.ID: key_id,
        Attribute.EC_PARAMS: params,
    }
    private = {
        **common,
        Attribute.CLASS: ObjectClass.PRIVATE_KEY,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.SIGN: True,
        # Stated: SoftHSM2's defaults for a created private key allow more.
        Attribute.DECRYPT: False,
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
        Attribute.VALUE: seed,
    }
    public_object = {
        **common,
        Attribute.CLASS: ObjectClass.PUBLIC_KEY,
        Attribute.VERIFY: True,
        Attribute.EC_POINT: asn1_core.OctetString(public).dump(),
    }
    return [private, public_object], public
