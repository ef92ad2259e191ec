"""First-time provisioning of a token: the trusted master wrapping key and the
sealing keys.

Why a child process: `CKA_TRUSTED` may be set only by the SO, and SoftHSM2's
SO sees only public objects, which it stores unencrypted on disk. So the
trusted key is made as a public *session* object (memory only) under an SO
login, the login is switched to the user on the same session, and the key is
copied into a private token object (`C_CopyObject` keeps `CKA_TRUSTED`).
python-pkcs11 has no call to log out without closing the session (closing
would destroy the session object), so the SO logout goes straight to the
module's exported `C_Logout`. That leaves python-pkcs11's view of its
sessions inconsistent, which is harmless in a process that exits right after.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from typing import Any, Final

from hsm_bridge.errors import HsmError, HsmUnavailableError
from hsm_bridge.sealing import HMAC_KEY_PREFIX, SEALING_KEY_PREFIX
from hsm_bridge.secret import Secret
from hsm_bridge.session import MASTER_KEY_LABEL

SEALING_PURPOSES: Final = ("credential", "totp", "biometric")
HMAC_PURPOSES: Final = ("audit-owner",)

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


def provision_keys(module_path: str, token_label: str, so_pin: Secret, user_pin: Secret) -> None:
    """Create any missing master/sealing keys. Idempotent."""
    request = json.dumps(
        {
            "module": module_path,
            "token": token_label,
            "so_pin": so_pin.reveal(),
            "user_pin": user_pin.reveal(),
        }
    )
    # PINs travel on stdin, never on the command line (visible in ps).
    result = subprocess.run(
        [sys.executable, "-m", "hsm_bridge.provision"],
        input=request,
        capture_output=True,
        text=True,
        check=False,
        env=os.environ.copy(),
    )
    if result.returncode != 0:
        raise HsmUnavailableError(f"HSM provisioning failed: {result.stderr.strip()[-500:]}")


def _main() -> int:
    request = json.loads(sys.stdin.read())
    try:
        _provision(request["module"], request["token"], request["so_pin"], request["user_pin"])
    except (HsmError, Exception) as e:  # noqa: BLE001 - report across the process boundary
        # Only the type and message cross back; PKCS#11 errors never contain PINs.
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


def _provision(module_path: str, token_label: str, so_pin: str, user_pin: str) -> None:
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass

    lib = pkcs11.lib(module_path)
    token = lib.get_token(token_label=token_label)
    user = token.open(user_pin=user_pin, rw=True)
    try:
        have = {
            obj[Attribute.LABEL]
            for obj in user.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
        }
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
        if MASTER_KEY_LABEL in have:
            return
    finally:
        user.close()

    template: dict[Any, Any] = {getattr(Attribute, k): v for k, v in _MASTER_TEMPLATE_BOOLS.items()}
    so = token.open(so_pin=so_pin, rw=True)
    # Kept referenced: the session object lives as long as `so` stays open.
    so.generate_key(
        KeyType.AES,
        256,
        label=MASTER_KEY_LABEL + "-staging",
        store=False,
        template={**template, Attribute.PRIVATE: False, Attribute.TRUSTED: True},
    )
    so_handle: int = so.handle  # type: ignore[attr-defined]
    rv = ctypes.CDLL(module_path).C_Logout(ctypes.c_ulong(so_handle))
    if rv != 0:
        raise HsmUnavailableError(f"C_Logout of the SO returned {rv:#x}")
    user = token.open(user_pin=user_pin, rw=True)
    staged: Any = user.get_key(
        object_class=ObjectClass.SECRET_KEY, label=MASTER_KEY_LABEL + "-staging"
    )
    master = staged.copy(
        {Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.LABEL: MASTER_KEY_LABEL}
    )
    staged.destroy()
    if not (master[Attribute.TRUSTED] and master[Attribute.PRIVATE]):
        raise HsmUnavailableError("the master key did not keep CKA_TRUSTED / CKA_PRIVATE")


if __name__ == "__main__":
    sys.exit(_main())
