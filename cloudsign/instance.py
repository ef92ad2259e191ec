"""A cloudsign instance's data dir: first-start initialisation and reuse.

`<data_dir>/hsm` holds the SoftHSM2 token and its generated PINs (files of
mode 0600; production points `hsm_module`/`hsm_pin_file` elsewhere),
`<data_dir>/pki` the CA certificates, `<data_dir>/cloudsign.db` the SQLite
database unless `database_url` says otherwise.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cloudsign.ca import CaProfile, CertificateAuthority, PkiUrls
from cloudsign.errors import ConfigurationError
from cloudsign.settings import CaSettings, Settings
from cloudsign.storage import Database
from hsm_bridge import HsmBridge, Secret, softhsm
from hsm_bridge.provision import provision_keys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HsmAccess:
    module: str
    token_label: str
    pin: Secret


def _write_secret_file(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)


def _read_pin(settings: Settings) -> Secret:
    if settings.hsm_pin is not None:
        return settings.hsm_pin
    try:
        return Secret(settings.effective_pin_file.read_text().strip())
    except OSError as e:
        raise ConfigurationError(
            f"HSM PIN not available: set CLOUDSIGN_HSM_PIN or hsm_pin_file ({e.strerror})"
        ) from e


def prepare_hsm(settings: Settings) -> HsmAccess:
    """Make the token usable: for the embedded SoftHSM2, create it on first
    start with fresh random PINs, then provision the master and sealing keys."""
    if not settings.uses_embedded_hsm:
        return HsmAccess(settings.hsm_module, settings.hsm_token_label, _read_pin(settings))
    hsm_dir = settings.hsm_dir
    softhsm.configure(hsm_dir)
    module = softhsm.find_module()
    so_file = hsm_dir / "so.pin"
    if not softhsm.token_exists(hsm_dir, settings.hsm_token_label):
        if settings.hsm_pin is None and not settings.effective_pin_file.exists():
            _write_secret_file(settings.effective_pin_file, secrets.token_urlsafe(24))
        if not so_file.exists():
            _write_secret_file(so_file, secrets.token_urlsafe(24))
        log.info("initialising SoftHSM2 token %r in %s", settings.hsm_token_label, hsm_dir)
        softhsm.init_token(
            hsm_dir,
            settings.hsm_token_label,
            Secret(so_file.read_text().strip()),
            _read_pin(settings),
        )
    pin = _read_pin(settings)
    if so_file.exists():
        provision_keys(module, settings.hsm_token_label, Secret(so_file.read_text().strip()), pin)
    return HsmAccess(module, settings.hsm_token_label, pin)


def ca_profile(settings: CaSettings) -> CaProfile:
    return CaProfile(
        name=settings.name,
        organisation=settings.organisation,
        algorithm=settings.key_algorithm,
        policy_oid=settings.policy_oid,
        validity_days=settings.validity_days,
        urls=PkiUrls(settings.public_url),
    )


async def initialise(settings: Settings) -> list[str]:
    """Idempotent first-start set-up; returns what was done, for the operator."""
    done: list[str] = []
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    access = prepare_hsm(settings)
    bridge = HsmBridge(access.module, access.token_label, access.pin)
    await bridge.start()
    try:
        if await CertificateAuthority.initialise(bridge, settings.pki_dir, ca_profile(settings.ca)):
            done.append(f"created root and issuing CA in {settings.pki_dir}")
    finally:
        await bridge.close()
    db = Database(settings.effective_database_url)
    try:
        await db.migrate()
        done.append(f"database migrated ({db.backend})")
    finally:
        await db.close()
    return done
