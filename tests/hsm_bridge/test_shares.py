"""The archive key's shares (hsm_bridge/shares.py) and the archive's own
checks that need no HSM (hsm_bridge/backup.py): any threshold of shares
gives the key back, nothing less or else does, and a share file says nothing
of the key or the passphrase."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hsm_bridge import shares as shares_module
from hsm_bridge.backup import BackupError, parse_archive
from hsm_bridge.secret import Secret
from hsm_bridge.shares import (
    CustodianShare,
    ShareError,
    ShareFile,
    combine_archive_key,
    kcv,
    split_archive_key,
)

NAMES = ("aigerim", "bolat", "dana", "erlan", "farida")


def _phrase(name: str) -> Secret:
    return Secret(f"a long passphrase of {name}")


def _split(key: bytes, ceremony: str = "ab" * 8) -> list[ShareFile]:
    return split_archive_key(key, [CustodianShare(n, _phrase(n)) for n in NAMES], 3, ceremony)


@pytest.fixture(scope="module")
def key_and_shares() -> tuple[bytes, list[ShareFile]]:
    key = os.urandom(32)
    return key, _split(key)


def test_any_three_of_five_give_the_key_back(key_and_shares: tuple[bytes, list[ShareFile]]) -> None:
    key, shares = key_and_shares
    for chosen in itertools.combinations(shares, 3):
        opened = [(s, _phrase(s.custodian)) for s in chosen]
        assert combine_archive_key(opened, kcv(key)) == key
    # More than the threshold is fine too.
    assert combine_archive_key([(s, _phrase(s.custodian)) for s in shares], kcv(key)) == key


def test_a_share_file_shows_neither_key_nor_share_nor_passphrase(
    key_and_shares: tuple[bytes, list[ShareFile]],
) -> None:
    key, shares = key_and_shares
    for share in shares:
        text = share.to_json()
        words = share.open(_phrase(share.custodian))
        assert words not in text
        assert key.hex() not in text and base64.b64encode(key).decode() not in text
        assert _phrase(share.custodian).reveal() not in text
        assert repr(share.sealed) not in repr(share) and repr(share.salt) not in repr(share)


def test_refusals(key_and_shares: tuple[bytes, list[ShareFile]]) -> None:
    key, shares = key_and_shares
    check = kcv(key)
    a, b, c, d, _ = shares

    def combine(*pairs: tuple[ShareFile, Secret]) -> bytes:
        return combine_archive_key(list(pairs), check)

    with pytest.raises(ShareError, match="needs 3"):
        combine((a, _phrase("aigerim")), (b, _phrase("bolat")))
    with pytest.raises(ShareError, match="twice"):
        combine((a, _phrase("aigerim")), (a, _phrase("aigerim")), (b, _phrase("bolat")))
    with pytest.raises(ShareError, match="does not open"):
        combine((a, _phrase("aigerim")), (b, _phrase("bolat")), (c, _phrase("bolat")))
    # A share renamed to another custodian, or with its index changed.
    for field, value in (("custodian", "erlan"), ("index", 4)):
        raw = json.loads(c.to_json())
        raw[field] = value
        renamed = ShareFile.from_json(json.dumps(raw))
        with pytest.raises(ShareError, match=r"does not open|twice"):
            combine((a, _phrase("aigerim")), (b, _phrase("bolat")), (renamed, _phrase("dana")))
    # Shares of another ceremony, alone or mixed in.
    other = _split(os.urandom(32), ceremony="cd" * 8)
    with pytest.raises(ShareError, match="different ceremonies"):
        combine((a, _phrase("aigerim")), (b, _phrase("bolat")), (other[2], _phrase("dana")))
    with pytest.raises(ShareError, match="another archive key"):
        combine(*[(s, _phrase(s.custodian)) for s in other[:3]])
    # The same ceremony id, another key (a forged set): the check value differs.
    forged = _split(os.urandom(32))
    with pytest.raises(ShareError, match="another archive key"):
        combine(*[(s, _phrase(s.custodian)) for s in forged[:3]])
    # More shares than needed, one of them wrong: refused, not outvoted.
    with pytest.raises(ShareError, match="does not open"):
        combine(
            (a, _phrase("aigerim")),
            (b, _phrase("bolat")),
            (c, _phrase("dana")),
            (d, _phrase("bolat")),
        )
    # A fourth share sealed by its own custodian around the words of another
    # split (a custodian can do that; no one else can): it opens, and does
    # not fit the others.
    words = other[4].open(_phrase("farida")).encode()
    aad = shares_module._aad(a.ceremony, "erlan", 3, a.key_check)
    nonce = os.urandom(12)
    misfit = dataclasses.replace(
        d,
        nonce=nonce,
        sealed=AESGCM(shares_module._derive(_phrase("erlan"), d.salt)).encrypt(nonce, words, aad),
    )
    with pytest.raises(ShareError, match=r"do not combine|does not fit"):
        combine(
            (a, _phrase("aigerim")),
            (b, _phrase("bolat")),
            (c, _phrase("dana")),
            (misfit, _phrase("erlan")),
        )


@pytest.mark.parametrize(
    ("names", "threshold", "why"),
    [
        (NAMES[:4], 3, "5 to 16 custodians"),
        (NAMES, 2, "threshold"),
        (NAMES, 5, "threshold"),
        (("a", "a", "b", "c", "d"), 3, "each custodian once"),
        ((*NAMES[:4], "bad/name"), 3, "custodian name"),
    ],
)
def test_a_ceremony_below_three_of_five_is_refused(
    names: tuple[str, ...], threshold: int, why: str
) -> None:
    with pytest.raises(ShareError, match=why):
        split_archive_key(
            os.urandom(32), [CustodianShare(n, _phrase(n)) for n in names], threshold, "ab" * 8
        )


def test_a_short_passphrase_is_refused() -> None:
    custodians = [CustodianShare(n, _phrase(n)) for n in NAMES[:4]]
    custodians.append(CustodianShare("farida", Secret("short")))
    with pytest.raises(ShareError, match="shorter"):
        split_archive_key(os.urandom(32), custodians, 3, "ab" * 8)


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"not json",
        b"[]",
        b'{"format": "something else"}',
        json.dumps({"format": "cloudsign-hsm-backup/1"}).encode(),
        json.dumps(
            {
                "format": "cloudsign-hsm-backup/1",
                "archive_id": "x",
                "created_at": "x",
                "token_label": "cloudsign",
                "key_check": "00",
                "ceremony": "00",
                "mac_key": "AA==",
                "mac": "zz",
                "files": {},
                "keys": [{"label": "k"}],
            }
        ).encode(),
        b"{" * 100_000,
        b" " * (5 * 1024 * 1024),
    ],
)
def test_garbage_archives_are_refused_with_a_reason(text: bytes) -> None:
    with pytest.raises(BackupError):
        parse_archive(text)


@pytest.mark.parametrize(
    "text", ["", "{}", '{"format": "cloudsign-archive-share/1"}', "x" * 1000, "[1]"]
)
def test_garbage_share_files_are_refused(text: str) -> None:
    with pytest.raises(ShareError):
        ShareFile.from_json(text)
