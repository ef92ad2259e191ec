"""What `cloudsign ceremony` and `cloudsign backup` refuse before they touch
an HSM or write a file (the drill, test_backup_drill.py, covers the
refusals that need the HSM: shares, passphrases, the archive's MAC)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cloudsign.backup import Custodian, create_backup, restore_backup, run_ceremony
from cloudsign.errors import ConfigurationError
from cloudsign.settings import Settings, load_settings
from hsm_bridge.backup import BackupError
from hsm_bridge.secret import Secret
from hsm_bridge.shares import ShareError

NAMES = ("aigerim", "bolat", "dana", "erlan", "farida")


@pytest.fixture
def fresh(tmp_path: Path) -> Settings:
    return load_settings(env={}, data_dir=tmp_path / "data")


def _custodians(tmp_path: Path, names: tuple[str, ...] = NAMES) -> list[Custodian]:
    out = []
    for name in names:
        medium = tmp_path / f"medium-{name}"
        medium.mkdir(exist_ok=True)
        out.append(Custodian(name, medium / "share.json", Secret(f"passphrase of {name}!")))
    return out


async def _no_keys(*_: object) -> list[str]:
    raise AssertionError("the ceremony went on to make keys")


async def _ceremony(settings: Settings, custodians: list[Custodian], backup: Path) -> None:
    await run_ceremony(
        settings,
        custodians,
        threshold=3,
        backup_out=backup,
        actor="operator:cli:test",
        service_keys=_no_keys,
    )


def _nothing_written(settings: Settings) -> None:
    assert not (settings.hsm_dir / "tokens").exists()
    assert not (settings.data_dir / "ceremony").exists()


async def test_a_ceremony_refuses_before_it_makes_anything(fresh: Settings, tmp_path: Path) -> None:
    backup = tmp_path / "backup.json"
    with pytest.raises(ShareError, match="5 to 16 custodians"):
        await _ceremony(fresh, _custodians(tmp_path, NAMES[:4]), backup)
    # Two custodians' shares on one medium.
    crowded = _custodians(tmp_path)
    crowded[1] = Custodian("bolat", crowded[0].share_path.parent / "bolat.json", Secret("x" * 20))
    with pytest.raises(ConfigurationError, match="their own medium"):
        await _ceremony(fresh, crowded, backup)
    custodians = _custodians(tmp_path)
    custodians[2].share_path.write_text("an earlier share")
    with pytest.raises(ConfigurationError, match="not overwritten"):
        await _ceremony(fresh, custodians, backup)
    custodians[2].share_path.unlink()
    backup.write_text("an earlier archive")
    with pytest.raises(ConfigurationError, match="not overwritten"):
        await _ceremony(fresh, custodians, backup)
    backup.unlink()
    fresh.pki_dir.mkdir(parents=True)
    (fresh.pki_dir / "root.pem").write_text("another CA")
    with pytest.raises(ConfigurationError, match="already holds CA certificates"):
        await _ceremony(fresh, custodians, backup)
    _nothing_written(fresh)


async def test_no_backup_of_a_token_without_an_archive_key(fresh: Settings, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not by `cloudsign ceremony`"):
        await create_backup(fresh, tmp_path / "backup.json", actor="operator:cli:test")
    assert not (tmp_path / "backup.json").exists()


@pytest.mark.parametrize(
    ("archive", "error", "why"),
    [
        (b"", BackupError, "not readable"),
        (b"\x00\xff" * 10, BackupError, "not readable"),
        (b'{"format": "cloudsign-hsm-backup/0"}', BackupError, "not an HSM archive"),
        (b"[" * 50_000, BackupError, "not readable"),
        (b" " * (4 * 1024 * 1024 + 1), ConfigurationError, "larger than any"),
    ],
)
async def test_a_restore_refuses_an_unreadable_archive(
    fresh: Settings, tmp_path: Path, archive: bytes, error: type[Exception], why: str
) -> None:
    path = tmp_path / "archive.json"
    path.write_bytes(archive)
    with pytest.raises(error, match=why):
        await restore_backup(fresh, path, [], actor="operator:cli:test")
    _nothing_written(fresh)


def _archive(token_label: str = "someone-else") -> dict[str, Any]:
    """A well-formed archive (its MAC is not checked before the HSM)."""
    return {
        "format": "cloudsign-hsm-backup/1",
        "archive_id": "a" * 32,
        "created_at": "2026-12-04T00:00:00+00:00",
        "token_label": "someone-else",
        "key_check": "00" * 8,
        "ceremony": "00" * 8,
        "keys": [
            {
                "label": "cloudsign-master",
                "id": "",
                "class": "secret",
                "key_type": "AES",
                "flags": {"WRAP": True, "UNWRAP": True},
                "trusted": True,
                "unwrap_template": "master",
                "wrapped": "AAAA",
                "wrapping": "C_WrapKey/CKM_AES_KEY_WRAP_PAD",
            }
        ],
        "files": {"pki/root.pem": "the archive's root"},
        "mac_key": "AAAA",
        "mac": "00",
    }


def _key(label: str, **over: Any) -> dict[str, Any]:
    return {
        "label": label,
        "id": "",
        "class": "secret",
        "key_type": "AES",
        "flags": {"ENCRYPT": True, "DECRYPT": True},
        "trusted": False,
        "wrapped": "AAAA",
        "wrapping": "C_WrapKey/CKM_AES_KEY_WRAP_PAD",
        **over,
    }


async def test_a_restore_refuses_another_token_or_another_ca(
    fresh: Settings, tmp_path: Path
) -> None:
    doc = _archive()
    path = tmp_path / "archive.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigurationError, match="archive is of token 'someone-else'"):
        await restore_backup(fresh, path, [], actor="operator:cli:test")
    doc["token_label"] = fresh.hsm_token_label
    path.write_text(json.dumps(doc))
    fresh.pki_dir.mkdir(parents=True)
    (fresh.pki_dir / "root.pem").write_text("this data dir's own root")
    with pytest.raises(ConfigurationError, match="another CA"):
        await restore_backup(fresh, path, [], actor="operator:cli:test")
    doc["files"] = {"../escape.pem": "x"}
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigurationError, match="outside pki/"):
        await restore_backup(fresh, path, [], actor="operator:cli:test")
    _nothing_written(fresh)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        # A key of one's own, made trusted, wrapping, or under no template.
        (lambda keys: keys.append(_key("mine", trusted=True)), "a role no restore grants"),
        (
            lambda keys: keys.append(_key("mine", flags={"UNWRAP": True})),
            "a role no restore grants",
        ),
        (lambda keys: keys.append(_key("mine", flags={"WRAP": True})), "a role no restore grants"),
        (
            lambda keys: keys.append(_key("mine", unwrap_template="retired")),
            "a role no restore grants",
        ),
        (lambda keys: keys[0].pop("unwrap_template"), "a role no restore grants"),
        (lambda keys: keys[0].update(trusted=False), "a role no restore grants"),
        (
            lambda keys: keys.append(
                _key("cloudsign-master-retired-x", unwrap_template="retired", flags={"WRAP": True})
            ),
            "a role no restore grants",
        ),
        (lambda keys: keys.append(dict(keys[0])), "twice"),
        (lambda keys: keys.pop(0) and keys.append(_key("other")), "exactly one master key"),
    ],
)
async def test_an_archive_cannot_grant_trust_or_wrapping(
    fresh: Settings, tmp_path: Path, change: Any, why: str
) -> None:
    """What becomes trusted or able to wrap follows fixed rules: a holder of
    the user PIN can make a validly MACed archive around keys of their own
    (the live token's archive key wraps for them), and it must not give
    those keys a role."""
    doc = _archive(fresh.hsm_token_label)
    change(doc["keys"])
    path = tmp_path / "archive.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(BackupError, match=why):
        await restore_backup(fresh, path, [], actor="operator:cli:test", unrecorded=True)
    _nothing_written(fresh)
