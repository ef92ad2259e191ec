"""Token creation and key provisioning: the trusted master wrapping key and the
sealing keys, in a short-lived child process.

Two jobs, both run by `python -m hsm_bridge.provision` with a JSON request on
stdin and a JSON report on stdout:

* `create_token`: `C_InitToken` on the module's free slot, `C_InitPIN`, the
  master key and every sealing/HMAC key, all in one process. The SO PIN is
  generated *inside that child* and never leaves it: not on a command line,
  not on a pipe, not in a file. Once the master key exists nothing the
  service does needs the SO again, so forgetting the SO PIN costs nothing and
  removes the one credential that could mark an attacker's own key
  `CKA_TRUSTED` (which may then wrap every `CKA_WRAP_WITH_TRUSTED` owner key).
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from hsm_bridge.errors import HsmConfigurationError, HsmError, HsmUnavailableError
from hsm_bridge.sealing import HMAC_KEY_PREFIX, SEALING_KEY_PREFIX
from hsm_bridge.secret import Secret
from hsm_bridge.session import MASTER_KEY_LABEL

SEALING_PURPOSES: Final = ("credential", "totp", "biometric")
HMAC_PURPOSES: Final = ("audit-owner", "mobile-qr", "rp-callback")

#: PKCS#11 token labels are 32 bytes of UTF-8, padded with blanks.
TOKEN_LABEL_BYTES: Final = 32
_CKR_OK: Final = 0

_MASTER_TEMPLATE_BOOLS: Final = {
    "SENSITIVE": True,
    "EXTRACTABLE": False,
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
    module_path: str, token_label: str, user_pin: Secret, *, softhsm2_conf: Path | None = None
) -> ProvisionReport:
    """Initialise the module's free slot as `token_label` with `user_pin`
    and provision every key. The SO PIN is made and forgotten in the child.

    `softhsm2_conf` points a SoftHSM2 child at another token directory (the
    caller's staging area, see `hsm_bridge.softhsm.create_token`)."""
    if not 0 < len(token_label.encode()) <= TOKEN_LABEL_BYTES:
        raise HsmConfigurationError(f"a token label is 1 to {TOKEN_LABEL_BYTES} bytes of UTF-8")
    overrides = {"SOFTHSM2_CONF": str(softhsm2_conf)} if softhsm2_conf else None
    return _run_child(
        {"job": "create", "module": module_path, "token": token_label},
        {"user_pin": user_pin},
        overrides,
    )


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
    request: dict[str, str], pins: dict[str, Secret], env: Mapping[str, str] | None = None
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
        raise HsmUnavailableError(f"HSM provisioning failed: {detail}")
    try:
        answer = json.loads(result.stdout)
        return ProvisionReport(
            token_found=bool(answer["token_found"]),
            master_key=bool(answer["master_key"]),
            created=tuple(str(x) for x in answer["created"]),
            legacy_so_pin=str(answer["legacy_so_pin"]),
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
        if request["job"] == "create":
            report = _create(request["module"], request["token"], request["user_pin"])
        else:
            report = _provision(
                request["module"], request["token"], request["user_pin"], request.get("so_pin")
            )
    except (HsmError, Exception) as e:  # noqa: BLE001 - report across the process boundary
        # Only the type and message cross back; PKCS#11 errors never contain PINs.
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 0


def _create(module_path: str, token_label: str, user_pin: str) -> dict[str, Any]:
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
    # 192 random bits; lives in this process only, for the next few calls.
    so_pin = secrets.token_urlsafe(24)
    _init_token(module_path, free[0].slot_id, token_label, so_pin)
    token = lib.get_token(token_label=token_label)
    so = token.open(so_pin=so_pin, rw=True)
    try:
        so.init_pin(user_pin)
        user = _make_master(module_path, token, so, user_pin)
        try:
            created = [MASTER_KEY_LABEL, *_user_keys(user)]
        finally:
            user.close()
    finally:
        so.close()
    return {"token_found": True, "master_key": True, "created": created, "legacy_so_pin": ""}


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
            so = token.open(so_pin=so_pin, rw=True)
            try:
                _make_master(module_path, token, so, user_pin).close()
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
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.PRIVATE: True,
                    Attribute.ENCRYPT: True,
                    Attribute.DECRYPT: True,
                    Attribute.WRAP: False,
                    Attribute.UNWRAP: False,
                    Attribute.SIGN: False,
                    Attribute.VERIFY: False,
                    Attribute.DERIVE: False,
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
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.PRIVATE: True,
                    Attribute.SIGN: True,
                    Attribute.VERIFY: True,
                    Attribute.ENCRYPT: False,
                    Attribute.DECRYPT: False,
                    Attribute.WRAP: False,
                    Attribute.UNWRAP: False,
                    Attribute.DERIVE: False,
                },
            )
            created.append(label)
    return created


def _make_master(module_path: str, token: Any, so: Any, user_pin: str) -> Any:
    """The trusted master key, from an open SO session (see the module doc).
    Returns the user session it ends in (the login is the user's now); `so`
    stays open but is no longer the SO's. The caller closes both."""
    from pkcs11 import Attribute, KeyType, ObjectClass

    template: dict[Any, Any] = {getattr(Attribute, k): v for k, v in _MASTER_TEMPLATE_BOOLS.items()}
    # Kept referenced: the session object lives as long as `so` stays open.
    so.generate_key(
        KeyType.AES,
        256,
        label=MASTER_KEY_LABEL + "-staging",
        store=False,
        template={**template, Attribute.PRIVATE: False, Attribute.TRUSTED: True},
    )
    so_handle: int = so.handle
    rv = ctypes.CDLL(module_path).C_Logout(ctypes.c_ulong(so_handle))
    if rv != _CKR_OK:
        raise HsmUnavailableError(f"C_Logout of the SO returned {rv:#x}")
    user = token.open(user_pin=user_pin, rw=True)
    try:
        staged: Any = user.get_key(
            object_class=ObjectClass.SECRET_KEY, label=MASTER_KEY_LABEL + "-staging"
        )
        master = staged.copy(
            {Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.LABEL: MASTER_KEY_LABEL}
        )
        staged.destroy()
        if not (master[Attribute.TRUSTED] and master[Attribute.PRIVATE]):
            raise HsmUnavailableError("the master key did not keep CKA_TRUSTED / CKA_PRIVATE")
    except BaseException:
        user.close()
        raise
    return user


if __name__ == "__main__":
    sys.exit(_main())
