"""SoftHSM2 as the embedded HSM: its config file, token directory and
first-time token initialisation.

SoftHSM2 reads `SOFTHSM2_CONF` once, when the module is initialised, so a
process can use one token directory only; `configure()` must run before the
module is loaded and refuses to switch directories afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Final

from hsm_bridge.errors import HsmConfigurationError, HsmUnavailableError
from hsm_bridge.secret import Secret

#: Where Debian's `softhsm2` package installs the module.
MODULE_CANDIDATES: Final = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def find_module() -> str:
    for candidate in MODULE_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    raise HsmUnavailableError(
        "SoftHSM2 module not found; install the Debian package softhsm2 (make setup does)"
    )


def configure(hsm_dir: Path) -> Path:
    """Write `hsm_dir/softhsm2.conf` pointing at `hsm_dir/tokens` and export it."""
    token_dir = hsm_dir / "tokens"
    token_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    conf = hsm_dir / "softhsm2.conf"
    text = (
        f"directories.tokendir = {token_dir}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
    )
    if not conf.exists() or conf.read_text() != text:
        conf.write_text(text)
        conf.chmod(0o600)
    current = os.environ.get("SOFTHSM2_CONF")
    if current and Path(current).resolve() != conf.resolve() and _module_loaded():
        raise HsmConfigurationError(
            "SoftHSM2 is already initialised with another token directory in this process"
        )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    return conf


def _module_loaded() -> bool:
    # python-pkcs11 keeps one initialised module per process.
    from hsm_bridge import session

    return session.module_loaded()


def token_exists(hsm_dir: Path, label: str) -> bool:
    util = _util()
    out = subprocess.run(  # noqa: S603 - fixed binary, no shell
        [util, "--show-slots"],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "SOFTHSM2_CONF": str(hsm_dir / "softhsm2.conf")},
    )
    return any(
        line.strip() == f"Label:            {label}" or line.strip().endswith(f": {label}")
        for line in out.stdout.splitlines()
        if "Label" in line
    )


def init_token(hsm_dir: Path, label: str, so_pin: Secret, user_pin: Secret) -> None:
    """Initialise a fresh token. The PINs go through stdin-free arguments of a
    short-lived child process only, never through a shell or a log."""
    util = _util()
    result = subprocess.run(  # noqa: S603 - fixed binary, no shell
        [
            util,
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            so_pin.reveal(),
            "--pin",
            user_pin.reveal(),
        ],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "SOFTHSM2_CONF": str(hsm_dir / "softhsm2.conf")},
    )
    if result.returncode != 0:
        # stderr of softhsm2-util never echoes the PINs.
        raise HsmUnavailableError(
            f"softhsm2-util could not initialise the token: {result.stderr.strip()}"
        )


def _util() -> str:
    util = shutil.which("softhsm2-util")
    if util is None:
        raise HsmUnavailableError("softhsm2-util not found; install the Debian package softhsm2")
    return util
