"""Token creation and key provisioning: the trusted master wrapping key and the
sealing keys, in a short-lived child process.

Three jobs, each run by `python -m hsm_bridge.provision` with a JSON request
on stdin and a JSON report on stdout:

* `create_token`: `C_InitToken` on the module's free slot, `C_InitPIN`, the
  master key and every sealing/HMAC key, all in one process. The SO PIN is
  generated *inside that child* and never leaves it: not on a command line,
  not on a pipe, not in a file. Once the master key exists nothing the
  service does needs the SO again, so forgetting the SO PIN costs nothing and
  removes the one credential that could mark an attacker's own key
  `CKA_TRUSTED` (which may then wrap every `CKA_WRAP_WITH_TRUSTED` owner key).
  With a `CeremonyRequest` the same child also draws the **archive key**,
  puts it in the token as a trusted, wrap-only key, splits it into the
  custodians' sealed shares (`hsm_bridge.shares`) and makes the keys the
  module cannot wrap from seeds (`hsm_bridge.backup`); only sealed shares,
  the key's check value and wrapped seeds come back.
* `restore` (`create_token` with a `RestoreRequest`): the same, but the keys
  come from an archive: the child combines the custodians' shares, checks
  the archive's MAC in the new HSM and unwraps each key there, the trusted
  ones as SO (optionally retiring the archive's master key beside a new
  one, a rotation).
* `provision_keys`, at every later start: creates any missing sealing/HMAC
  key, which needs only the user. The master key is never made here unless a
  legacy SO PIN is handed over (a data dir from before the SO PIN was
  forgotten, see `cloudsign.instance`); that PIN is then changed to a fresh
  random value generated and dropped in the child, so any copy of the old
  one (backups, the file itself before it was removed) stops working.

Why a child process: `CKA_TRUSTED` may be set only by the SO, and SoftHSM2's
SO sees only public objects, which it stores unencrypted on disk. So the
trusted key is made as a public *session* object (memory only) under an SO
login, the login is switched to the user on the same session, and the key is
copied into a private token object (`C_CopyObject` keeps `CKA_TRUSTED`).
python-pkcs11 has no call to log out without closing the session (closing
would destroy the session object), nor a `C_InitToken`, so those two go
straight to the module's exported functions. That leaves python-pkcs11's view
of its sessions inconsistent, which is harmless in a process that exits right
after; it also keeps the SO PIN out of the service process entirely.

PINs reach the child on stdin (a pipe: not visible in `/proc/<pid>/cmdline`
or `/proc/<pid>/environ`), and the child's environment is the parent's minus
every variable whose value contains one of the PINs (`scrubbed_environment`),
so an operator's `CLOUDSIGN_HSM_PIN` is not inherited either.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from hsm_bridge.errors import HsmConfigurationError, HsmError, HsmUnavailableError
from hsm_bridge.sealing import HMAC_KEY_PREFIX, SEALING_KEY_PREFIX
from hsm_bridge.secret import Secret
from hsm_bridge.session import MASTER_KEY_LABEL
from hsm_bridge.shares import (
    ARCHIVE_KEY_BYTES,
    CustodianShare,
    ShareError,
    ShareFile,
    b64,
    combine_archive_key,
    kcv,
    split_archive_key,
    unb64,
)

SEALING_PURPOSES: Final = ("credential", "totp", "biometric")
HMAC_PURPOSES: Final = ("audit-owner", "mobile-qr", "rp-callback")

#: PKCS#11 token labels are 32 bytes of UTF-8, padded with blanks.
TOKEN_LABEL_BYTES: Final = 32
_CKR_OK: Final = 0
#: Labels of the SO's staged session objects (`_as_user_token_objects`).
STAGING_SUFFIX: Final = "-staging"
RESTORE_SUFFIX: Final = "-restore"

#: The master key: trusted (it wraps owner keys, which only trusted keys
#: may), wrapped out only by another trusted key (the archive key, for a
#: backup), and whatever it unwraps is bound by `MASTER_UNWRAP_TEMPLATE`.
_MASTER_TEMPLATE_BOOLS: Final = {
    "SENSITIVE": True,
    "EXTRACTABLE": True,
    "WRAP_WITH_TRUSTED": True,
    "WRAP": True,
    "UNWRAP": True,
    "ENCRYPT": False,
    "DECRYPT": False,
    "SIGN": False,
    "VERIFY": False,
    "DERIVE": False,
}


@dataclass(frozen=True)
class ProvisionReport:
    """What the child found and did; no secret in it."""

    token_found: bool
    master_key: bool
    created: tuple[str, ...]
    #: For a legacy SO PIN: "rotated" (changed to a value nobody knows),
    #: "already" (it no longer opened an SO session: rotated by an earlier
    #: run) or "" (no legacy PIN was given).
    legacy_so_pin: str
    #: A ceremony's archive record and sealed shares, a restore's report.
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CeremonyRequest:
    """Make an archive key with the token: split into one share per
    custodian, sealed under each one's passphrase (`hsm_bridge.shares`);
    `software_keys` are (label, algorithm) of keys the module cannot wrap,
    made in the child from a seed (`hsm_bridge.backup` module doc)."""

    ceremony: str
    threshold: int
    custodians: Sequence[CustodianShare]
    software_keys: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True)
class RestoreRequest:
    """Fill the new token from an archive with the custodians' shares."""

    archive: Mapping[str, Any]
    shares: Sequence[tuple[ShareFile, Secret]]
    #: A master key rotation: the archive's master key comes back retired
    #: (it unwraps owner keys until each is re-wrapped at its next use) and
    #: a new master key is made (`hsm_bridge.custody`).
    new_master: bool = False


