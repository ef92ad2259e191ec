"""HSM backup, restore and the key ceremony, for the centre's officers on the
server (`cloudsign backup`, `cloudsign ceremony`; docs/backup.md).

* `run_ceremony`: a new token whose archive key is split among the
  custodians (3 of 5 at least), the CA and service keys, the first backup,
  and a transcript signed by the new root CA key.
* `create_backup`: an archive of the token (`hsm_bridge.backup`) with the
  CA certificates, written 0600 and never over an existing file.
* `restore_backup`: a new token from an archive and any threshold of the
  custodians' shares, the CA certificates back in `pki/`, optionally a
  public notice.

Each writes its audit events (`key.ceremony`, `backup.share`,
`backup.create`, `backup.restore`) into the database the service uses, so
they are sequenced and anchored like every other event. No event, file or
line printed holds a share, a passphrase or a key.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from asn1crypto import pem
from sqlalchemy import select

from cloudsign.audit import NOTE_KEY_LABEL
from cloudsign.ca import ROOT_LABEL, CertificateAuthority
from cloudsign.clock import Clock, utc_now
from cloudsign.errors import ConfigurationError
from cloudsign.events import EventType, NewEvent, append_events
from cloudsign.instance import ServiceKeyMaker, initialise, new_token, prepare_hsm
from cloudsign.settings import Settings
from cloudsign.status import NoticeService
from cloudsign.storage import Database
from cloudsign.storage.schema import events
from hsm_bridge import HASHES, HsmBridge, KeyAlgorithm, Secret, SignatureScheme
from hsm_bridge.backup import (
    ARCHIVE_RECORD_FILE,
    MAX_ARCHIVE_BYTES,
    SOFTWARE_WRAPPED,
    archive_digest,
    export_token,
    parse_archive,
    public_keys,
)
from hsm_bridge.provision import CeremonyRequest, RestoreRequest
from hsm_bridge.shares import CustodianShare, ShareFile, check_custodians

__all__ = [
    "Custodian",
    "create_backup",
    "restore_backup",
    "run_ceremony",
]

FILE_MODE: Final = 0o600
MAX_SHARE_BYTES: Final = 64 * 1024
CEREMONY_DIR: Final = "ceremony"
TRANSCRIPT_FORMAT: Final = "cloudsign-key-ceremony/1"
_PKI_NAME = re.compile(r"pki/[a-z0-9][a-z0-9_.-]{0,63}\.pem")


@dataclass(frozen=True)
class Custodian:
    """A custodian at the ceremony: where their share goes (their own
    medium) and the passphrase that seals it."""

    name: str
    share_path: Path
    passphrase: Secret = field(repr=False)


# -- files ------------------------------------------------------------------------


def _write_new(path: Path, text: str) -> None:
    """Create `path` 0600 from the first byte; never overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError as e:
        raise ConfigurationError(f"{path} exists; it is not overwritten") from e
    except OSError as e:
        raise ConfigurationError(f"cannot create {path}: {e.strerror}") from e
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _read_capped(path: Path, limit: int, what: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise ConfigurationError(f"cannot read the {what} {path}: {e.strerror}") from e
    if len(data) > limit:
        raise ConfigurationError(f"{path} is larger than any {what} this service writes")
    return data


def _record_path(settings: Settings) -> Path:
    return settings.hsm_dir / ARCHIVE_RECORD_FILE


def _read_record(settings: Settings) -> dict[str, Any]:
    path = _record_path(settings)
    try:
        record: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ConfigurationError(
            f"no archive key record ({path}): this token was made by `cloudsign init`, not "
            "by `cloudsign ceremony`, and has no archive key to back it up under"
        ) from e
    except (OSError, ValueError) as e:
        raise ConfigurationError(f"the archive key record {path} is not readable") from e
    return record


def _check_record_free(settings: Settings, key_check: str | None) -> None:
    """Before a new token: no archive key record beside it, or (a restore)
    one of the same archive key, left behind with a lost token."""
    path = _record_path(settings)
    if not path.exists():
        return
    try:
        same = key_check is not None and json.loads(path.read_text())["key_check"] == key_check
    except (OSError, ValueError, KeyError, TypeError):
        same = False
    if not same:
        raise ConfigurationError(
            f"{path} is the record of another archive key: move it away with the old token"
        )


def _check_ceremony_paths(settings: Settings, outputs: list[Path]) -> None:
    """A ceremony writes only new files, on a data dir without a CA."""
    if any(p.exists() for p in CertificateAuthority.files(settings.pki_dir)):
        raise ConfigurationError(
            f"{settings.pki_dir} already holds CA certificates: a ceremony starts a new CA, "
            "on a new data dir"
        )
    for path in outputs:
        if path.exists():
            raise ConfigurationError(f"{path} exists; it is not overwritten")
        if not path.parent.is_dir():
            raise ConfigurationError(f"{path.parent} is not a directory")


def _write_record(settings: Settings, record: dict[str, Any]) -> None:
    """The archive key record, replaced in one rename (0600 from the start)."""
    path = _record_path(settings)
    staged = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    _write_new(staged, json.dumps(record, indent=1))
    staged.replace(path)


def _pki_files(settings: Settings) -> dict[str, str]:
    pki = settings.pki_dir
    if not pki.is_dir():
        return {}
    return {f"pki/{p.name}": p.read_text() for p in sorted(pki.glob("*.pem")) if p.is_file()}


def _sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


async def _append(settings: Settings, new: Sequence[NewEvent]) -> None:
    db = Database(settings.effective_database_url, immediate=True)
    try:
        await db.migrate()
        async with db.transaction() as conn:
            await append_events(conn, new)
    finally:
        await db.close()


# -- backup -----------------------------------------------------------------------


async def create_backup(
    settings: Settings, out: Path, *, actor: str, clock: Clock = utc_now
) -> dict[str, Any]:
    """Write an archive of the token to `out` and log `backup.create`."""
    record = await asyncio.to_thread(_read_record, settings)
    if await asyncio.to_thread(out.exists):
        raise ConfigurationError(f"{out} exists; it is not overwritten")
    files = await asyncio.to_thread(_pki_files, settings)
    access = await asyncio.to_thread(prepare_hsm, settings)
    bridge = HsmBridge(access.module, access.token_label, access.pin)
    now = clock()
    await bridge.start()
    try:
        exported = await bridge.run_with_session(
            lambda s: export_token(
                s,
                token_label=access.token_label,
                created_at=now.isoformat(),
                archive_record=record,
                files=files,
            )
        )
    finally:
        await bridge.close()
    document = exported.document
    digest = archive_digest(document)
    staged = out.with_name(f".{out.name}.{secrets.token_hex(4)}.partial")
    await asyncio.to_thread(_write_new, staged, json.dumps(document, indent=1))
    try:
        await _append(
            settings,
            [
                NewEvent(
                    EventType.BACKUP_CREATE,
                    at=now,
                    data={
                        "archive_id": document["archive_id"],
                        "sha256": digest,
                        "ceremony": document["ceremony"],
                        "key_check": document["key_check"],
                        "keys": len(exported.labels),
                        "files": len(files),
                        "actor": actor,
                    },
                )
            ],
        )
        try:
            await asyncio.to_thread(os.link, staged, out)
        except FileExistsError as e:
            raise ConfigurationError(f"{out} appeared meanwhile; it is not overwritten") from e
    finally:
        await asyncio.to_thread(staged.unlink, missing_ok=True)
    return {
        "archive": str(out),
        "archive_id": document["archive_id"],
        "sha256": digest,
        "keys": list(exported.labels),
        "files": sorted(files),
    }


# -- restore ----------------------------------------------------------------------


async def restore_backup(
    settings: Settings,
    archive_path: Path,
    shares: Sequence[tuple[Path, Secret]],
    *,
    actor: str,
    publish_notice: bool = False,
    new_master: bool = False,
    unrecorded: bool = False,
    clock: Clock = utc_now,
) -> dict[str, Any]:
    """A new token from the archive and the custodians' shares; the CA
    certificates back in `pki/`; `backup.restore` logged (and a notice
    published if asked). Every refusal comes before anything is written.
    `new_master`: rotate the master key on the way (`hsm_bridge.custody`).

    The archive must be one this instance's `backup create` recorded (a
    `backup.create` event with its digest, in the audit log): its MAC is
    made under the archive key, which a holder of the user PIN may use on
    the live token, so the MAC alone shows the archive was not altered in
    storage, not that the centre made it. `unrecorded` restores an archive
    the database does not know (a database older than the archive, or lost),
    after the officers checked it otherwise; the event says so."""
    text = await asyncio.to_thread(_read_capped, archive_path, MAX_ARCHIVE_BYTES, "HSM archive")
    document = parse_archive(text)
    if document["token_label"] != settings.hsm_token_label:
        raise ConfigurationError(
            f"the archive is of token {document['token_label']!r}; this instance uses "
            f"{settings.hsm_token_label!r} (hsm_token_label)"
        )
    opened = []
    for path, passphrase in shares:
        raw = await asyncio.to_thread(_read_capped, path, MAX_SHARE_BYTES, "share file")
        opened.append((ShareFile.from_json(raw), passphrase))
    files = await asyncio.to_thread(_files_to_restore, settings, document["files"])
    await asyncio.to_thread(_check_record_free, settings, document["key_check"])
    digest = archive_digest(document)
    recorded = await _recorded(settings, digest)
    if not recorded and not unrecorded:
        raise ConfigurationError(
            f"no backup.create event in this database records the archive (sha256 {digest}): "
            "it was not made by this instance's `backup create`, or the database is older "
            "than the archive; check it with the officers, then restore with "
            "--unrecorded-archive"
        )
    access, report = await asyncio.to_thread(
        new_token, settings, restore=RestoreRequest(document, opened, new_master=new_master)
    )
    await asyncio.to_thread(_put_files, settings, files)
    record = {
        "ceremony": document["ceremony"],
        "key_check": document["key_check"],
        "keys": {
            e["label"]: {"wrapped": e["wrapped"]}
            for e in document["keys"]
            if e["wrapping"] == SOFTWARE_WRAPPED
        },
    }
    await asyncio.to_thread(_write_record, settings, record)
    now = clock()
    custodians = sorted(share.custodian for share, _ in opened)
    await _append(
        settings,
        [
            NewEvent(
                EventType.BACKUP_RESTORE,
                at=now,
                data={
                    "archive_id": document["archive_id"],
                    "sha256": digest,
                    "ceremony": document["ceremony"],
                    "archive_created_at": document["created_at"],
                    "custodians": custodians,
                    "keys": len(report.created),
                    "new_master": new_master,
                    "recorded": recorded,
                    "actor": actor,
                },
            )
        ],
    )
    notice_id = None
    if publish_notice:
        notice_id = await _publish_restore_notice(settings, document, custodians, actor)
    return {
        "token": access.token_label,
        "archive_id": document["archive_id"],
        "sha256": digest,
        "keys": list(report.created),
        "files": sorted(str(p.relative_to(settings.data_dir)) for p in files),
        "custodians": custodians,
        "notice": notice_id,
    }


async def _recorded(settings: Settings, digest: str) -> bool:
    """Whether a `backup.create` event of this database names `digest`."""
    db = Database(settings.effective_database_url, immediate=True)
    try:
        await db.migrate()
        async with db.read() as conn:
            rows = (
                await conn.execute(
                    select(events.c.data).where(
                        events.c.event_type == EventType.BACKUP_CREATE.value
                    )
                )
            ).all()
    finally:
        await db.close()
    for (data,) in rows:
        if isinstance(data, str):
            data = json.loads(data)
        if isinstance(data, dict) and data.get("sha256") == digest:
            return True
    return False


def _files_to_restore(settings: Settings, files: dict[str, str]) -> dict[Path, str]:
    """The archive's files by their place in the data dir; refuses a name
    outside `pki/` and a file that exists with other contents."""
    out: dict[Path, str] = {}
    for name, text in files.items():
        if not _PKI_NAME.fullmatch(name):
            raise ConfigurationError(f"the archive names a file outside pki/: {name[:80]!r}")
        path = settings.data_dir / name
        if path.exists() and path.read_text() != text:
            raise ConfigurationError(
                f"{path} exists with other contents than the archive's: this data dir belongs "
                "to another CA; restore into the data dir of the instance the archive was made of"
            )
        out[path] = text
    return out


def _put_files(settings: Settings, files: dict[Path, str]) -> None:
    settings.pki_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path, text in files.items():
        if not path.exists():
            _write_new(path, text)


async def _publish_restore_notice(
    settings: Settings, document: dict[str, Any], custodians: list[str], actor: str
) -> str:
    db = Database(settings.effective_database_url, immediate=True)
    try:
        await db.migrate()
        notice = await NoticeService(db).publish(
            title="The certification centre's HSM was restored from its backup",
            summary=(
                f"The HSM keys were restored from the archive {document['archive_id']} made "
                f"{document['created_at']}, by {len(custodians)} of the archive key's custodians "
                f"({', '.join(custodians)}). The CA, OCSP, TSA and audit-log keys and "
                "certificates are unchanged."
            ),
            measures=(
                "No key was exposed: keys left the old HSM only wrapped under the archive key, "
                "whose shares the custodians hold. Certificates stay valid; the audit log "
                "continues with the same key."
            ),
            actor=actor,
        )
    finally:
        await db.close()
    return notice.id


# -- ceremony ---------------------------------------------------------------------


async def run_ceremony(
    settings: Settings,
    custodians: Sequence[Custodian],
    *,
    threshold: int,
    backup_out: Path,
    actor: str,
    service_keys: ServiceKeyMaker,
    clock: Clock = utc_now,
) -> dict[str, Any]:
    """The first set-up of the instance's HSM with its custodians present;
    returns the transcript (also written, with its signature, under
    `<data_dir>/ceremony/`)."""
    check_custodians([c.name for c in custodians], threshold)
    paths = [c.share_path.resolve() for c in custodians]
    if len(set(paths)) != len(paths) or len({p.parent for p in paths}) != len(paths):
        raise ConfigurationError(
            "each custodian's share goes to their own medium: one directory per custodian"
        )
    await asyncio.to_thread(_check_ceremony_paths, settings, [*paths, backup_out])
    started = clock()
    ceremony_id = secrets.token_hex(8)
    request = CeremonyRequest(
        ceremony_id,
        threshold,
        [CustodianShare(c.name, c.passphrase) for c in custodians],
        software_keys=[(NOTE_KEY_LABEL, KeyAlgorithm.ED25519.value)],
    )
    await asyncio.to_thread(_check_record_free, settings, None)
    access, report = await asyncio.to_thread(new_token, settings, ceremony=request)
    details = report.details
    record = {
        "ceremony": ceremony_id,
        "key_check": details["key_check"],
        "keys": {label: {"wrapped": k["wrapped"]} for label, k in details["keys"].items()},
    }
    await asyncio.to_thread(_write_record, settings, record)
    issued = []
    for custodian, path, text in zip(custodians, paths, details["shares"], strict=True):
        share = ShareFile.from_json(text)
        await asyncio.to_thread(_write_new, path, text)
        issued.append(
            {
                "custodian": custodian.name,
                "index": share.index,
                "file": str(path),
                "sha256": _sha256(text),
            }
        )
    done = await initialise(settings, service_keys)
    backup = await create_backup(settings, backup_out, actor=actor, clock=clock)
    text, signature = await _transcript(
        settings,
        access.token_label,
        ceremony_id,
        started_at=started.isoformat(),
        finished_at=clock().isoformat(),
        key_check=str(details["key_check"]),
        threshold=threshold,
        issued=issued,
        backup=backup,
        actor=actor,
    )
    folder = settings.data_dir / CEREMONY_DIR
    await asyncio.to_thread(folder.mkdir, 0o700, True, True)
    transcript_path = folder / f"{ceremony_id}.json"
    await asyncio.to_thread(_write_new, transcript_path, text)
    await asyncio.to_thread(
        _write_new, folder / f"{ceremony_id}.sig.b64", base64.b64encode(signature).decode() + "\n"
    )
    now = clock()
    await _append(
        settings,
        [
            NewEvent(
                EventType.KEY_CEREMONY,
                at=now,
                data={
                    "ceremony": ceremony_id,
                    "key_check": details["key_check"],
                    "threshold": threshold,
                    "custodians": len(custodians),
                    "transcript_sha256": _sha256(text),
                    "actor": actor,
                },
            ),
            *[
                NewEvent(
                    EventType.BACKUP_SHARE,
                    at=now,
                    data={
                        "ceremony": ceremony_id,
                        "custodian": share["custodian"],
                        "index": share["index"],
                        "sha256": share["sha256"],
                        "actor": actor,
                    },
                )
                for share in issued
            ],
        ],
    )
    return {
        "ceremony": ceremony_id,
        "transcript": str(transcript_path),
        "signature": str(folder / f"{ceremony_id}.sig.b64"),
        "backup": backup["archive"],
        "shares": [s["file"] for s in issued],
        "done": done,
    }


async def _transcript(
    settings: Settings,
    token_label: str,
    ceremony_id: str,
    *,
    started_at: str,
    finished_at: str,
    key_check: str,
    threshold: int,
    issued: list[dict[str, Any]],
    backup: dict[str, Any],
    actor: str,
) -> tuple[str, bytes]:
    """What was made and who holds what, and its signature by the root CA
    key: DER ECDSA (or RSA PKCS#1 v1.5) over SHA-256 of the file, checked
    with `openssl dgst -sha256 -verify root-public.pem -signature`."""
    access = await asyncio.to_thread(prepare_hsm, settings)
    bridge = HsmBridge(access.module, access.token_label, access.pin)
    await bridge.start()
    try:
        spkis = await bridge.run_with_session(public_keys)
        certificates = {
            name: _sha256(_der_of_pem(text))
            for name, text in (await asyncio.to_thread(_pki_files, settings)).items()
        }
        transcript = {
            "format": TRANSCRIPT_FORMAT,
            "ceremony": ceremony_id,
            "started_at": started_at,
            "finished_at": finished_at,
            "officer": actor,
            "token_label": token_label,
            "archive_key": {
                "key_check": key_check,
                "threshold": threshold,
                "shares": len(issued),
                "scheme": "SLIP-0039 (shamir-mnemonic), each share sealed by Argon2id+AES-GCM",
            },
            "custodians": issued,
            "keys_spki_sha256": {label: _sha256(der) for label, der in sorted(spkis.items())},
            "certificates_sha256": certificates,
            "first_backup": {
                "archive_id": backup["archive_id"],
                "sha256": backup["sha256"],
                "file": backup["archive"],
            },
            "signed_by": {"key": ROOT_LABEL, "hash": "sha256"},
        }
        text = json.dumps(transcript, indent=1, sort_keys=True) + "\n"
        algorithm = settings.ca.key_algorithm
        scheme = SignatureScheme.ECDSA if algorithm.is_ec else SignatureScheme.RSA_PKCS1V15
        signature = await bridge.sign_digest(
            ROOT_LABEL,
            algorithm,
            hashlib.sha256(text.encode()).digest(),
            HASHES["sha256"],
            scheme,
        )
    finally:
        await bridge.close()
    return text, signature


def _der_of_pem(text: str) -> bytes:
    _, _, der = pem.unarmor(text.encode())
    return bytes(der)
