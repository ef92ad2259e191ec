"""Nothing in the data dir or the database holds a private key, the key
password, K_pw or a TOTP seed in the clear."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cloudsign.appkeys import DATABASE, SETTINGS
from cloudsign.storage.tables import all_tables
from device_client.client import CloudsignClient
from device_client.device import derive_password_key
from tests.helpers import enrolled, new_client, person

#: DER openings of unencrypted private keys: SEC1 ECPrivateKey (P-256) and
#: PKCS#8 PrivateKeyInfo for EC and RSA.
PLAIN_KEY_MARKERS = {
    "sec1-p256": bytes.fromhex("307702010104 20".replace(" ", "")),
    "pkcs8-ec": bytes.fromhex("020100301306072a8648ce3d020106082a8648ce3d030107"),
    "pkcs8-rsa": bytes.fromhex("020100300d06092a864886f70d0101010500"),
}


async def _database_bytes(app: Any) -> bytes:
    chunks: list[bytes] = []
    async with app[DATABASE].read() as conn:
        for table in all_tables().sorted_tables:
            for row in (await conn.execute(select(table))).all():
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        chunks.append(bytes(value))
                    elif value is not None:
                        chunks.append(str(value).encode())
    return b"\x00".join(chunks)


def _files_bytes(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in root.rglob("*") if p.is_file()]


async def test_no_secret_in_clear_in_data_dir_or_database(
    client: CloudsignClient, app: Any
) -> None:
    password = "Qazaqstan-2026-secret!"
    identity = person()
    totp, cred = await enrolled(client, password=password, identity=identity)
    await enrolled(
        new_client(client.base_url, client.session), password=password, algorithm="rsa-2048"
    )
    params = await client.key_params()
    kpw = derive_password_key(password, params)
    seed_b32 = totp.totp.secret
    needles = {
        "password": password.encode(),
        "password-utf16": password.encode("utf-16-le"),
        "K_pw": kpw,
        "K_pw-b64": base64.b64encode(kpw),
        "totp-seed": seed_b32.encode(),
        "totp-seed-raw": base64.b32decode(seed_b32),
        **PLAIN_KEY_MARKERS,
    }
    haystacks = [("database", await _database_bytes(app))]
    haystacks += [(str(p), data) for p, data in _files_bytes(app[SETTINGS].data_dir)]
    assert len(haystacks) > 5  # token objects, sqlite files, PKI files were all read
    found = [(where, name) for where, data in haystacks for name, n in needles.items() if n in data]
    assert found == []
    # The only stored form of the owner key is the sealed blob.
    assert cred["credential_id"]
