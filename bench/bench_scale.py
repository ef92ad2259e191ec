"""HSM-bound paths on one process and on two (`cloudsign serve --workers
2`, one port), in one run on one PostgreSQL database: OCSP with a fresh
nonce (signed each time) and RFC 3161 time-stamps, each for a bounded
number of requests from `--concurrency` clients on loopback, and batch
signHash: `--sads` SADs of `--batch` hashes each, authorised beforehand
(face + OTP + password) on an in-process server over the same database and
token, then signed `--per-request` hashes a request by 8 clients against
the measured processes. Prints responses (signatures) per second, p50/p99
latency, errors, and the two-process ratio.

The load generator runs on the same machine: on 2 cores the client takes
part of the CPU the second process would use, so the ratio here is a lower
bound of what a second machine adds.

Run: .venv/bin/python bench/bench_scale.py [--requests 4000] [--concurrency 64]
     [--sads 8] [--batch 1000] [--per-request 250]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from aiohttp.test_utils import TestServer
from bench_signing import face_check
from bench_status import (
    REPO,
    free_port,
    ocsp_request,
    seed_certificate,
    status_of,
    ts_query,
)

from cloudsign.app import create_app
from cloudsign.appkeys import TOTP_CLOCK
from cloudsign.settings import load_settings
from device_client.client import ApiError, CloudsignClient
from tests.helpers import FAST_SETTINGS, enrolled, new_client, person
from tests.helpers import TOTP_CLOCK as STEPPING_CLOCK
from tests.staff import bootstrap_staff

PG_ADMIN = os.environ.get("CLOUDSIGN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def serve(data_dir: Path, port: int, workers: int, database_url: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSIGN_", "SOFTHSM2_"))}
    env.update(
        CLOUDSIGN_DEVELOPMENT="true",
        CLOUDSIGN_OPERATOR_PORT="0",
        CLOUDSIGN_PORT=str(port),
        CLOUDSIGN_DATABASE_URL=database_url,
        CLOUDSIGN_FACE_WORKERS="1",
        CLOUDSIGN_CHAIN_ANVIL_PORT="0",
    )
    cmd = [sys.executable, "-m", "cloudsign.cli", "--data-dir", str(data_dir), "serve"]
    return subprocess.Popen(
        [*cmd, "--workers", str(workers)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def ready(http: aiohttp.ClientSession, base: str, workers: int) -> None:
    """Every worker answers (SO_REUSEPORT spreads new connections)."""
    deadline = time.monotonic() + 120
    seen = 0
    while time.monotonic() < deadline:
        try:
            async with http.get(f"{base}/readyz") as r:
                seen = seen + 1 if r.status == 200 else 0
        except aiohttp.ClientError:
            seen = 0
        if seen >= 10 * workers:
            return
        await asyncio.sleep(0.1)
    raise SystemExit("server did not become ready")


async def load(
    url: str, bodies: list[bytes], content_type: str, concurrency: int
) -> tuple[float, list[float], int, bytes]:
    """POST every body; (per second, latencies in s, errors, one reply)."""
    queue = iter(bodies)
    latencies: list[float] = []
    errors = 0
    last = b""
    # A connection per client, so the kernel spreads them over the workers.
    conn = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=conn) as http:

        async def client() -> None:
            nonlocal errors, last
            for body in queue:
                began = time.perf_counter()
                try:
                    async with http.post(
                        url, data=body, headers={"Content-Type": content_type}
                    ) as r:
                        last = await r.read()
                        if r.status != 200:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.perf_counter() - began)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return len(bodies) / elapsed, sorted(latencies), errors, last


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


def report(workers: int, name: str, rate: float, lat: list[float], errors: int) -> None:
    print(
        f"  {workers} process{'es' if workers > 1 else ''}: {name:10} {rate:7.0f}/s  "
        f"p50 {pct(lat, 0.5):6.1f} ms  p99 {pct(lat, 0.99):6.1f} ms  errors {errors}"
    )


async def run(
    data_dir: Path,
    database_url: str,
    workers: int,
    n: int,
    c: int,
    cert: Any,
    issuer: Any,
    sads: list[tuple[str, str, str, list[bytes]]],
    per_request: int,
) -> dict[str, float]:
    port = free_port()
    proc = serve(data_dir, port, workers, database_url)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession() as http:
            await ready(http, base, workers)
        warm = [ocsp_request(cert, issuer, secrets.token_bytes(16)) for _ in range(300)]
        await load(f"{base}/pki/ocsp", warm, "application/ocsp-request", c)
        for name, url, kind, make in (
            (
                "OCSP nonce",
                "/pki/ocsp",
                "application/ocsp-request",
                lambda: ocsp_request(cert, issuer, secrets.token_bytes(16)),
            ),
            ("TSA", "/tsa", "application/timestamp-query", ts_query),
        ):
            bodies = [make() for _ in range(n)]  # made before the clock starts
            rate, lat, errors, last = await load(base + url, bodies, kind, c)
            if name == "OCSP nonce":
                assert status_of(last) == "good"
            out[name] = rate
            report(workers, name, rate, lat, errors)
        rate, lat, errors = await sign_load(base, sads, per_request)
        out["signHash"] = rate
        report(workers, "signHash", rate, lat, errors)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


class Authoriser:
    """An in-process server on the benchmark's database and token, idle
    while the measured processes run: it enrols two citizens and authorises
    their SADs (the face check is a second of CPU; it is not what is
    measured here). Its background tasks are off: the measured processes
    sequence the log."""

    def __init__(self, data_dir: Path, database_url: str) -> None:
        port = free_port()
        settings = load_settings(
            env={},
            data_dir=data_dir,
            port=port,
            database_url=database_url,
            **{
                **FAST_SETTINGS,
                "totp_period_seconds": 5,
                "audit_background_tasks": False,
                "status_background_tasks": False,
            },
        )
        self.app = create_app(settings)
        self.app[TOTP_CLOCK] = STEPPING_CLOCK
        self.server = TestServer(self.app, host="127.0.0.1", port=port)
        self.citizens: list[tuple[CloudsignClient, Any, dict[str, Any]]] = []

    async def start(self, http: aiohttp.ClientSession) -> None:
        await self.server.start_server()
        base = str(self.server.make_url("")).rstrip("/")
        await bootstrap_staff(self.app, http, base)
        for _ in range(2):
            client = new_client(base, http)
            totp, cred = await enrolled(client, identity=person())
            self.citizens.append((client, totp, cred))

    async def sads(self, count: int, batch: int) -> list[tuple[str, str, str, list[bytes]]]:
        """(access token, credential id, SAD, hashes), `count` of them."""
        out = []
        for i in range(count):
            client, totp, cred = self.citizens[i % len(self.citizens)]
            digests = [os.urandom(32) for _ in range(batch)]
            face = await face_check(client)
            sad = await client.authorize(
                cred["credential_id"],
                digests,
                password="correct horse battery",
                otp=await totp.fresh_code(),
                face_challenge_id=face,
            )
            assert client.access_token is not None
            out.append((client.access_token, cred["credential_id"], sad, digests))
        return out

    async def close(self) -> None:
        await self.server.close()


async def sign_load(
    base: str, sads: list[tuple[str, str, str, list[bytes]]], per_request: int
) -> tuple[float, list[float], int]:
    """Every SAD's hashes, `per_request` a request, 8 clients; (signatures
    per second, latencies, errors)."""
    jobs = [
        (token, cred_id, sad, digests[i : i + per_request])
        for token, cred_id, sad, digests in sads
        for i in range(0, len(digests), per_request)
    ]
    queue = iter(jobs)
    latencies: list[float] = []
    errors = 0
    signed = 0
    conn = aiohttp.TCPConnector(limit=8)
    async with aiohttp.ClientSession(connector=conn) as http:

        async def client() -> None:
            nonlocal errors, signed
            for token, cred_id, sad, hashes in queue:
                c = CloudsignClient(base, http, access_token=token)
                began = time.perf_counter()
                try:
                    sigs = await c.sign_hashes(cred_id, sad, hashes)
                except (aiohttp.ClientError, ApiError):
                    errors += 1
                else:
                    signed += len(sigs)
                latencies.append(time.perf_counter() - began)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(8)))
        elapsed = time.perf_counter() - start
    return signed / elapsed, sorted(latencies), errors


async def main(n: int, c: int, sad_count: int, batch: int, per_request: int) -> None:
    name = f"cloudsign_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    database_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        with tempfile.TemporaryDirectory(prefix="cloudsign-bench-scale-") as tmp:
            data_dir = Path(tmp)
            cert, issuer = await seed_certificate(data_dir, database_url)
            authoriser = Authoriser(data_dir, database_url)
            async with aiohttp.ClientSession() as http:
                await authoriser.start(http)
                try:
                    print(
                        f"{n} requests per path, {c} concurrent clients; signHash: {sad_count} "
                        f"SADs x {batch} hashes, {per_request} a request, 8 clients; "
                        f"{os.cpu_count()} CPUs"
                    )
                    results = []
                    for workers in (1, 2):
                        sads = await authoriser.sads(sad_count, batch)
                        results.append(
                            await run(
                                data_dir,
                                database_url,
                                workers,
                                n,
                                c,
                                cert,
                                issuer,
                                sads,
                                per_request,
                            )
                        )
                finally:
                    await authoriser.close()
            one, two = results
            for path in one:
                print(f"two processes / one: {path:10} {two[path] / one[path]:.2f}x")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--sads", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--per-request", type=int, default=250)
    a = ap.parse_args()
    asyncio.run(main(a.requests, a.concurrency, a.sads, a.batch, a.per_request))
