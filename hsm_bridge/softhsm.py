"""SoftHSM2 as the embedded HSM: its config file, token directory and
first-time token creation.

SoftHSM2 reads `SOFTHSM2_CONF` once, when the module is initialised, so a
process can use one token directory only; `configure()` must run before the
module is loaded and refuses to switch directories afterwards.

A token appears in `<hsm_dir>/tokens` only complete, with its master key:
`create_token` builds it in `<hsm_dir>/staging/tokens` (a child process with
its own `SOFTHSM2_CONF`, see `hsm_bridge.provision.create_token`) and moves
its directory into place with one `rename`. The SO PIN exists only inside
that child, so a token left half-made by a crash (initialised, no master key
yet) could never be finished; it stays in the staging area, which nothing
but `create_token` reads, and the next `create_token` discards it and starts
over. Nothing of value can be in it: no service key, CA key or owner key is
made before the token is in place.

Modes: directories are created 0700 and files 0600. SoftHSM2 itself creates
its token directories 0700 and object files 0600 whatever the umask.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from hsm_bridge.errors import HsmConfigurationError, HsmUnavailableError
from hsm_bridge.provision import CeremonyRequest, ProvisionReport, RestoreRequest
from hsm_bridge.provision import create_token as _create_in_child
from hsm_bridge.secret import Secret

#: Where Debian's `softhsm2` package installs the module.
MODULE_CANDIDATES: Final = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)

CONF_NAME: Final = "softhsm2.conf"
#: Taken by every token write of every process on the token (see
#: `hsm_bridge.session`).
WRITE_LOCK_NAME: Final = "token-writes.lock"
TOKENS_DIR: Final = "tokens"
STAGING_DIR: Final = "staging"
DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600


def find_module() -> str:
    for candidate in MODULE_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    raise HsmUnavailableError(
        "SoftHSM2 module not found; install the Debian package softhsm2 (make setup does)"
    )


def configure(hsm_dir: Path) -> Path:
    """Write `hsm_dir/softhsm2.conf` pointing at `hsm_dir/tokens` and export it."""
    conf = _write_conf(hsm_dir, hsm_dir / TOKENS_DIR)
    current = os.environ.get("SOFTHSM2_CONF")
    if current and Path(current).resolve() != conf.resolve() and _module_loaded():
        raise HsmConfigurationError(
            "SoftHSM2 is already initialised with another token directory in this process"
        )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    from hsm_bridge import session

    session.serialise_token_writes(hsm_dir / WRITE_LOCK_NAME)
    return conf


@contextlib.contextmanager
def token_setup() -> Iterator[None]:
    """Hold the token's cross-process write lock (`configure` first) for a
    start-up's look at the token and its creation or provisioning, so that
    processes starting together do it one at a time and never read the
    token while another writes it (`hsm_bridge.session` module doc)."""
    from hsm_bridge import session

    with session.token_write_lock():
        yield


def token_directories(hsm_dir: Path) -> list[Path]:
    """The tokens in place (one directory each), without opening them."""
    tokens = hsm_dir / TOKENS_DIR
    if not tokens.is_dir():
        return []
    return sorted(p for p in tokens.iterdir() if p.is_dir() and not p.is_symlink())


def create_token(
    hsm_dir: Path,
    module_path: str,
    label: str,
    user_pin: Secret,
    *,
    ceremony: CeremonyRequest | None = None,
    restore: RestoreRequest | None = None,
) -> ProvisionReport:
    """Create and fully provision token `label` (with an archive key and
    its shares for a `ceremony`, or with the keys of an archive to
    `restore`), then move it into `hsm_dir/tokens` (see the module doc).
    `configure(hsm_dir)` first. A failure leaves no token in place (what it
    left in staging is discarded by the next call)."""
    discard_staging(hsm_dir)
    staging = hsm_dir / STAGING_DIR
    staged_tokens = staging / TOKENS_DIR
    conf = _write_conf(staging, staged_tokens)
    report = _create_in_child(
        module_path, label, user_pin, softhsm2_conf=conf, ceremony=ceremony, restore=restore
    )
    made = [p for p in staged_tokens.iterdir() if p.is_dir()]
    if len(made) != 1:
        raise HsmUnavailableError(f"SoftHSM2 left {len(made)} token directories in {staging}")
    live = hsm_dir / TOKENS_DIR
    live.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    # Same file system, one directory: the token appears whole or not at all.
    made[0].rename(live / made[0].name)
    _fsync_dir(live)
    discard_staging(hsm_dir)
    return report


def discard_staging(hsm_dir: Path) -> bool:
    """Remove what an interrupted `create_token` left; True if there was any."""
    staging = hsm_dir / STAGING_DIR
    if not staging.exists():
        return False
    # A staged token never held a key anything depends on (module doc), and
    # SoftHSM2 encrypts its private objects under the user PIN: plain removal.
    shutil.rmtree(staging)
    return True


def _write_conf(base: Path, token_dir: Path) -> Path:
    base.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    token_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    conf = base / CONF_NAME
    text = (
        f"directories.tokendir = {token_dir}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
    )
    with contextlib.suppress(FileNotFoundError):
        if conf.read_text() == text:
            return conf
    # Created 0600 from the first byte, then renamed over: never readable by
    # others, never half-written.
    tmp = base / f".{CONF_NAME}.tmp"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(conf)
    return conf


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _module_loaded() -> bool:
    # python-pkcs11 keeps one initialised module per process.
    from hsm_bridge import session

    return session.module_loaded()
