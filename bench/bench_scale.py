"""HSM-bound paths on one process and on two (`cloudsign serve --workers
2`, one port), in one run on one PostgreSQL database: OCSP with a fresh
nonce (signed each time) and RFC 3161 time-stamps, each for a bounded
number of requests from `--concurrency` clients on loopback. Prints
responses/s, p50/p99 latency, errors, and the two-process ratio.

The load generator runs on the same machine: on 2 cores the client takes
part of the CPU the second process would use, so the ratio here is a lower
bound of what a second machine adds.

Run: .venv/bin/python bench/bench_scale.py [--requests 4000] [--concurrency 64]
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
from bench_status import (
    REPO,
    free_port,
    ocsp_request,
    seed_certificate,
    status_of,
    ts_query,
)

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


async def run(
    data_dir: Path, database_url: str, workers: int, n: int, c: int, cert: Any, issuer: Any
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
            print(
                f"  {workers} process{'es' if workers > 1 else ''}: {name:10} {rate:7.0f}/s  "
                f"p50 {pct(lat, 0.5):6.1f} ms  p99 {pct(lat, 0.99):6.1f} ms  errors {errors}"
            )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


async def main(n: int, c: int) -> None:
    name = f"cloudsign_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    database_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        with tempfile.TemporaryDirectory(prefix="cloudsign-bench-scale-") as tmp:
            data_dir = Path(tmp)
            cert, issuer = await seed_certificate(data_dir, database_url)
            print(f"{n} requests per path, {c} concurrent clients, {os.cpu_count()} CPUs")
            one = await run(data_dir, database_url, 1, n, c, cert, issuer)
            two = await run(data_dir, database_url, 2, n, c, cert, issuer)
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
    a = ap.parse_args()
    asyncio.run(main(a.requests, a.concurrency))
