"""A SAD issued by one process signs on another: a second, real `cloudsign
serve` process on the same PostgreSQL database and HSM token as the test
server continues what the test server authorised, and each hash still
signs once, whichever process is asked."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from pkcs11 import Attribute
from sqlalchemy import func, select

from cloudsign.appkeys import ANCHORER, DATABASE, HSM, SETTINGS
from cloudsign.signing.tables import sads
from cloudsign.storage.schema import events
from device_client.client import ApiError, CloudsignClient
from hsm_bridge.activation import SAD_KEY_LABEL
from tests.helpers import enrolled, free_port
from tests.serving import serve, stop, wait_ready
from tests.signing.test_signing import _sad


@pytest.fixture(scope="module")
def second_process(app: Any, backend: str) -> Iterator[str]:
    if backend != "postgresql":
        pytest.skip("SQLite is the single-process embedded default")
    settings = app[SETTINGS]
    port = free_port()
    proc = serve(
        settings.data_dir,
        port,
        CLOUDSIGN_DATABASE_URL=settings.effective_database_url,
        # Connected lazily, and only by the leader (the test server, which
        # started first, holds the lock).
        CLOUDSIGN_CHAIN_RPC_URL=app[ANCHORER].rpc_url or "http://127.0.0.1:9",
        CLOUDSIGN_FACE_WORKERS="1",
    )
    try:
        wait_ready(proc, port)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


async def _all_sad_keys(app: Any) -> list[bytes]:
    """The CKA_IDs of every SAD key on the token."""

    def find(session: Any) -> list[bytes]:
        objects = session.get_objects({Attribute.LABEL: SAD_KEY_LABEL})
        return [bytes(o[Attribute.ID]) for o in objects]

    return list(await app[HSM].run_with_session(find))


async def _sad_keys(app: Any, credential_id: str) -> list[bytes]:
    """The CKA_IDs of the HSM keys of the credential's live SADs."""
    async with app[DATABASE].read() as conn:
        ids = (
            await conn.execute(select(sads.c.id).where(sads.c.credential_id == credential_id))
        ).scalars()
        prefixes = [i.encode() + b"|" for i in ids]
    return [k for k in await _all_sad_keys(app) if any(k.startswith(p) for p in prefixes)]


def _verify(cert_pem: str, digest: bytes, signature: bytes) -> None:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))


@pytest.mark.slow
async def test_authorised_here_signed_there_and_each_hash_once(
    client: CloudsignClient, app: Any, second_process: str
) -> None:
    totp, cred = await enrolled(client)
    cred_id = cred["credential_id"]
    digests = [hashlib.sha256(os.urandom(16)).digest() for _ in range(3)]
    sad = await _sad(client, totp, cred, digests)
    there = dataclasses.replace(client, base_url=second_process)

    # The other process signs the first hash; both refuse it a second time.
    (sig,) = await there.sign_hashes(cred_id, sad, [digests[0]])
    _verify(cred["certificate"], digests[0], sig)
    for anywhere in (client, there):
        with pytest.raises(ApiError) as err:
            await anywhere.sign_hashes(cred_id, sad, [digests[0]])
        assert err.value.code == "invalid_sad"

    # Both at once for the same hash: one signature.
    results = await asyncio.gather(
        client.sign_hashes(cred_id, sad, [digests[1]]),
        there.sign_hashes(cred_id, sad, [digests[1]]),
        return_exceptions=True,
    )
    assert sum(isinstance(r, list) for r in results) == 1, results

    # The last hash uses the SAD up: its record and its HSM key are gone.
    (key_id,) = await _sad_keys(app, cred_id)
    (last,) = await client.sign_hashes(cred_id, sad, [digests[2]])
    _verify(cred["certificate"], digests[2], last)
    async with app[DATABASE].read() as conn:
        left = (
            await conn.execute(
                select(func.count()).select_from(sads).where(sads.c.credential_id == cred_id)
            )
        ).scalar_one()
        uses = (
            await conn.execute(
                select(func.count())
                .select_from(events)
                .where(events.c.credential_id == cred_id, events.c.event_type == "key.use")
            )
        ).scalar_one()
    assert left == 0 and key_id not in await _all_sad_keys(app)
    assert uses == 3  # one key.use per signature, whichever process made it
    with pytest.raises(ApiError) as err:
        await there.sign_hashes(cred_id, sad, [digests[2]])
    assert err.value.code == "invalid_sad"


@pytest.mark.slow
async def test_an_extended_sad_moves_to_the_other_process(
    client: CloudsignClient, app: Any, second_process: str
) -> None:
    totp, cred = await enrolled(client)
    cred_id = cred["credential_id"]
    digest = hashlib.sha256(os.urandom(16)).digest()
    sad = await _sad(client, totp, cred, [digest])
    there = dataclasses.replace(client, base_url=second_process)
    (before,) = await _sad_keys(app, cred_id)
    extended = await there.request(
        "POST", "/csc/v2/credentials/extendTransaction", {"credentialID": cred_id, "SAD": sad}
    )
    assert extended["SAD"] != sad
    (after,) = await _sad_keys(app, cred_id)  # the old key went, a new one came
    assert after != before
    with pytest.raises(ApiError):
        await client.sign_hashes(cred_id, sad, [digest])
    (sig,) = await client.sign_hashes(cred_id, extended["SAD"], [digest])
    _verify(cred["certificate"], digest, sig)
