"""A cloudsign instance's data dir: first-start initialisation and reuse.

`<data_dir>/hsm` holds the SoftHSM2 token and the generated user PIN
(production points `hsm_module`/`hsm_pin_file` elsewhere), `<data_dir>/pki`
the CA certificates, `<data_dir>/chain` the embedded anvil's state,
`<data_dir>/cloudsign.db` the SQLite database unless `database_url` says
otherwise. `cloudsign init` and `cloudsign serve` both come through here
(`initialise`, `prepare_hsm`).

Modes. Every directory under the data dir is 0700 and every file 0600, with
no exception: the CA, OCSP and TSA certificates under `pki/` are public, but
the service publishes them over HTTP (`/pki/ca/*`), so no other local user
needs to read the files, and one rule is easier to check than a list of
exceptions. Files are not all ours: SoftHSM2 writes the token files (it
creates them 0700/0600 itself), SQLite the database and its `-wal`/`-shm`
files (which copy the database file's mode), anvil its state, and the CA,
status and audit code their PEM files, all through the process umask. So
this module sets the umask to 077 when it is *imported*: `cloudsign.app`
imports it, and the app's first cleanup context (the database) creates the
data dir and the SQLite file before `prepare_hsm` runs; `cloudsign init`
imports it before it reads its settings. Child processes (anvil, face
workers, the provisioning child) inherit the umask. A data dir made by an
older version, or by hand, with looser modes is tightened at every start
(`secure_data_dir`: group and other bits removed, each change logged at
INFO with its path and modes, and listed by `cloudsign init`) instead of
being refused. Tightening cannot take back a file descriptor another user
opened while the modes were loose: if a data dir was ever readable by
others, treat the user PIN as known and the token as exposed.

The SO PIN is never written anywhere. It is needed for two things only:
`C_InitToken` (and `C_InitPIN`, which sets the user PIN) and the
`CKA_TRUSTED` master key, which only the SO may create. Both happen once, in
one child process (`hsm_bridge.provision.create_token`) that generates the
SO PIN itself and exits; the service process never sees it. Every later
start provisions only what the user may (missing sealing and HMAC keys), so
nothing needs the SO again. Kept on disk next to the user PIN, the SO PIN
would let anyone who reads the data dir create a trusted key of their own
choosing and wrap every owner key out of the token with it; kept "sealed" it
would need a key that is itself on the same disk. What is lost: the user
PIN cannot be reset by the SO (SoftHSM2 never locks it, and it is random)
and a new trusted key cannot be added to this token; rotating the master key
means a new token. With a real HSM the SO credential belongs to its officers,
outside the service (`hsm_module` set: nothing here initialises anything).

A crash during initialisation: the token is built in a staging directory and
moved into `hsm/tokens` with one rename only once its master key exists
(`hsm_bridge.softhsm`), so a token without a master key is never in place;
an interrupted attempt is discarded at the next start and initialisation
starts over (with the same user PIN: `user.pin` is written first). A token
that is in place but has no master key was not made by this code; the start
fails and says so rather than destroying it.

Data dirs from before, with `hsm/so.pin`: at the next start that PIN is
used once more, to create the master key if it is missing, and then changed
by the SO to a random value nobody keeps (so copies of the file in backups
stop working); after that, and only after the master key is confirmed, the
file is overwritten with zeros, synced and unlinked. That overwrite is
best effort: on an in-place file system such as ext4 it replaces the data
blocks, but copy-on-write file systems (btrfs, ZFS), snapshots, SSD wear
levelling and backups can keep the old bytes; the rotation is what makes
them worthless. At the SoftHSM2 level, the token file keeps a blob derived
from the SO PIN by a salted, iterated hash (as for the user PIN), so the
token files allow offline guessing of the SO PIN; 192 random bits make that
infeasible. SoftHSM2 does not overwrite the files of destroyed objects or
the previous contents of rewritten ones either.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sqlalchemy.engine import make_url

from cloudsign.ca import CaProfile, CertificateAuthority, PkiUrls
from cloudsign.errors import ConfigurationError
from cloudsign.settings import CaSettings, Settings
from cloudsign.storage import Database
from hsm_bridge import HsmBridge, Secret, softhsm
from hsm_bridge.provision import CeremonyRequest, ProvisionReport, RestoreRequest, provision_keys

log = logging.getLogger(__name__)

DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600
UMASK: Final = 0o077
#: Where versions before the SO PIN was forgotten kept it.
LEGACY_SO_PIN_FILE: Final = "so.pin"
_SQLITE_SUFFIXES: Final = ("", "-wal", "-shm", "-journal")


def restrict_umask() -> None:
    """Add 077 to the process umask (never loosen one that is stricter)."""
    os.umask(os.umask(UMASK) | UMASK)


# At import, before anything of the instance exists (see the module doc).
restrict_umask()


@dataclass(frozen=True)
class HsmAccess:
    module: str
    token_label: str
    pin: Secret
    #: What `prepare_hsm` did, for the operator (no secrets).
    notes: tuple[str, ...] = ()


def secure_data_dir(settings: Settings) -> list[str]:
    """Create the data dir 0700 and take group and other access away from
    everything in it, and from the SQLite files and PIN file if they live
    elsewhere. Returns (and logs) one line per change: paths and modes only."""
    restrict_umask()
    data_dir = settings.data_dir
    data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    changes: list[str] = []
    _tighten(data_dir, changes)
    for root, dirs, files in os.walk(data_dir):
        for name in [*dirs, *files]:
            _tighten(Path(root) / name, changes)
    outside = [p for p in _sqlite_files(settings) if p.exists() and not p.is_relative_to(data_dir)]
    if settings.hsm_pin is None and settings.effective_pin_file.exists():
        pin_file = settings.effective_pin_file
        if not pin_file.is_relative_to(data_dir):
            outside.append(pin_file)
    for path in outside:
        try:
            _tighten(path, changes)
        except ConfigurationError as e:
            # A read-only secrets mount, say: not ours to change.
            log.warning("%s", e)
    return changes


def _tighten(path: Path, changes: list[str]) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        # The target may be anyone's; chmod would follow the link.
        log.warning("not changing the mode of symbolic link %s", path)
        return
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        want = DIR_MODE
    elif stat.S_ISREG(st.st_mode):
        # Owner read/write at most; a file made read-only stays read-only.
        want = mode & FILE_MODE
    else:
        return
    if mode == want:
        return
    try:
        path.chmod(want)
    except OSError as e:
        raise ConfigurationError(f"cannot restrict {path} to mode {want:04o}: {e.strerror}") from e
    line = f"{path}: mode {mode:04o} -> {want:04o}"
    log.info("tightened %s", line)
    changes.append(line)


def _sqlite_files(settings: Settings) -> list[Path]:
    url = settings.effective_database_url
    if not url.startswith("sqlite"):
        return []
    database = make_url(url).database
    if not database or database == ":memory:":
        return []
    return [Path(database + suffix) for suffix in _SQLITE_SUFFIXES]


def _write_secret_file(path: Path, value: str) -> None:
    """Write `value` 0600 from the first byte; whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "w") as f:
        f.write(value)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


