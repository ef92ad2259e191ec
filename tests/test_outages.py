"""Outages of what the service stands on, in the middle of a signing load.

1. **kill -9 of PostgreSQL.** The test runs its own PostgreSQL cluster (never
   the machine's shared one), its own anvil, and a real `cloudsign serve`
   process on them. A citizen enrols and signs hashes through the HTTP
   client; in the middle of the load the postmaster and every backend get
   SIGKILL. Requests during the outage fail promptly with a 5xx
   problem+json, the service process stays up, and once PostgreSQL is back
   on the same data dir and port the same process serves again by itself:
   retries succeed, it leads its background work again, every signature a
   client received has exactly one `key.use` event and one cabinet row, no
   event is written twice, and the audit log's leaves stay contiguous and
   keep growing.
2. **kill -9 of the anchoring chain.** The test runs anvil itself (its
   `--state` file dumped every second) and the service on it, in this
   process so that its clock can be injected and a day closes when the test
   says. Signing goes on unaffected while the chain is down (and the
   service stays ready); a day that closes meanwhile is anchored once anvil
   is back from its state file. Then anvil loses its
   last blocks (killed after its last dump, before the one that would have
   held the anchor): the service notices that the anchor it recorded is no
   longer on the chain and sends it again, and what it records is on the
   restarted chain, verified by the auditor's CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import glob
import hashlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from audit_chain import AnchorClient, AnvilProcess, find_anvil
from audit_chain.anvil import rpc_call
from cloudsign.app import create_app
from cloudsign.appkeys import ANCHORER, AUDIT_LOG, CLOCK, TOTP_CLOCK
from cloudsign.audit import AnchorState
from cloudsign.audit.tables import log_head, log_leaves
from cloudsign.settings import Settings, load_settings
from cloudsign.signing.tables import signed_documents
from cloudsign.storage import Database
from cloudsign.storage.schema import events
from device_client.client import ApiError, CloudsignClient, TotpDevice
from tests.helpers import (
    FAST_SETTINGS,
    REPO,
    enrolled,
    free_port,
    new_client,
    passed_face_check,
    person,
)
from tests.helpers import TOTP_CLOCK as TEST_TOTP_CLOCK
from tests.serving import (
    children,
    create_security_officer,
    serve,
    stop,
    wait_ready,
)
from tests.staff import OperatorClient, bootstrap_staff, registration_desk

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"
#: Upper bound of any one request: an outage must be answered, not hung on.
REQUEST_BOUND = 30.0
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"


def _pg_bin() -> Path | None:
    found = glob.glob("/usr/lib/postgresql/*/bin/postgres")
    if not found:
        return None
    return Path(max(found, key=lambda p: int(Path(p).parts[-3]))).parent


def _wait(condition: Callable[[], Any], what: str, within: float = 90.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out: {what}")


async def _await(condition: Callable[[], Any], what: str, within: float = 90.0) -> Any:
    """Poll an async condition until it holds (an upper bound, never a pause)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        value = await condition()
        if value:
            return value
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out: {what}")