def scrubbed_environment(
    withhold: Iterable[Secret], overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """This process's environment for a child, without any variable whose
    value contains one of `withhold`; then `overrides`."""
    hidden = [s.reveal() for s in withhold if s.reveal()]
    env = {k: v for k, v in os.environ.items() if not any(h in v for h in hidden)}
    env.update(overrides or {})
    return env


def create_token(
    module_path: str,
    token_label: str,
    user_pin: Secret,
    *,
    softhsm2_conf: Path | None = None,
    ceremony: CeremonyRequest | None = None,
    restore: RestoreRequest | None = None,
) -> ProvisionReport:
    """Initialise the module's free slot as `token_label` with `user_pin`
    and provision every key, or (`restore`) bring back an archive's keys.
    The SO PIN is made and forgotten in the child.

    `softhsm2_conf` points a SoftHSM2 child at another token directory (the
    caller's staging area, see `hsm_bridge.softhsm.create_token`)."""
    if not 0 < len(token_label.encode()) <= TOKEN_LABEL_BYTES:
        raise HsmConfigurationError(f"a token label is 1 to {TOKEN_LABEL_BYTES} bytes of UTF-8")
    overrides = {"SOFTHSM2_CONF": str(softhsm2_conf)} if softhsm2_conf else None
    request: dict[str, Any] = {"job": "create", "module": module_path, "token": token_label}
    pins = {"user_pin": user_pin}
    if ceremony is not None:
        request["ceremony"] = {
            "id": ceremony.ceremony,
            "threshold": ceremony.threshold,
            "custodians": [c.name for c in ceremony.custodians],
            "software_keys": [list(k) for k in ceremony.software_keys],
        }
        pins |= {f"passphrase-{i}": c.passphrase for i, c in enumerate(ceremony.custodians)}
    if restore is not None:
        request["job"] = "restore"
        request["archive"] = dict(restore.archive)
        request["shares"] = [share.to_json() for share, _ in restore.shares]
        request["new_master"] = restore.new_master
        pins |= {f"passphrase-{i}": p for i, (_, p) in enumerate(restore.shares)}
    return _run_child(request, pins, overrides)


def provision_keys(
    module_path: str, token_label: str, user_pin: Secret, *, legacy_so_pin: Secret | None = None
) -> ProvisionReport:
    """Create any missing sealing/HMAC key (user login only). Idempotent.

    Raises HsmConfigurationError if the token exists without a master key and
    no `legacy_so_pin` can make one: nothing else holds the SO PIN."""
    pins = {"user_pin": user_pin}
    if legacy_so_pin is not None:
        pins["so_pin"] = legacy_so_pin
    report = _run_child({"job": "provision", "module": module_path, "token": token_label}, pins)
    if report.token_found and not report.master_key:
        raise HsmConfigurationError(
            f"token {token_label!r} has no master key and no SO PIN is available to make one; "
            "`cloudsign init` creates token and master key together, so this token was made "
            "some other way: move it away and initialise again (its keys are lost)"
        )
    return report


def _run_child(
    request: dict[str, Any], pins: dict[str, Secret], env: Mapping[str, str] | None = None
) -> ProvisionReport:
    payload = json.dumps({**request, **{k: v.reveal() for k, v in pins.items()}})
    result = subprocess.run(
        [sys.executable, "-m", "hsm_bridge.provision"],
        input=payload,
        capture_output=True,
        text=True,
        check=False,
        env=scrubbed_environment(pins.values(), env),
    )
    if result.returncode != 0:
        # The child reports only an exception type and message (PKCS#11 errors
        # carry no PIN); the redaction is for the case that ever changes.
        detail = _redact(result.stderr.strip()[-500:], pins.values())
        kind, _, message = detail.partition(": ")
        if kind == "ShareError":
            raise ShareError(message)
        if kind == "BackupError":
            from hsm_bridge.backup import BackupError

            raise BackupError(message)
        raise HsmUnavailableError(f"HSM provisioning failed: {detail}")
    try:
        answer = json.loads(result.stdout)
        return ProvisionReport(
            token_found=bool(answer["token_found"]),
            master_key=bool(answer["master_key"]),
            created=tuple(str(x) for x in answer["created"]),
            legacy_so_pin=str(answer["legacy_so_pin"]),
            details=dict(answer.get("details", {})),
        )
    except (ValueError, KeyError, TypeError) as e:
        raise HsmUnavailableError("HSM provisioning answered something unreadable") from e


def _redact(text: str, pins: Iterable[Secret]) -> str:
    for pin in pins:
        if pin.reveal():
            text = text.replace(pin.reveal(), Secret.MASK)
    return text


# -- the child ------------------------------------------------------------------


def _main() -> int:
    try:
        request = json.loads(sys.stdin.read())
        passphrases = [
            Secret(request[f"passphrase-{i}"])
            for i in range(len(request))
            if f"passphrase-{i}" in request
        ]
        if request["job"] == "create":
            report = _create(
                request["module"],
                request["token"],
                request["user_pin"],
                request.get("ceremony"),
                passphrases,
            )
        elif request["job"] == "restore":
            report = _restore(
                request["module"],
                request["token"],
                request["user_pin"],
                request["archive"],
                list(zip(map(ShareFile.from_json, request["shares"]), passphrases, strict=True)),
                new_master=bool(request.get("new_master")),
            )
        else:
            report = _provision(
                request["module"], request["token"], request["user_pin"], request.get("so_pin")
            )
    except (HsmError, Exception) as e:  # noqa: BLE001 - report across the process boundary
        # Only the type and message cross back; PKCS#11 errors never contain
        # PINs, share and backup errors never contain a share or a passphrase.
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 0


def _new_token(module_path: str, token_label: str) -> tuple[Any, str]:
    """Initialise the module's free slot; returns the token and its SO PIN,
    which lives in this process only, for the next few calls."""
    import pkcs11
    from pkcs11 import TokenFlag

    lib = pkcs11.lib(module_path)
    if any(s.get_token().label == token_label for s in lib.get_slots(token_present=True)):
        raise HsmConfigurationError(f"a token {token_label!r} already exists")
    free = [
        s
        for s in lib.get_slots(token_present=True)
        if not s.get_token().flags & TokenFlag.TOKEN_INITIALIZED
    ]
    if not free:
        raise HsmUnavailableError("the module offers no uninitialised token")
    so_pin = secrets.token_urlsafe(24)  # 192 random bits
    _init_token(module_path, free[0].slot_id, token_label, so_pin)
    return lib.get_token(token_label=token_label), so_pin


def _create(
    module_path: str,
    token_label: str,
    user_pin: str,
    ceremony: Mapping[str, Any] | None,
    passphrases: Sequence[Secret],
) -> dict[str, Any]:
    from hsm_bridge.backup import ARCHIVE_KEY_LABEL
    from hsm_bridge.templates import TemplateMapper

    archive_key = secrets.token_bytes(ARCHIVE_KEY_BYTES) if ceremony is not None else None
    token, so_pin = _new_token(module_path, token_label)
    mapper = TemplateMapper()
    so = token.open(so_pin=so_pin, rw=True, attribute_mapper=mapper)
    try:
        so.init_pin(user_pin)
        _stage_master(so)
        if archive_key is not None:
            _stage_archive_key(so, archive_key, wrap_only=True)
        staged = [MASTER_KEY_LABEL] + ([ARCHIVE_KEY_LABEL] if archive_key is not None else [])
        user = _as_user_token_objects(module_path, token, so, user_pin, mapper, staged)
        try:
            created = [*staged, *_user_keys(user)]
            details: dict[str, Any] = {}
            if ceremony is not None and archive_key is not None:
                details = _ceremony_outputs(user, ceremony, archive_key, passphrases)
                created += list(details["keys"])
        finally:
            user.close()
    finally:
        so.close()
    return _new_token_report(created, details)


def _new_token_report(created: list[str], details: dict[str, Any]) -> dict[str, Any]:
    """The report of a child that made a new token (with its master key)."""
    return {
        "token_found": True,
        "master_key": True,
        "created": created,
        "legacy_so_pin": "",
        "details": details,
    }


def _ceremony_outputs(
    user: Any, ceremony: Mapping[str, Any], archive_key: bytes, passphrases: Sequence[Secret]
) -> dict[str, Any]:
    """The custodians' sealed shares and the keys made from a seed here."""
    names = [str(n) for n in ceremony["custodians"]]
    if len(names) != len(passphrases):
        raise HsmConfigurationError("one passphrase per custodian")
    shares = split_archive_key(
        archive_key,
        [CustodianShare(n, p) for n, p in zip(names, passphrases, strict=True)],
        int(ceremony["threshold"]),
        str(ceremony["id"]),
    )
    keys = {
        str(label): _seeded_key(user, str(label), str(algorithm), archive_key)
        for label, algorithm in ceremony["software_keys"]
    }
    return {
        "ceremony": str(ceremony["id"]),
        "key_check": kcv(archive_key),
        "shares": [share.to_json() for share in shares],
        "keys": keys,
    }


def _seeded_key(user: Any, label: str, algorithm: str, archive_key: bytes) -> dict[str, str]:
    """An Ed25519 key from a seed drawn here, into the token with
    `C_CreateObject`; returns the seed wrapped under the archive key (RFC
    5649) and the public key (see `hsm_bridge.backup`: SoftHSM2 cannot wrap
    EdDSA keys)."""
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

    from hsm_bridge.backup import seeded_key_objects

    if algorithm != "ed25519":
        raise HsmConfigurationError(f"no seeded keys of type {algorithm}")
    seed = secrets.token_bytes(32)
    templates, public = seeded_key_objects(label, b"", seed)
    for template in templates:
        user.create_object(template)
    return {
        "wrapped": b64(aes_key_wrap_with_padding(archive_key, seed)),
        "public": b64(public),
    }


def _restore(
    module_path: str,
    token_label: str,
    user_pin: str,
    archive: Mapping[str, Any],
    shares: Sequence[tuple[ShareFile, Secret]],
    *,
    new_master: bool = False,
) -> dict[str, Any]:
    """A new token holding the archive's keys (with `new_master`, the
    archive's master key retired and a new one beside it). Every check that can fail
    (the shares, then the archive's MAC, in the HSM) comes before the first
    key is unwrapped; the caller builds the token in a staging directory,
    so a failure leaves nothing behind."""
    from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding
    from pkcs11 import Attribute, Mechanism, ObjectClass

    from hsm_bridge.backup import (
        ARCHIVE_KEY_LABEL,
        SOFTWARE_WRAPPED,
        key_type_of,
        object_class_of,
        parse_archive,
        public_template,
        retired,
        seeded_key_objects,
        unwrap_template,
        verify_archive_mac,
    )
    from hsm_bridge.templates import TemplateMapper

    archive = parse_archive(json.dumps(archive))
    archive_key = combine_archive_key(shares, archive["key_check"])
    token, so_pin = _new_token(module_path, token_label)
    mapper = TemplateMapper()
    so = token.open(so_pin=so_pin, rw=True, attribute_mapper=mapper)
    try:
        so.init_pin(user_pin)
        unwrapper = _stage_archive_key(so, archive_key, wrap_only=False)
        verify_archive_mac(unwrapper, archive)
        entries = archive["keys"]
        if new_master:
            entries = [
                retired(e, archive["archive_id"]) if e["label"] == MASTER_KEY_LABEL else e
                for e in entries
            ]
            _stage_master(so)
        trusted = [e for e in entries if e.get("trusted")]
        for entry in trusted:
            unwrapper.unwrap_key(
                object_class_of(entry),
                key_type_of(entry),
                unb64(entry["wrapped"]),
                mechanism=Mechanism.AES_KEY_WRAP_PAD,
                template={
                    **unwrap_template(entry, token=False, private=False),
                    Attribute.LABEL: entry["label"] + STAGING_SUFFIX,
                },
            )
        _stage_archive_key(so, archive_key, wrap_only=True)
        staged = [e["label"] for e in trusted] + [ARCHIVE_KEY_LABEL]
        if new_master:
            staged.append(MASTER_KEY_LABEL)
        user = _as_user_token_objects(module_path, token, so, user_pin, mapper, staged)
        try:
            user_unwrapper = user.get_key(
                object_class=ObjectClass.SECRET_KEY, label=ARCHIVE_KEY_LABEL + RESTORE_SUFFIX
            )
            restored = list(staged)
            for entry in entries:
                if entry.get("trusted"):
                    continue
                if entry["wrapping"] == SOFTWARE_WRAPPED:
                    seed = aes_key_unwrap_with_padding(archive_key, unb64(entry["wrapped"]))
                    templates, _ = seeded_key_objects(
                        entry["label"], bytes.fromhex(entry["id"]), seed
                    )
                    for template in templates:
                        user.create_object(template)
                else:
                    user_unwrapper.unwrap_key(
                        object_class_of(entry),
                        key_type_of(entry),
                        unb64(entry["wrapped"]),
                        mechanism=Mechanism.AES_KEY_WRAP_PAD,
                        template=unwrap_template(entry, token=True, private=True),
                    )
                    if entry["class"] == "private":
                        user.create_object(public_template(entry))
                restored.append(entry["label"])
            user_unwrapper.destroy()
        finally:
            user.close()
    finally:
        so.close()
    return _new_token_report(restored, {"archive_id": archive["archive_id"]})


def _init_token(module_path: str, slot_id: int, token_label: str, so_pin: str) -> None:
    """`C_InitToken` through the module's exported symbol (python-pkcs11 has no
    binding): the same loaded library and state as python-pkcs11's calls."""
    fn = ctypes.CDLL(module_path).C_InitToken
    fn.argtypes = [ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    fn.restype = ctypes.c_ulong
    pin = so_pin.encode()
    label = token_label.encode().ljust(TOKEN_LABEL_BYTES, b" ")
    rv = fn(slot_id, pin, len(pin), label)
    if rv != _CKR_OK:
        raise HsmUnavailableError(f"C_InitToken returned {rv:#x}")


def _provision(
    module_path: str, token_label: str, user_pin: str, so_pin: str | None
) -> dict[str, Any]:
    import pkcs11
    from pkcs11 import Attribute, ObjectClass
    from pkcs11.exceptions import NoSuchToken

    lib = pkcs11.lib(module_path)
    try:
        token = lib.get_token(token_label=token_label)
    except NoSuchToken:
        return {"token_found": False, "master_key": False, "created": [], "legacy_so_pin": ""}
    user = token.open(user_pin=user_pin, rw=True)
    try:
        created = _user_keys(user)
        have_master = any(
            obj[Attribute.LABEL] == MASTER_KEY_LABEL
            for obj in user.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
        )
    finally:
        # The SO cannot log in while this application holds a user login.
        user.close()
    legacy = ""
    if so_pin is not None:
        if not have_master:
            from hsm_bridge.templates import TemplateMapper

            mapper = TemplateMapper()
            so = token.open(so_pin=so_pin, rw=True, attribute_mapper=mapper)
            try:
                _stage_master(so)
                _as_user_token_objects(
                    module_path, token, so, user_pin, mapper, [MASTER_KEY_LABEL]
                ).close()
            finally:
                # Every session closed: the login ends, so the SO can log in again.
                so.close()
            have_master = True
            created.append(MASTER_KEY_LABEL)
        legacy = _retire_so_pin(token, so_pin)
    return {
        "token_found": True,
        "master_key": have_master,
        "created": created,
        "legacy_so_pin": legacy,
    }


def _retire_so_pin(token: Any, so_pin: str) -> str:
    """Change a legacy SO PIN to a random one that is never stored or shown."""
    from pkcs11.exceptions import PinIncorrect

    try:
        so = token.open(so_pin=so_pin, rw=True)
    except PinIncorrect:
        return "already"
    try:
        so.set_pin(so_pin, secrets.token_urlsafe(24))
    finally:
        so.close()
    return "rotated"


def _user_keys(user: Any) -> list[str]:
    """Create the missing sealing and HMAC keys; returns their labels."""
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass

    from hsm_bridge.templates import EXPORTABLE_UNDER_TRUSTED, NO_CAPABILITIES

    have = {
        obj[Attribute.LABEL] for obj in user.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
    }
    created: list[str] = []
    for purpose in SEALING_PURPOSES:
        label = SEALING_KEY_PREFIX + purpose
        if label not in have:
            user.generate_key(
                KeyType.AES,
                256,
                label=label,
                store=True,
                template={
                    **EXPORTABLE_UNDER_TRUSTED,
                    **NO_CAPABILITIES,
                    Attribute.ENCRYPT: True,
                    Attribute.DECRYPT: True,
                },
            )
            created.append(label)
    for purpose in HMAC_PURPOSES:
        label = HMAC_KEY_PREFIX + purpose
        if label not in have:
            user.generate_key(
                KeyType.GENERIC_SECRET,
                256,
                label=label,
                store=True,
                mechanism=pkcs11.Mechanism.GENERIC_SECRET_KEY_GEN,
                template={
                    **EXPORTABLE_UNDER_TRUSTED,
                    **NO_CAPABILITIES,
                    Attribute.SIGN: True,
                    Attribute.VERIFY: True,
                },
            )
            created.append(label)
    return created


def _stage_master(so: Any) -> Any:
    """The trusted master key as a public *session* object of the SO (memory
    only; see the module doc), labelled for `_as_user_token_objects`."""
    from pkcs11 import Attribute, KeyType

    from hsm_bridge.templates import MASTER_UNWRAP_TEMPLATE

    template: dict[Any, Any] = {getattr(Attribute, k): v for k, v in _MASTER_TEMPLATE_BOOLS.items()}
    return so.generate_key(
        KeyType.AES,
        256,
        label=MASTER_KEY_LABEL + STAGING_SUFFIX,
        store=False,
        template={
            **template,
            Attribute.PRIVATE: False,
            Attribute.TRUSTED: True,
            Attribute.UNWRAP_TEMPLATE: dict(MASTER_UNWRAP_TEMPLATE),
        },
    )


def _stage_archive_key(so: Any, value: bytes, *, wrap_only: bool) -> Any:
    """The archive key from its value, as a public session object of the SO.
    `wrap_only`: the trusted key that goes on the token (it may wrap, for
    backups, and never unwrap); else the restore's session-only unwrapper,
    which is not trusted and wraps nothing."""
    from pkcs11 import Attribute, KeyType, ObjectClass

    from hsm_bridge.backup import ARCHIVE_KEY_LABEL
    from hsm_bridge.templates import NO_CAPABILITIES

    return so.create_object(
        {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: KeyType.AES,
            Attribute.VALUE: value,
            Attribute.TOKEN: False,
            Attribute.PRIVATE: False,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.LABEL: ARCHIVE_KEY_LABEL + (STAGING_SUFFIX if wrap_only else RESTORE_SUFFIX),
            **NO_CAPABILITIES,
            Attribute.WRAP: wrap_only,
            Attribute.UNWRAP: not wrap_only,
            Attribute.TRUSTED: wrap_only,
        }
    )


def _as_user_token_objects(
    module_path: str, token: Any, so: Any, user_pin: str, mapper: Any, labels: Sequence[str]
) -> Any:
    """Switch the login from the SO to the user on the same application and
    copy each staged SO session object `<label>-staging` into a private
    token object `<label>` (`C_CopyObject` keeps `CKA_TRUSTED` and the unwrap
    template); the staging copies are destroyed. Returns the user session;
    `so` stays open but is no longer the SO's. The caller closes both."""
    from pkcs11 import Attribute, ObjectClass

    so_handle: int = so.handle
    rv = ctypes.CDLL(module_path).C_Logout(ctypes.c_ulong(so_handle))
    if rv != _CKR_OK:
        raise HsmUnavailableError(f"C_Logout of the SO returned {rv:#x}")
    user = token.open(user_pin=user_pin, rw=True, attribute_mapper=mapper)
    try:
        for label in labels:
            staged: Any = user.get_key(
                object_class=ObjectClass.SECRET_KEY, label=label + STAGING_SUFFIX
            )
            copy = staged.copy(
                {Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.LABEL: label}
            )
            trusted = bool(staged[Attribute.TRUSTED])
            staged.destroy()
            if not (copy[Attribute.TRUSTED] == trusted and copy[Attribute.PRIVATE]):
                raise HsmUnavailableError(f"{label} did not keep CKA_TRUSTED / CKA_PRIVATE")
    except BaseException:
        user.close()
        raise
    return user


if __name__ == "__main__":
    sys.exit(_main())