def _shred(path: Path) -> None:
    """Overwrite with zeros, sync, unlink, sync the directory (best effort:
    see the module doc for what that does not reach)."""
    with path.open("r+b", buffering=0) as f:
        f.write(bytes(os.fstat(f.fileno()).st_size))
        os.fsync(f.fileno())
    path.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_secret(path: Path) -> Secret:
    return Secret(path.read_text().strip())


def _read_pin(settings: Settings) -> Secret:
    if settings.hsm_pin is not None:
        return settings.hsm_pin
    try:
        return _read_secret(settings.effective_pin_file)
    except OSError as e:
        raise ConfigurationError(
            f"HSM PIN not available: set CLOUDSIGN_HSM_PIN or hsm_pin_file ({e.strerror})"
        ) from e


def _pin_for_new_token(settings: Settings) -> Secret:
    """The configured PIN, the one an interrupted first start wrote, or a new one."""
    if settings.hsm_pin is None and not settings.effective_pin_file.exists():
        _write_secret_file(settings.effective_pin_file, secrets.token_urlsafe(24))
    return _read_pin(settings)


def prepare_hsm(settings: Settings) -> HsmAccess:
    """Make the token usable: for the embedded SoftHSM2, create and provision
    it on first start (the SO PIN made and dropped in a child process), and
    at later starts add any missing key the user may create."""
    secure_data_dir(settings)
    if not settings.uses_embedded_hsm:
        return HsmAccess(settings.hsm_module, settings.hsm_token_label, _read_pin(settings))
    hsm_dir = settings.hsm_dir
    label = settings.hsm_token_label
    softhsm.configure(hsm_dir)
    module = softhsm.find_module()
    # One start-up at a time looks at the token and creates or provisions it
    # (`serve --workers N` starts its processes together).
    with softhsm.token_setup():
        notes: list[str] = []
        if softhsm.discard_staging(hsm_dir):
            notes.append("discarded a token left unfinished by an interrupted initialisation")
        legacy_file = hsm_dir / LEGACY_SO_PIN_FILE
        remove_legacy = False
        if softhsm.token_directories(hsm_dir):
            pin = _read_pin(settings)
            legacy = _read_secret(legacy_file) if legacy_file.exists() else None
            # Raises if the token has no master key and no SO PIN can make one.
            report = provision_keys(module, label, pin, legacy_so_pin=legacy)
            if report.token_found:
                remove_legacy = bool(report.legacy_so_pin)
                notes += _created(report)
            else:
                # Never a second token beside existing ones: a new token is a
                # new master key, and every owner key wrapped under the old one
                # would be lost to the service.
                raise ConfigurationError(
                    f"{hsm_dir / softhsm.TOKENS_DIR} holds SoftHSM2 tokens but none labelled "
                    f"{label!r}: set hsm_token_label to the token's label, or move the "
                    "directories away to start on a new token (its keys are lost)"
                )
        else:
            pin = _pin_for_new_token(settings)
            notes += _create_token(hsm_dir, module, label, pin)
            # An SO PIN of an older version whose token was never created.
            remove_legacy = legacy_file.exists()
        if remove_legacy:
            _shred(legacy_file)
            notes.append(f"removed {legacy_file}: the SO PIN is no longer kept")
    for note in notes:
        log.info("%s", note)
    return HsmAccess(module, label, pin, tuple(notes))