async def _until(condition: Callable[[], bool], what: str, within: float = 90.0) -> None:
    """Poll a condition the test's own tasks change, without blocking them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out: {what}")
        await asyncio.sleep(0.05)


def _gone(pid: int) -> bool:
    """Dead: no such process, or a zombie (which holds no socket or memory)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _env_of(settings: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in settings.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        out[f"CLOUDSIGN_{key.upper()}"] = text
    return out


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def _metrics_status(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _ready_status(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _gauge(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        text = r.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return float(family.samples[0].value)
    raise AssertionError(f"no {name}")


async def _async_gauge(url: str, name: str, wanted: float) -> bool:
    return await asyncio.to_thread(_gauge, url, name) == wanted


def _verify(cert_pem: str, digest: bytes, signature: bytes) -> None:
    public = x509.load_pem_x509_certificate(cert_pem.encode()).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))


# -- a PostgreSQL cluster of the test's own ---------------------------------------


@dataclasses.dataclass
class OwnPostgres:
    """initdb + postgres as the `postgres` OS user (both refuse root), on
    127.0.0.1:`port` only (no Unix socket), trust authentication."""

    bin: Path
    root: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _as_postgres(self, *cmd: str | Path) -> list[str]:
        return [SETPRIV, "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + [
            str(c) for c in cmd
        ]

    def init(self) -> None:
        subprocess.run(
            self._as_postgres(
                self.bin / "initdb", "-D", self.data, "-U", "postgres",
                "--auth=trust", "-E", "UTF8", "--no-sync",
            ),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def start(self) -> None:
        with open(self.root / "postgres.log", "ab") as log:
            self.proc = subprocess.Popen(
                self._as_postgres(
                    self.bin / "postgres", "-D", self.data, "-p", str(self.port),
                    "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                    # A killed process loses nothing the kernel has: fsync
                    # only matters to a power cut, which this test is not.
                    "-c", "fsync=off",
                ),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        _wait(self._accepting, "PostgreSQL to accept connections", 60)

    def _accepting(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            log = (self.root / "postgres.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"postgres exited with {self.proc.returncode}:\n{log}")
        probe = subprocess.run(
            [self.bin / "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            check=False,
            timeout=30,
        )
        return probe.returncode == 0

    def psql(self, sql: str) -> None:
        subprocess.run(
            [self.bin / "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-c", sql],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def kill_9(self) -> None:
        """SIGKILL the postmaster and every one of its children. Backends
        run in sessions of their own, so the postmaster is stopped first
        (it forks no one meanwhile) and its children are found by parent."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGSTOP)
        kids = children(proc.pid)
        for pid in [*kids, proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)
        _wait(lambda: all(_gone(k) for k in kids), "every backend gone", 30)
        self.proc = None


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    bin_dir = _pg_bin()
    if bin_dir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL's server binaries are required in CI")
        pytest.skip("no /usr/lib/postgresql/*/bin/postgres")
    # Not tmp_path: the postgres user cannot enter root's 0700 pytest dirs.
    root = Path(tempfile.mkdtemp(prefix="cloudsign-outage-pg-"))
    shutil.chown(root, "postgres", "postgres")
    cluster = OwnPostgres(bin_dir, root, free_port())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.kill_9()
        shutil.rmtree(root, ignore_errors=True)


# -- a real `cloudsign serve` with its own staff -------------------------------------


@dataclasses.dataclass
class Service:
    url: str
    operator_url: str
    proc: subprocess.Popen[bytes]
    database_url: str
    officer: str
    officer_password: str
    officer_uri: str
    log: Path


@pytest.fixture
def service_on_own_postgres(
    own_postgres: OwnPostgres, base_settings: Settings, tmp_path: Path
) -> Iterator[Service]:
    own_postgres.psql('CREATE DATABASE "cloudsign"')
    database_url = own_postgres.url("cloudsign")
    port, operator_port = free_port(), free_port()
    # A chain that answers, as in production: the anchorer's rounds read
    # the database too while it is away.
    anvil = AnvilProcess(
        tmp_path / "chain" / "state.json", binary=find_anvil(), log_path=tmp_path / "anvil.log"
    )
    env = {
        **_env_of(FAST_SETTINGS),
        "CLOUDSIGN_DATABASE_URL": database_url,
        "CLOUDSIGN_CHAIN_RPC_URL": anvil.rpc_url,
        "CLOUDSIGN_CHAIN_POLL_INTERVAL_MS": "200",
        "CLOUDSIGN_FACE_WORKERS": "1",
        "CLOUDSIGN_OPERATOR_PORT": str(operator_port),
        "CLOUDSIGN_AUDIT_SEQUENCE_INTERVAL_MS": "100",
    }
    officer, password = f"security.{secrets.token_hex(3)}", "officer " + secrets.token_urlsafe(12)
    uri = create_security_officer(base_settings.data_dir, env, officer, password)
    log = tmp_path / "serve.log"
    anvil.start()
    proc = serve(base_settings.data_dir, port, log=log, **env)
    try:
        wait_ready(proc, port)
        yield Service(
            f"http://127.0.0.1:{port}",
            f"http://127.0.0.1:{operator_port}",
            proc,
            database_url,
            officer,
            password,
            uri,
            log,
        )
    finally:
        stop(proc)
        anvil.kill()


async def _desk(service: Service, http: aiohttp.ClientSession) -> OperatorClient:
    return await registration_desk(
        service.operator_url, http, service.officer, service.officer_password, service.officer_uri
    )


async def _enrol(
    client: CloudsignClient, desk: OperatorClient
) -> tuple[TotpDevice, dict[str, Any]]:
    proofing = await desk.proof(person(), "obama_1.jpg")
    await client.activate(proofing["activation_code"])
    await client.accept_consents()
    totp = await client.setup_totp()
    face = await passed_face_check(client)
    cred = await client.create_credential(PASSWORD, await totp.fresh_code(), face)
    return totp, cred


async def _authorise(
    client: CloudsignClient, totp: TotpDevice, cred_id: str, digests: list[bytes]
) -> str:
    face = await passed_face_check(client)  # before the code: a slow check must not age it
    return await client.authorize(
        cred_id, digests, password=PASSWORD, otp=await totp.fresh_code(), face_challenge_id=face
    )


# -- what the database says about the signatures and the log -------------------------


async def _signing_records(db: Database, cred_id: str) -> tuple[list[dict[str, Any]], list[Any]]:
    """The credential's key.use events (in seq order) and cabinet rows."""
    async with db.read() as conn:
        uses = (
            (
                await conn.execute(
                    select(events.c.seq, events.c.data)
                    .where(events.c.credential_id == cred_id, events.c.event_type == "key.use")
                    .order_by(events.c.seq)
                )
            )
            .mappings()
            .all()
        )
        rows = (
            await conn.execute(
                select(
                    signed_documents.c.id,
                    signed_documents.c.document_hash,
                    signed_documents.c.signature,
                ).where(signed_documents.c.credential_id == cred_id)
            )
        ).all()
    return [dict(u) for u in uses], list(rows)


def _check_signatures(
    received: dict[bytes, bytes], uses: list[dict[str, Any]], rows: list[Any]
) -> None:
    """Every received signature: one cabinet row holding it, one key.use
    event naming that row; no event twice, no event without its row."""
    signature_ids = [u["data"]["signature_id"] for u in uses]
    assert len(signature_ids) == len(set(signature_ids)), "a key.use event written twice"
    per_sad = [(u["data"]["authorization"], u["data"]["document_hash"]) for u in uses]
    assert len(per_sad) == len(set(per_sad)), "one SAD's hash used twice"
    assert sorted(signature_ids) == sorted(r.id for r in rows), "an event without its row"
    for digest, signature in received.items():
        holding = [r for r in rows if bytes(r.signature) == signature]
        assert len(holding) == 1, f"{digest.hex()}: {len(holding)} cabinet rows"
        assert holding[0].document_hash == digest.hex()
        assert signature_ids.count(holding[0].id) == 1, f"{digest.hex()}: no key.use event"


async def _log_state(db: Database) -> tuple[int, int | None, int, int, int]:
    """(leaves, highest leaf index, head's tree size, distinct event seqs
    in leaves, events)."""
    async with db.read() as conn:
        count, top, seqs = (
            await conn.execute(
                select(
                    func.count(),
                    func.max(log_leaves.c.leaf_index),
                    func.count(func.distinct(log_leaves.c.event_seq)),
                )
            )
        ).one()
        size = (await conn.execute(select(log_head.c.tree_size))).scalar_one()
        total = (await conn.execute(select(func.count()).select_from(events))).scalar_one()
    return int(count), top, int(size), int(seqs), int(total)


async def _all_sequenced(db: Database) -> tuple[int, int | None, int, int, int] | None:
    state = await _log_state(db)
    count, _top, size, _seqs, total = state
    return state if count == total and size == count else None


# -- 1. kill -9 of PostgreSQL ---------------------------------------------------------


@dataclasses.dataclass
class Load:
    received: dict[bytes, bytes] = dataclasses.field(default_factory=dict)
    #: (status, body, seconds) of every 5xx answer.
    failures: list[tuple[int, dict[str, Any], float]] = dataclasses.field(default_factory=list)
    #: Connection-level errors (a service that went away or hung).
    dropped: list[str] = dataclasses.field(default_factory=list)
    #: Hashes reserved by a request the outage cut short: refused by their
    #: SAD from then on (fail closed), to be authorised again.
    stuck: list[bytes] = dataclasses.field(default_factory=list)


async def test_kill_9_of_postgresql_mid_load_fails_fast_and_recovers_without_a_restart(
    service_on_own_postgres: Service, own_postgres: OwnPostgres
) -> None:
    svc, pg = service_on_own_postgres, own_postgres
    timeout = aiohttp.ClientTimeout(total=REQUEST_BOUND)
    db = Database(svc.database_url)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            desk = await _desk(svc, http)
            client = CloudsignClient(svc.url, http)  # the real clock: another process
            totp, cred = await _enrol(client, desk)
            cred_id = cred["credential_id"]
            digests = [hashlib.sha256(os.urandom(16)).digest() for _ in range(40)]
            sad = await _authorise(client, totp, cred_id, digests)

            load = Load()
            pending = list(digests)
            killed, restarted = asyncio.Event(), asyncio.Event()
            at_kill: dict[str, int] = {}

            async def sign(digest: bytes) -> None:
                loop = asyncio.get_running_loop()
                failed = False
                while True:
                    started = loop.time()
                    try:
                        (signature,) = await client.sign_hashes(cred_id, sad, [digest])
                    except ApiError as e:
                        if e.status >= 500:
                            load.failures.append((e.status, e.body, loop.time() - started))
                            failed = True
                            await asyncio.sleep(0.2)  # a client's retry pace
                            continue
                        if failed and e.code == "invalid_sad":
                            load.stuck.append(digest)
                            return
                        raise
                    except (aiohttp.ClientError, TimeoutError) as e:
                        load.dropped.append(repr(e))
                        failed = True
                        await asyncio.sleep(0.2)
                        continue
                    load.received[digest] = signature
                    if len(load.received) >= 8 and not at_kill:
                        # Mid-load: the other workers' requests are in flight.
                        at_kill["leaves"] = -1  # (set before the await: one kill)
                        at_kill["leaves"] = (await _log_state(db))[0]
                        pg.kill_9()
                        killed.set()
                    return

            async def worker() -> None:
                while pending:
                    await sign(pending.pop())

            async def outage() -> None:
                await killed.wait()
                await _until(lambda: len(load.failures) >= 6, "requests failing during the outage")
                assert svc.proc.poll() is None, "the service died with its database"
                assert await asyncio.to_thread(_healthy, svc.url)
                assert await asyncio.to_thread(_ready_status, svc.url) == 503
                # Scraping goes on: the audit figures are skipped, not a 500.
                assert await asyncio.to_thread(_metrics_status, svc.url) == 200
                await asyncio.to_thread(pg.start)
                restarted.set()

            await asyncio.wait_for(
                asyncio.gather(worker(), worker(), worker(), outage()), timeout=240
            )
            assert killed.is_set() and restarted.is_set()
            print(
                f"{len(load.received)} signed, {len(load.failures)} 5xx answers during the outage "
                f"(slowest {max(t for _s, _b, t in load.failures):.2f} s), "
                f"{len(load.stuck)} hashes failed closed"
            )
            assert not load.dropped, load.dropped
            for status, body, _took in load.failures:
                # "Retry shortly", not a bug: 503 database_unavailable.
                assert status == 503, body
                assert body.get("type") == "urn:cloudsign:error:database_unavailable", body
                assert body.get("status") == status, body
            assert max(t for _s, _b, t in load.failures) < REQUEST_BOUND

            # The same process, never restarted, signs again: the hashes the
            # outage left reserved are authorised anew and signed.
            assert svc.proc.poll() is None
            if load.stuck:
                again = await _authorise(client, totp, cred_id, load.stuck)
                for digest in load.stuck:
                    (load.received[digest],) = await client.sign_hashes(cred_id, again, [digest])
            assert sorted(load.received) == sorted(digests)
            for digest, signature in load.received.items():
                _verify(cred["certificate"], digest, signature)

            # The same process leads its background work again, and the log
            # catches up with every event, contiguous, past its size at the kill.
            await _await(
                lambda: _async_gauge(svc.url, "cloudsign_background_leader", 1),
                "the service to lead its background work again",
            )
            count, top, _size, seqs, _total = await _await(
                lambda: _all_sequenced(db), "every event sequenced after the outage"
            )
            assert count > at_kill["leaves"], "the log did not grow after the outage"
            assert top == count - 1 and seqs == count, "the log's leaves have a gap"
            uses, rows = await _signing_records(db, cred_id)
            _check_signatures(load.received, uses, rows)
            assert svc.proc.poll() is None and _healthy(svc.url)
            assert await asyncio.to_thread(_ready_status, svc.url) == 200
    finally:
        await db.close()


# -- 2. kill -9 of the anchoring chain -------------------------------------------------


@dataclasses.dataclass
class InjectedClock:
    """The service's clock: still until the test moves it (a day closes
    when the test says, not at midnight)."""

    now: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclasses.dataclass
class ChainRig:
    server: TestServer
    url: str
    clock: InjectedClock
    state: Path
    anvil_port: int
    anvil: AnvilProcess
    tmp: Path

    @property
    def app(self) -> web.Application:
        return self.server.app

    async def start_anvil(self, state_interval: int) -> AnvilProcess:
        """anvil on the same port and state file. Launched from the loop's
        thread: its parent-death signal follows the thread that forked it."""
        node = AnvilProcess(
            self.state,
            port=self.anvil_port,
            state_interval=state_interval,
            binary=find_anvil(),
            log_path=self.tmp / "anvil.log",
        )
        node.launch()
        self.anvil = node
        await asyncio.to_thread(node.wait_ready)
        return node


@pytest.fixture
async def chain_rig(
    own_postgres: OwnPostgres, base_settings: Settings, tmp_path: Path
) -> AsyncIterator[ChainRig]:
    """The service (in this process, for its clock) on the test's own
    PostgreSQL and on an anvil the test starts and kills."""
    await asyncio.to_thread(own_postgres.psql, 'CREATE DATABASE "cloudsign"')
    anvil_port = free_port()
    settings = load_settings(
        env={},
        data_dir=base_settings.data_dir,  # the session's HSM token (SoftHSM2 reads it once)
        port=free_port(),
        database_url=own_postgres.url("cloudsign"),
        chain_rpc_url=f"http://127.0.0.1:{anvil_port}",
        chain_confirmations=2,
        chain_poll_interval_ms=100,
        audit_sequence_interval_ms=50,
        access_token_ttl_seconds=86400,  # the session outlives the day the test closes
        development=True,  # anvil's development chain id is accepted only then
        **FAST_SETTINGS,
    )
    clock = InjectedClock()
    app = create_app(settings)
    app[CLOCK] = clock
    app[TOTP_CLOCK] = TEST_TOTP_CLOCK
    server = TestServer(app, host="127.0.0.1", port=settings.port)
    rig = ChainRig(
        server, "", clock, tmp_path / "chain" / "state.json", anvil_port, AnvilProcess(), tmp_path
    )
    try:
        await rig.start_anvil(state_interval=1)
        await server.start_server()
        rig.url = str(server.make_url("")).rstrip("/")
        yield rig
    finally:
        await server.close()
        rig.anvil.kill()


async def _anchor(rig: ChainRig, day: date) -> AnchorState | None:
    state: AnchorState | None = await rig.app[ANCHORER].anchor_state(day)
    return state


async def _on_chain(rpc_url: str, state: AnchorState) -> tuple[Any, int | None]:
    """The day's anchor as the chain has it now, and the confirmations of
    the transaction the service recorded (None: not on this chain)."""
    async with AnchorClient(rpc_url, state.contract) as chain:
        found = await chain.find_anchor(state.day)
        assert state.tx_hash is not None
        depth = await chain.transaction_confirmations(bytes.fromhex(state.tx_hash[2:]))
    return found, depth


async def _auditor_verifies(rig: ChainRig, day: date) -> str:
    """`audit-chain verify` of the day's public export against the chain."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{rig.url}/log/keys") as r:
            keys = await r.json()
        async with http.get(f"{rig.url}/log/exports/{day.isoformat()}") as r:
            assert r.status == 200, await r.text()
            export = rig.tmp / f"{day.isoformat()}.jsonl"
            export.write_bytes(await r.read())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "audit_chain", "verify", str(export),
        "--rpc", rig.anvil.rpc_url, "--contract", keys["contract"],
        "--log-key", keys["log_key"], "--min-confirmations", "2",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    text = out.decode()
    assert proc.returncode == 0, text
    assert f"day {day.isoformat()}: VERIFIED" in text, text
    return text


def _anchoring_failed(caplog: pytest.LogCaptureFixture, since: int) -> bool:
    return any(
        r.name == "cloudsign.audit.anchoring" and "chain.unreachable" in r.getMessage()
        for r in caplog.records[since:]
    )


async def test_kill_9_of_the_chain_mid_load_signing_goes_on_and_a_lost_anchor_is_sent_again(
    chain_rig: ChainRig, caplog: pytest.LogCaptureFixture
) -> None:
    rig = chain_rig
    caplog.set_level(logging.WARNING, logger="cloudsign.audit.anchoring")
    # The service deploys its contract on the chain; the dump holds it.
    await _until(lambda: rig.app[ANCHORER].contract_address is not None, "the contract deployed")
    head = int(await asyncio.to_thread(rpc_call, rig.anvil.rpc_url, "eth_blockNumber"), 16)
    await asyncio.to_thread(rig.anvil.wait_for_dump, head)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_BOUND)) as http:
        await bootstrap_staff(rig.app, http, rig.url)
        client = new_client(rig.url, http)
        totp, cred = await enrolled(client)
        cred_id = cred["credential_id"]
        digests = [hashlib.sha256(os.urandom(16)).digest() for _ in range(30)]
        sad = await _authorise(client, totp, cred_id, digests)
        received: dict[bytes, bytes] = {}
        pending = list(digests)

        async def worker() -> None:
            while pending:
                digest = pending.pop()
                # No retry: the chain going away must not fail a signature.
                (received[digest],) = await client.sign_hashes(cred_id, sad, [digest])
                if len(received) == 8:
                    rig.anvil.kill()  # SIGKILL, mid-load

        await asyncio.wait_for(asyncio.gather(worker(), worker(), worker()), timeout=240)
        assert not rig.anvil.running() and sorted(received) == sorted(digests)
        # Still ready: only the chain's own check reports the outage.
        async with http.get(f"{rig.url}/readyz") as r:
            ready = await r.json()
            assert r.status == 200, ready
        assert ready["checks"]["chain"] != "ok", ready

        # The day ends while the chain is down: it is closed, and the
        # anchorer tries and fails (it records nothing), while citizens sign on.
        day = rig.app[AUDIT_LOG].clock.day_of(rig.clock.now)
        marker = len(caplog.records)
        rig.clock.now = rig.app[AUDIT_LOG].clock.bounds(day)[1] + timedelta(seconds=1)
        checkpoint = await _await(
            lambda: rig.app[AUDIT_LOG].checkpoint(day), "the day closed", within=60
        )
        await _until(lambda: _anchoring_failed(caplog, marker), "an anchoring attempt failing")
        tried = await _anchor(rig, day)
        assert tried is None or tried.status == "pending", tried
        later = [hashlib.sha256(os.urandom(16)).digest() for _ in range(5)]
        sad = await _authorise(client, totp, cred_id, later)
        for digest in later:
            (received[digest],) = await client.sign_hashes(cred_id, sad, [digest])
        for digest, signature in received.items():
            _verify(cred["certificate"], digest, signature)

    # anvil back from its state file (now dumping only at exit, so a kill
    # loses everything it mines from here): the closed day is anchored.
    await rig.start_anvil(state_interval=3600)
    first = await _await(
        lambda: _confirmed(rig, day), "the day anchored after the chain came back", within=120
    )
    assert first.tx_hash is not None
    found, depth = await _on_chain(rig.anvil.rpc_url, first)
    assert found is not None and found.root == checkpoint.root
    assert found.size == checkpoint.tree_size and depth is not None and depth >= 2
    assert "0x" + found.tx_hash.hex() == first.tx_hash

    # kill -9 after the last state dump: the restarted chain has lost the
    # anchor the service recorded. It must notice and anchor the day again.
    rig.anvil.kill()
    dumped = rig.anvil.dumped_block()
    assert dumped is not None and dumped < first.block_number, "the anchor was not lost"
    await rig.start_anvil(state_interval=1)
    lost, _ = await _on_chain(rig.anvil.rpc_url, first)
    # (or already anchored again, if the service was quicker than this read)
    assert lost is None or "0x" + lost.tx_hash.hex() != first.tx_hash

    async def anchored_again() -> AnchorState | None:
        state = await _confirmed(rig, day)
        if state is None or state.attempts <= first.attempts:
            return None
        return state

    second = await _await(anchored_again, "the lost anchor sent again", within=120)
    assert second.attempts == first.attempts + 1, (first, second)
    found, depth = await _on_chain(rig.anvil.rpc_url, second)
    assert found is not None and found.root == checkpoint.root
    assert found.size == checkpoint.tree_size
    assert depth is not None and depth >= 2, "the recorded anchor is not on the chain"
    assert "0x" + found.tx_hash.hex() == second.tx_hash
    report = await _auditor_verifies(rig, day)
    assert f"(tx {second.tx_hash})" in report, report
    async with aiohttp.ClientSession() as http, http.get(f"{rig.url}/log/anchors/{day}") as r:
        public = await r.json()
    assert (public["tx_hash"], public["block_number"]) == (second.tx_hash, second.block_number)
    print(
        f"{len(received)} signed across the outage; day {day} anchored in {first.tx_hash} "
        f"(block {first.block_number}), lost with the chain's last blocks, anchored again "
        f"in {second.tx_hash} (block {second.block_number})"
    )


async def _confirmed(rig: ChainRig, day: date) -> AnchorState | None:
    state = await _anchor(rig, day)
    return state if state is not None and state.status == "confirmed" else None
