"""The whole HSM backup drill on real SoftHSM2, through the `cloudsign`
command line and a real `cloudsign serve`: a key ceremony with five
custodians, an owner who enrols and signs, a backup made while the service
runs, an owner who enrols after it, the token and the CA files destroyed,
the refusals (too few shares, a wrong passphrase, an altered share, a share
of another ceremony, a tampered archive) each changing nothing, then a
restore from three shares into a new token: both owners sign with their
passwords, old and new signatures verify under the same certificates, OCSP,
the TSA and the audit log answer with the same keys, and every step is an
audit event."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from asn1crypto import algos, tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from sqlalchemy import select

from cloudsign.credentials.tables import credentials
from cloudsign.storage import Database
from cloudsign.storage.schema import events
from device_client.client import CloudsignClient, TotpDevice
from hsm_bridge.secret import Secret
from hsm_bridge.shares import CustodianShare, split_archive_key
from tests.helpers import (
    FAST_SETTINGS,
    PG_ADMIN_DSN,
    REPO,
    free_port,
    passed_face_check,
    person,
    pg_create,
    pg_drop,
)
from tests.serving import CLI, clean_env, create_security_officer, serve, stop, wait_ready
from tests.staff import OperatorClient, registration_desk
from tests.status.status_helpers import cert_id, eventually, load_pem, ocsp_request, post_ocsp

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"
CUSTODIANS = ("aigerim", "bolat", "dana", "erlan", "farida")
CLI_TIMEOUT = 300
UNRECORDED = ["--unrecorded-archive"]


def _env(database_url: str) -> dict[str, str]:
    out = {
        f"CLOUDSIGN_{k.upper()}": (str(v).lower() if isinstance(v, bool) else str(v))
        for k, v in FAST_SETTINGS.items()
    }
    out |= {
        "CLOUDSIGN_DATABASE_URL": database_url,
        "CLOUDSIGN_FACE_WORKERS": "1",
        "CLOUDSIGN_AUDIT_SEQUENCE_INTERVAL_MS": "100",
    }
    return out


def _cli(data: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--data-dir", str(data), *args],
        cwd=REPO,
        env=clean_env(CLOUDSIGN_DEVELOPMENT="true", **env),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def _passphrase(name: str) -> str:
    return f"the passphrase of {name}, kept apart"


async def _enrol(
    client: CloudsignClient, desk: OperatorClient
) -> tuple[str, TotpDevice, dict[str, Any]]:
    identity = person()
    proofing = await desk.proof(identity, "obama_1.jpg")
    await client.activate(proofing["activation_code"])
    await client.accept_consents()
    totp = await client.setup_totp()
    face = await passed_face_check(client)
    cred = await client.create_credential(PASSWORD, await totp.fresh_code(), face)
    return identity["iin"], totp, cred


async def _sign(
    client: CloudsignClient, totp: TotpDevice, cred: dict[str, Any], digest: bytes
) -> bytes:
    face = await passed_face_check(client)  # before the code: a slow check must not age it
    sad = await client.authorize(
        cred["credential_id"],
        [digest],
        password=PASSWORD,
        otp=await totp.fresh_code(),
        face_challenge_id=face,
    )
    (signature,) = await client.sign_hashes(cred["credential_id"], sad, [digest])
    return signature


def _verify(cert_pem: str, digest: bytes, signature: bytes) -> None:
    key = x509.load_pem_x509_certificate(cert_pem.encode()).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))


async def _log_keys(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """`/log/keys` once the anchorer has reached its chain (contract known)."""

    async def read() -> dict[str, Any]:
        async with http.get(f"{url}/log/keys") as r:
            assert r.status == 200
            keys: dict[str, Any] = await r.json()
            return keys

    keys = await eventually(read, lambda k: k["contract"] is not None, within=90.0)
    assert keys["contract"] is not None, f"no anchoring contract: {keys}"
    return keys


async def _responder_and_tsa_certs(
    http: aiohttp.ClientSession, url: str, cred: dict[str, Any]
) -> tuple[bytes, bytes]:
    """The certificate the OCSP responder signs with (for the owner's
    certificate, answered `good`) and the one the TSA puts in a token."""
    leaf, issuer = load_pem(cred["certificate"]), load_pem(cred["chain"][0])
    response = await post_ocsp(http, url, ocsp_request(cert_id(leaf.serial_number, issuer)))
    basic = response["response_bytes"]["response"].parsed
    (single,) = basic["tbs_response_data"]["responses"]
    assert single["cert_status"].name == "good"
    responder = bytes(basic["certs"][0].dump())
    request = tsp.TimeStampReq(
        {
            "version": 1,
            "message_imprint": {
                "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "hashed_message": hashlib.sha256(b"drill").digest(),
            },
            "nonce": secrets.randbits(63),
            "cert_req": True,
        }
    )
    async with http.post(
        f"{url}/tsa", data=request.dump(), headers={"Content-Type": "application/timestamp-query"}
    ) as r:
        assert r.status == 200
        stamp = tsp.TimeStampResp.load(await r.read())
    assert stamp["status"]["status"].native == "granted"
    signed = stamp["time_stamp_token"]["content"]
    tsa = bytes(signed["certificates"][0].chosen.dump())
    return responder, tsa


def _audit_signature(data: Path, message: bytes) -> bytes:
    """The audit-log key's Ed25519 signature of `message`, made by the
    token in `data` (a child process: this one has its own token)."""
    script = (
        "import asyncio, sys; from pathlib import Path\n"
        "from hsm_bridge import HsmBridge, Secret, softhsm\n"
        "from cloudsign.audit import NOTE_KEY_LABEL\n"
        "d = Path(sys.argv[1]); softhsm.configure(d / 'hsm')\n"
        "async def main():\n"
        "    b = HsmBridge(softhsm.find_module(), 'cloudsign',\n"
        "                  Secret((d / 'hsm' / 'user.pin').read_text().strip()))\n"
        "    await b.start()\n"
        "    try:\n"
        "        print((await b.sign_message(NOTE_KEY_LABEL, bytes.fromhex(sys.argv[2]))).hex())\n"
        "    finally:\n"
        "        await b.close()\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [CLI[0], "-c", script, str(data), message.hex()],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return bytes.fromhex(done.stdout.strip())


async def _events(database_url: str, *types: str) -> list[dict[str, Any]]:
    db = Database(database_url, immediate=True)
    try:
        async with db.read() as conn:
            rows = (
                await conn.execute(
                    select(events.c.event_type, events.c.data)
                    .where(events.c.event_type.in_(types))
                    .order_by(events.c.seq)
                )
            ).all()
    finally:
        await db.close()
    return [
        {"type": r.event_type, **(r.data if isinstance(r.data, dict) else json.loads(r.data))}
        for r in rows
    ]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'cloudsign.db'}"
        return
    name = f"cloudsign_drill_{secrets.token_hex(4)}"
    asyncio.run(pg_create(name))
    yield f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    asyncio.run(pg_drop(name))


@dataclass
class Drill:
    """One instance's data dir, its custodians' media and passphrases."""

    tmp: Path
    database: str
    #: One public address for every start: it names the audit log's origin.
    port: int = field(default_factory=free_port)
    operator_port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.tmp / "data"

    @property
    def env(self) -> dict[str, str]:
        return _env(self.database)

    @property
    def passphrases(self) -> Path:
        return self.tmp / "passphrases"

    def share(self, name: str) -> Path:
        return self.tmp / f"medium-{name}" / "share.json"

    def ceremony(self, first_backup: Path) -> subprocess.CompletedProcess[str]:
        self.passphrases.mkdir()
        for name in CUSTODIANS:
            self.share(name).parent.mkdir()
            (self.passphrases / name).write_text(_passphrase(name))
        return _cli(
            self.data,
            self.env,
            "ceremony",
            *[a for n in CUSTODIANS for a in ("--custodian", f"{n}={self.share(n)}")],
            *[a for n in CUSTODIANS for a in ("--passphrase-file", f"{n}={self.passphrases / n}")],
            "--backup",
            str(first_backup),
        )

    def share_args(
        self, archive: Path, *names: str, passphrases: dict[str, Path] | None = None
    ) -> list[str]:
        out = ["--archive", str(archive)]
        for n in names:
            phrase = (passphrases or {}).get(n, self.passphrases / n)
            out += ["--share", str(self.share(n)), "--passphrase-file", f"{self.share(n)}={phrase}"]
        return out

    def restore(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _cli(self.data, self.env, "backup", "restore", *args)

    def lose_the_hsm(self) -> None:
        """The token and the CA files are gone; the database is kept."""
        shutil.rmtree(self.data / "hsm")
        shutil.rmtree(self.data / "pki")

    def officer(self) -> tuple[str, str, str]:
        name, password = f"security.{secrets.token_hex(3)}", "officer " + secrets.token_urlsafe(12)
        return name, password, create_security_officer(self.data, self.env, name, password)


@contextlib.asynccontextmanager
async def _serving(
    drill: Drill, officer: tuple[str, str, str], log: str
) -> AsyncIterator[tuple[str, aiohttp.ClientSession, OperatorClient]]:
    """`cloudsign serve` on the drill's data dir, with a registration desk."""
    port, operator_port = drill.port, drill.operator_port
    proc = serve(
        drill.data,
        port,
        log=drill.tmp / log,
        **{**drill.env, "CLOUDSIGN_OPERATOR_PORT": str(operator_port)},
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        try:
            await asyncio.to_thread(wait_ready, proc, port)
            desk = await registration_desk(f"http://127.0.0.1:{operator_port}", http, *officer)
            yield url, http, desk
        finally:
            await asyncio.to_thread(stop, proc)


async def _blob_of(database_url: str, credential_id: str) -> bytes:
    db = Database(database_url, immediate=True)
    try:
        async with db.read() as conn:
            blob = (
                await conn.execute(
                    select(credentials.c.key_blob).where(credentials.c.id == credential_id)
                )
            ).scalar_one()
    finally:
        await db.close()
    return bytes(blob)


async def test_ceremony_backup_destroy_restore_from_three_of_five(
    tmp_path: Path, database: str
) -> None:
    drill = Drill(tmp_path, database)
    data = drill.data
    first_backup = tmp_path / "backup-ceremony.json"

    # -- the ceremony ---------------------------------------------------------
    done = await asyncio.to_thread(drill.ceremony, first_backup)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    for name in CUSTODIANS:
        assert _passphrase(name) not in done.stdout + done.stderr
        share = json.loads(drill.share(name).read_text())
        assert share["custodian"] == name and share["threshold"] == 3 and share["shares"] == 5
        assert drill.share(name).stat().st_mode & 0o777 == 0o600
    # The transcript, signed by the new root CA key, checked by openssl.
    transcript = Path(result["transcript"])
    pub = subprocess.run(
        ["openssl", "x509", "-in", str(data / "pki" / "root.pem"), "-pubkey", "-noout"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (tmp_path / "root-pub.pem").write_text(pub)
    (tmp_path / "transcript.sig").write_bytes(
        base64.b64decode(Path(result["signature"]).read_text())
    )
    verified = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", str(tmp_path / "root-pub.pem"),
         "-signature", str(tmp_path / "transcript.sig"), str(transcript)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0 and "Verified OK" in verified.stdout, verified.stderr
    record = json.loads(transcript.read_text())
    assert [c["custodian"] for c in record["custodians"]] == list(CUSTODIANS)
    assert {"ca-root", "ca-issuing", "cloudsign-audit-log"} <= set(record["keys_spki_sha256"])
    assert record["first_backup"]["file"] == str(first_backup)

    # -- the service: an owner enrols and signs, a backup, another owner -------
    officer = drill.officer()
    backup = tmp_path / "backup.json"
    async with _serving(drill, officer, "serve.log") as (url, http, desk):
        alice = CloudsignClient(url, http)
        alice_iin, alice_totp, alice_cred = await _enrol(alice, desk)
        before_digest = hashlib.sha256(b"signed before the backup").digest()
        before_signature = await _sign(alice, alice_totp, alice_cred, before_digest)
        keys_before = await _log_keys(http, url)
        certs_before = await _responder_and_tsa_certs(http, url, alice_cred)
        # A backup while the service runs, then an owner the archive predates.
        made = await asyncio.to_thread(
            _cli, data, drill.env, "backup", "create", "--out", str(backup)
        )
        assert made.returncode == 0, made.stdout + made.stderr
        assert backup.stat().st_mode & 0o777 == 0o600
        bob = CloudsignClient(url, http)
        bob_iin, bob_totp, bob_cred = await _enrol(bob, desk)
    audit_signature = await asyncio.to_thread(_audit_signature, data, b"drill checkpoint")
    archive = json.loads(backup.read_text())
    labels = {k["label"] for k in archive["keys"]}
    assert {"cloudsign-master", "ca-root", "ca-issuing", "cloudsign-audit-log"} <= labels
    assert "cloudsign-archive" not in labels
    assert "PRIVATE KEY" not in backup.read_text()

    pki_files = {p.name: p.read_text() for p in (data / "pki").glob("*.pem")}
    drill.lose_the_hsm()

    def nothing_restored() -> None:
        tokens = data / "hsm" / "tokens"
        assert not tokens.exists() or not any(tokens.iterdir())
        assert not (data / "pki").exists() or not any((data / "pki").iterdir())

    wrong = tmp_path / "wrong-passphrase"
    wrong.write_text("not the passphrase of dana")
    altered = tmp_path / "altered.json"
    doc = json.loads(drill.share("erlan").read_text())
    sealed = bytearray(base64.b64decode(doc["sealed"]))
    sealed[5] ^= 1
    doc["sealed"] = base64.b64encode(bytes(sealed)).decode()
    altered.write_text(json.dumps(doc))
    foreign = tmp_path / "foreign.json"
    [other] = split_archive_key(
        secrets.token_bytes(32),
        [CustodianShare(n, Secret(_passphrase(n))) for n in CUSTODIANS],
        3,
        "0" * 16,
    )[:1]
    foreign.write_text(other.to_json())
    tampered = tmp_path / "tampered.json"
    doc = json.loads(backup.read_text())
    doc["keys"][0]["flags"] = {**doc["keys"][0]["flags"], "DERIVE": True}
    tampered.write_text(json.dumps(doc))
    swapped = tmp_path / "swapped.json"
    doc = json.loads(backup.read_text())
    doc["keys"][0]["wrapped"], doc["keys"][1]["wrapped"] = (
        doc["keys"][1]["wrapped"],
        doc["keys"][0]["wrapped"],
    )
    swapped.write_text(json.dumps(doc))

    def extra(path: Path, of: str) -> list[str]:
        return ["--share", str(path), "--passphrase-file", f"{path}={drill.passphrases / of}"]

    refusals = [
        (drill.share_args(backup, "aigerim", "bolat"), "needs 3"),
        (
            drill.share_args(backup, "aigerim", "bolat", "dana", passphrases={"dana": wrong}),
            "does not open",
        ),
        (
            [*drill.share_args(backup, "aigerim", "bolat"), *extra(altered, "erlan")],
            "does not open",
        ),
        (
            [*drill.share_args(backup, "aigerim", "bolat"), *extra(foreign, "aigerim")],
            "different ceremonies",
        ),
        # Not made by this instance's `backup create`: no event records it.
        (drill.share_args(tampered, "aigerim", "bolat", "dana"), "no backup.create event"),
        # Let through that check, the MAC (checked in the new HSM) refuses it.
        (drill.share_args(tampered, "aigerim", "bolat", "dana") + UNRECORDED, "altered"),
        (drill.share_args(swapped, "aigerim", "bolat", "dana") + UNRECORDED, "altered"),
    ]
    # A genuine archive against a database that never recorded it.
    other_db = {**drill.env, "CLOUDSIGN_DATABASE_URL": f"sqlite:///{tmp_path / 'other.db'}"}
    cases = [(drill.env, args, why) for args, why in refusals]
    cases.append(
        (other_db, drill.share_args(backup, "aigerim", "bolat", "dana"), "no backup.create")
    )
    for env, args, why in cases:
        refused = await asyncio.to_thread(_cli, data, env, "backup", "restore", *args)
        assert refused.returncode != 0, refused.stdout
        assert why in refused.stderr, refused.stderr
        for name in CUSTODIANS:
            assert _passphrase(name) not in refused.stdout + refused.stderr
        nothing_restored()

    # -- restore from three of the five ----------------------------------------
    restored = await asyncio.to_thread(
        drill.restore, *drill.share_args(backup, "bolat", "dana", "farida"), "--publish-notice"
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
    report = json.loads(restored.stdout)
    assert report["custodians"] == ["bolat", "dana", "farida"]
    assert set(report["keys"]) >= labels
    assert {p.name: p.read_text() for p in (data / "pki").glob("*.pem")} == pki_files
    # The same audit-log key: Ed25519 is deterministic, so the same signature.
    assert await asyncio.to_thread(_audit_signature, data, b"drill checkpoint") == audit_signature

    async with _serving(drill, officer, "serve-restored.log") as (url, http, _):
        assert await _log_keys(http, url) == keys_before
        assert await _responder_and_tsa_certs(http, url, alice_cred) == certs_before
        # Both owners log in and sign with the passwords and factors they had.
        after_digest = hashlib.sha256(b"signed after the restore").digest()
        for iin, totp, cred in ((alice_iin, alice_totp, alice_cred), (bob_iin, bob_totp, bob_cred)):
            owner = CloudsignClient(url, http)
            await owner.login(iin, await totp.fresh_code(), PASSWORD)
            _verify(cred["certificate"], after_digest, await _sign(owner, totp, cred, after_digest))
            assert [c["credential_id"] for c in await owner.credentials()] == [
                cred["credential_id"]
            ]
        _verify(alice_cred["certificate"], before_digest, before_signature)

    # -- the audit trail ------------------------------------------------------------
    logged = await _events(
        database,
        "key.ceremony",
        "backup.share",
        "backup.create",
        "backup.restore",
        "notice.publish",
    )
    kinds = [e["type"] for e in logged]
    assert kinds.count("key.ceremony") == 1
    assert [e["custodian"] for e in logged if e["type"] == "backup.share"] == list(CUSTODIANS)
    assert kinds.count("backup.create") == 2  # the ceremony's and the one made while serving
    (restore_event,) = [e for e in logged if e["type"] == "backup.restore"]
    assert restore_event["archive_id"] == archive["archive_id"]
    assert restore_event["custodians"] == ["bolat", "dana", "farida"]
    assert restore_event["new_master"] is False
    assert restore_event["recorded"] is True
    assert kinds[-1] == "notice.publish"
    assert not await _events(database, "key.rewrap")


async def test_master_key_rotation_moves_each_owner_key_at_its_next_use(
    tmp_path: Path, database: str
) -> None:
    """A restore with a new master key: the old one comes back retired; an
    owner's key moves to the new master the first time the owner opens it
    (one `key.rewrap`, a new blob), and an owner who has not used their key
    since still signs, even after a second restore from an archive made
    before they moved."""
    drill = Drill(tmp_path, database)
    done = await asyncio.to_thread(drill.ceremony, tmp_path / "backup-ceremony.json")
    assert done.returncode == 0, done.stdout + done.stderr
    officer = drill.officer()
    async with _serving(drill, officer, "serve.log") as (url, http, desk):
        alice_iin, alice_totp, alice_cred = await _enrol(CloudsignClient(url, http), desk)
        bob_iin, bob_totp, bob_cred = await _enrol(CloudsignClient(url, http), desk)
    alice_blob = await _blob_of(drill.database, alice_cred["credential_id"])
    bob_blob = await _blob_of(drill.database, bob_cred["credential_id"])
    backup = tmp_path / "backup.json"
    made = await asyncio.to_thread(
        _cli, drill.data, drill.env, "backup", "create", "--out", str(backup)
    )
    assert made.returncode == 0, made.stderr

    drill.lose_the_hsm()
    rotated = await asyncio.to_thread(
        drill.restore, *drill.share_args(backup, "aigerim", "dana", "erlan"), "--new-master"
    )
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    keys = json.loads(rotated.stdout)["keys"]
    assert "cloudsign-master" in keys
    assert [k for k in keys if k.startswith("cloudsign-master-retired-")]

    digest = hashlib.sha256(b"after the rotation").digest()
    async with _serving(drill, officer, "serve-rotated.log") as (url, http, _):
        alice = CloudsignClient(url, http)
        await alice.login(alice_iin, await alice_totp.fresh_code(), PASSWORD)
        _verify(
            alice_cred["certificate"], digest, await _sign(alice, alice_totp, alice_cred, digest)
        )
        _verify(
            alice_cred["certificate"], digest, await _sign(alice, alice_totp, alice_cred, digest)
        )
    moved = await _blob_of(drill.database, alice_cred["credential_id"])
    assert moved != alice_blob
    assert await _blob_of(drill.database, bob_cred["credential_id"]) == bob_blob
    rewraps = await _events(drill.database, "key.rewrap")
    assert len(rewraps) == 1  # alice once, at her first opening; bob not yet

    # An archive of the rotated token carries the retired master too.
    second = tmp_path / "backup-rotated.json"
    made = await asyncio.to_thread(
        _cli, drill.data, drill.env, "backup", "create", "--out", str(second)
    )
    assert made.returncode == 0, made.stderr
    labels = [k["label"] for k in json.loads(second.read_text())["keys"]]
    assert [k for k in labels if k.startswith("cloudsign-master-retired-")]
    drill.lose_the_hsm()
    again = await asyncio.to_thread(
        drill.restore, *drill.share_args(second, "bolat", "erlan", "farida")
    )
    assert again.returncode == 0, again.stdout + again.stderr
    async with _serving(drill, officer, "serve-again.log") as (url, http, _):
        for iin, totp, cred in ((bob_iin, bob_totp, bob_cred), (alice_iin, alice_totp, alice_cred)):
            owner = CloudsignClient(url, http)
            await owner.login(iin, await totp.fresh_code(), PASSWORD)
            _verify(cred["certificate"], digest, await _sign(owner, totp, cred, digest))
    assert await _blob_of(drill.database, bob_cred["credential_id"]) != bob_blob
    assert len(await _events(drill.database, "key.rewrap")) == 2