def new_token(
    settings: Settings,
    *,
    ceremony: CeremonyRequest | None = None,
    restore: RestoreRequest | None = None,
) -> tuple[HsmAccess, ProvisionReport]:
    """A new embedded token for a key ceremony (with the archive key and its
    shares) or a restore (with an archive's keys); refuses a data dir that
    already has a token: both are for a new HSM, never over an existing one."""
    secure_data_dir(settings)
    if not settings.uses_embedded_hsm:
        raise ConfigurationError(
            "hsm_module is set: a ceremony or restore on that HSM is its own tooling's "
            "(see the README's production section); this command drives the embedded SoftHSM2"
        )
    hsm_dir = settings.hsm_dir
    label = settings.hsm_token_label
    softhsm.configure(hsm_dir)
    module = softhsm.find_module()
    with softhsm.token_setup():
        softhsm.discard_staging(hsm_dir)
        if softhsm.token_directories(hsm_dir):
            raise ConfigurationError(
                f"{hsm_dir / softhsm.TOKENS_DIR} already holds a token: a ceremony or a restore "
                "makes a new one, on a new machine or after the old directory was moved away"
            )
        pin = _pin_for_new_token(settings)
        log.info("creating SoftHSM2 token %r in %s", label, hsm_dir)
        report = softhsm.create_token(
            hsm_dir, module, label, pin, ceremony=ceremony, restore=restore
        )
    return HsmAccess(module, label, pin, tuple(_created(report))), report


def _create_token(hsm_dir: Path, module: str, label: str, pin: Secret) -> list[str]:
    log.info("initialising SoftHSM2 token %r in %s", label, hsm_dir)
    report = softhsm.create_token(hsm_dir, module, label, pin)
    return [f"created SoftHSM2 token {label!r} in {hsm_dir}", *_created(report)]


def _created(report: ProvisionReport) -> list[str]:
    lines = [f"created HSM keys: {', '.join(report.created)}"] if report.created else []
    if report.legacy_so_pin == "rotated":
        lines.append("changed the legacy SO PIN to a random value that is not kept")
    return lines


def ca_profile(settings: CaSettings) -> CaProfile:
    return CaProfile(
        name=settings.name,
        organisation=settings.organisation,
        algorithm=settings.key_algorithm,
        policy_oid=settings.policy_oid,
        validity_days=settings.validity_days,
        urls=PkiUrls(settings.public_url),
    )


#: Generates the features' long-lived HSM keys (`cloudsign.app.service_keys`;
#: the features are not imported here); returns the labels it generated.
ServiceKeyMaker = Callable[[HsmBridge, Settings], Awaitable[list[str]]]


async def initialise(settings: Settings, service_keys: ServiceKeyMaker | None = None) -> list[str]:
    """Idempotent first-start set-up; returns what was done, for the operator."""
    done = [f"tightened {line}" for line in secure_data_dir(settings)]
    access = prepare_hsm(settings)
    done += access.notes
    bridge = HsmBridge(access.module, access.token_label, access.pin)
    await bridge.start()
    try:
        if await CertificateAuthority.initialise(bridge, settings.pki_dir, ca_profile(settings.ca)):
            done.append(f"created root and issuing CA in {settings.pki_dir}")
        if service_keys is not None:
            # The services' long-lived keys too, before any process starts:
            # the processes of `serve --workers N` each finding none would
            # each generate one (and then every lookup finds two).
            made = await service_keys(bridge, settings)
            if made:
                done.append(f"generated service keys in the HSM: {', '.join(made)}")
    finally:
        await bridge.close()
    db = Database(settings.effective_database_url, immediate=True)
    try:
        await db.migrate()
        done.append(f"database migrated ({db.backend})")
    finally:
        await db.close()
    # Files SQLite and the CA just made follow the umask; this only reports
    # if something did not.
    done += [f"tightened {line}" for line in secure_data_dir(settings)]
    return done
