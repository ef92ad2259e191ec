"""Many processes behind a real load balancer, and safe to kill.

nginx (Debian's, with the shipped `deploy/nginx/proxy.conf`) spreads
requests round-robin over three real service processes: `cloudsign serve
--workers 2` on one port and a single `cloudsign serve` on another, all on
the test server's PostgreSQL database and HSM token. A citizen enrols,
passes face checks, authorises and signs entirely through the balancer, so
consecutive steps land on different processes. In the middle of a signing
load one worker is killed with SIGKILL: the clients' retries succeed on the
others, the supervisor brings the worker back, and every signature a client
received has exactly one `key.use` event and one cabinet row.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from sqlalchemy import func, select

from cloudsign.appkeys import ANCHORER, DATABASE, SETTINGS
from cloudsign.audit.tables import log_leaves
from cloudsign.signing.tables import signed_documents
from cloudsign.storage.schema import events
from device_client.client import ApiError, CloudsignClient
from tests.helpers import FAST_SETTINGS, REPO, free_port, passed_face_check, person
from tests.serving import children, serve, stop, wait_ready
from tests.staff import DESKS

pytestmark = pytest.mark.slow
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _env_of(settings: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in settings.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        out[f"CLOUDSIGN_{key.upper()}"] = text
    return out


def _workers(supervisor: subprocess.Popen[bytes]) -> list[int]:
    """The service processes of `serve --workers`: python children, each
    with its own face workers (their children)."""
    return [p for p in children(supervisor.pid) if children(p)]


def _wait(condition: Any, what: str, within: float = 90.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out: {what}")


def _nginx_conf(tmp: Path, listen: int, upstreams: list[int]) -> Path:
    servers = "".join(f"        server 127.0.0.1:{p} max_fails=0;\n" for p in upstreams)
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""
user root;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream cloudsign {{
{servers}        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://cloudsign;
            include {REPO}/deploy/nginx/proxy.conf;
        }}
    }}
}}
"""
    )
    return conf


@dataclasses.dataclass
class Balanced:
    url: str
    supervisor: subprocess.Popen[bytes]
    workers_port: int
    single: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def balanced(
    app: Any, backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Balanced]:
    if backend != "postgresql":
        pytest.skip("more than one process needs PostgreSQL")
    tmp = tmp_path_factory.mktemp("balanced")
    settings = app[SETTINGS]
    env = {
        **_env_of(FAST_SETTINGS),
        "CLOUDSIGN_DATABASE_URL": settings.effective_database_url,
        # Connected lazily, and by the leader only (the test server).
        "CLOUDSIGN_CHAIN_RPC_URL": app[ANCHORER].rpc_url or "http://127.0.0.1:9",
        "CLOUDSIGN_FACE_WORKERS": "1",
        "CLOUDSIGN_TRUSTED_PROXIES": "127.0.0.1",
        "CLOUDSIGN_OPERATOR_PORT": "0",
    }
    workers_port, single_port, listen = free_port(), free_port(), free_port()
    supervisor = serve(
        settings.data_dir, workers_port, "--workers", "2", log=tmp / "workers.log", **env
    )
    single = serve(settings.data_dir, single_port, log=tmp / "single.log", **env)
    nginx = None
    try:
        wait_ready(supervisor, workers_port)
        wait_ready(single, single_port)
        _wait(lambda: len(_workers(supervisor)) == 2, "two workers")
        conf = _nginx_conf(tmp, listen, [workers_port, single_port])
        nginx = subprocess.Popen(
            [NGINX, "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"],
            stderr=subprocess.PIPE,
        )
        _wait(lambda: _healthy(f"http://127.0.0.1:{listen}"), "nginx in front")
        yield Balanced(f"http://127.0.0.1:{listen}", supervisor, workers_port, single)
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=30)
        for proc in (supervisor, single):
            stop(proc)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _verify(cert_pem: str, digest: bytes, signature: bytes) -> None:
    public = x509.load_pem_x509_certificate(cert_pem.encode()).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))


async def _enrol_through(lb: CloudsignClient, base_url: str) -> tuple[Any, dict[str, Any]]:
    """Proofed at the test server's desk (the operator listener is not
    balanced), everything else through the balancer on real time."""
    proofing = await DESKS[base_url].proof(person(), "obama_1.jpg")
    await lb.activate(proofing["activation_code"])
    await lb.accept_consents()
    totp = await lb.setup_totp()
    face = await passed_face_check(lb)
    cred = await lb.create_credential("correct horse battery", await totp.fresh_code(), face)
    return totp, cred


async def test_enrol_authorise_and_sign_through_the_balancer_and_survive_kill_9(
    balanced: Balanced, app: Any, base_url: str, http: aiohttp.ClientSession
) -> None:
    lb = CloudsignClient(balanced.url, http)  # the real clock: other processes
    totp, cred = await _enrol_through(lb, base_url)
    cred_id = cred["credential_id"]
    digests = [hashlib.sha256(os.urandom(16)).digest() for _ in range(30)]
    face = await passed_face_check(lb)
    sad = await lb.authorize(
        cred_id,
        digests,
        password="correct horse battery",
        otp=await totp.fresh_code(),
        face_challenge_id=face,
    )

    received: dict[bytes, bytes] = {}
    refused: list[tuple[bytes, str]] = []
    killed = asyncio.Event()

    async def sign(digest: bytes) -> None:
        for _attempt in range(5):
            try:
                (signature,) = await lb.sign_hashes(cred_id, sad, [digest])
            except ApiError as e:
                if e.status in (502, 503, 504):
                    continue  # the process went away before answering: retry
                # A hash whose signing process was killed stays reserved:
                # it fails closed, never signs twice.
                refused.append((digest, e.code))
                return
            except aiohttp.ClientError:
                continue
            received[digest] = signature
            if len(received) >= 9 and not killed.is_set():
                # Mid-batch: the batch's other requests are in flight.
                os.kill(_workers(balanced.supervisor)[0], signal.SIGKILL)
                killed.set()
            return
        pytest.fail("no process answered")

    async def load() -> None:
        pending = list(digests)
        while pending:
            batch, pending = pending[:4], pending[4:]
            await asyncio.gather(*(sign(d) for d in batch))

    await load()
    assert killed.is_set()
    print(f"{len(received)} signed, {len(refused)} failed closed after the kill")
    assert {code for _d, code in refused} <= {"invalid_sad"}, refused
    assert len(received) >= len(digests) - 3, (len(received), refused)
    for digest, signature in received.items():
        _verify(cred["certificate"], digest, signature)

    # The killed worker comes back by itself.
    _wait(lambda: len(_workers(balanced.supervisor)) == 2, "the killed worker restarted")

    async with app[DATABASE].read() as conn:
        uses = (
            (
                await conn.execute(
                    select(events.c.data).where(
                        events.c.credential_id == cred_id, events.c.event_type == "key.use"
                    )
                )
            )
            .scalars()
            .all()
        )
        rows = (
            (
                await conn.execute(
                    select(signed_documents.c.document_hash).where(
                        signed_documents.c.credential_id == cred_id
                    )
                )
            )
            .scalars()
            .all()
        )
        leaves, top = (
            await conn.execute(select(func.count(), func.max(log_leaves.c.leaf_index)))
        ).one()
    used = [u["document_hash"] for u in uses]
    assert len(used) == len(set(used)), "an event written twice"
    assert sorted(used) == sorted(rows), "an event without its cabinet row, or a row without"
    assert {d.hex() for d in received} <= set(used), "a signature without its key.use event"
    assert leaves == (top + 1 if top is not None else 0), "the log's tree has a gap"
    assert _healthy(balanced.url)
