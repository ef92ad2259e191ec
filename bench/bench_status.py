"""Status services under load, over loopback against a `cloudsign serve`
subprocess on a fresh data dir (so client and server use separate cores).

Prints:
- OCSP responses/s for one good certificate without a nonce (pre-signed,
  cached), and with a fresh nonce per request (signed in the HSM each time);
- the latency of the first OCSP response after an operator revocation
  (API call to a `revoked` answer), and that it is `revoked`;
- time-stamp tokens/s (RFC 3161, signed in the HSM).

Every loop is bounded by a request count.

Run: .venv/bin/python bench/bench_status.py [--requests 20000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from asn1crypto import keys, ocsp, tsp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cloudsign.ca import CertificateAuthority, Identity, check_digit, register, serial_hex
from cloudsign.instance import ca_profile, initialise, prepare_hsm
from cloudsign.settings import load_settings
from cloudsign.storage import Database
from hsm_bridge import HsmBridge

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def iin() -> str:
    while True:
        body = "900101" + "3" + f"{secrets.randbelow(10_000):04d}"
        digit = check_digit(body)
        if digit is not None:
            return body + str(digit)


async def seed_certificate(data_dir: Path, database_url: str = "") -> tuple[Any, Any]:
    """One citizen certificate in the registry (the key is a throwaway:
    only its status matters here)."""
    settings = load_settings(env={}, data_dir=data_dir, database_url=database_url)
    await initialise(settings)
    access = prepare_hsm(settings)
    bridge = HsmBridge(access.module, access.token_label, access.pin)
    await bridge.start()
    try:
        ca = CertificateAuthority.load(bridge, settings.pki_dir, ca_profile(settings.ca))
        spki = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        who = Identity("person", iin(), "Bench", "Citizen", "bench@example.kz")
        cert = await ca.issue(who, spki)
    finally:
        await bridge.close()
    db = Database(settings.effective_database_url)
    try:
        async with db.transaction() as conn:
            await register(conn, cert, at=datetime.now(UTC))
    finally:
        await db.close()
    return cert, ca.issuing


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSIGN_", "SOFTHSM2_"))}
    env.update(CLOUDSIGN_DEVELOPMENT="true", CLOUDSIGN_OPERATOR_PORT="0")
    return env


def serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = _env()
    env.update(
        CLOUDSIGN_PORT=str(port),
        CLOUDSIGN_AUDIT_BACKGROUND_TASKS="false",
        CLOUDSIGN_FACE_WORKERS="1",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "cloudsign.cli", "--data-dir", str(data_dir), "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_ready(http: aiohttp.ClientSession, base: str) -> None:
    for _ in range(300):
        try:
            async with http.get(f"{base}/healthz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("server did not start")


def ocsp_request(cert: Any, issuer: Any, nonce: bytes | None = None) -> bytes:
    key_bits = bytes(issuer.public_key["public_key"].contents[1:])
    cid = {
        "hash_algorithm": {"algorithm": "sha1"},
        "issuer_name_hash": hashlib.sha1(issuer.subject.dump()).digest(),
        "issuer_key_hash": hashlib.sha1(key_bits).digest(),
        "serial_number": cert.serial_number,
    }
    tbs: dict[str, Any] = {"request_list": [{"req_cert": cid}]}
    if nonce is not None:
        tbs["request_extensions"] = [{"extn_id": "nonce", "extn_value": nonce}]
    return bytes(ocsp.OCSPRequest({"tbs_request": tbs}).dump())


def status_of(der: bytes) -> str:
    resp = ocsp.OCSPResponse.load(der)
    single = resp.basic_ocsp_response["tbs_response_data"]["responses"][0]
    return str(single["cert_status"].name)


def ts_query() -> bytes:
    return bytes(
        tsp.TimeStampReq(
            {
                "version": "v1",
                "message_imprint": {
                    "hash_algorithm": {"algorithm": "sha256"},
                    "hashed_message": secrets.token_bytes(32),
                },
                "nonce": secrets.randbits(64),
                "cert_req": True,
            }
        ).dump()
    )


async def load(
    http: aiohttp.ClientSession,
    url: str,
    bodies: Any,
    content_type: str,
    requests: int,
    concurrency: int,
) -> tuple[float, bytes]:
    """`requests` POSTs from `concurrency` workers; returns (per second, a reply)."""
    remaining = requests
    last = b""

    async def worker() -> None:
        nonlocal remaining, last
        while remaining > 0:
            remaining -= 1
            async with http.post(url, data=bodies(), headers={"Content-Type": content_type}) as r:
                last = await r.read()
                assert r.status == 200

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - start), last


async def main(requests: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory(prefix="cloudsign-bench-status-") as tmp:
        data_dir = Path(tmp)
        cert, issuer = await seed_certificate(data_dir)
        port = free_port()
        proc = serve(data_dir, port)
        base = f"http://127.0.0.1:{port}"
        try:
            conn = aiohttp.TCPConnector(limit=concurrency)
            async with aiohttp.ClientSession(connector=conn) as http:
                await wait_ready(http, base)
                ocsp_url = f"{base}/pki/ocsp"
                cached = ocsp_request(cert, issuer)
                await load(http, ocsp_url, lambda: cached, "application/ocsp-request", 500, 8)
                rate, reply = await load(
                    http,
                    ocsp_url,
                    lambda: cached,
                    "application/ocsp-request",
                    requests,
                    concurrency,
                )
                assert status_of(reply) == "good"
                print(
                    f"OCSP good, cached (no nonce):   {rate:8.0f} responses/s  "
                    f"({requests} requests, {concurrency} concurrent)"
                )
                n_nonce = max(requests // 10, 200)
                # Made before the clock starts: the client shares the cores.
                nonced = iter(
                    [ocsp_request(cert, issuer, secrets.token_bytes(16)) for _ in range(n_nonce)]
                )
                rate, reply = await load(
                    http,
                    ocsp_url,
                    lambda: next(nonced),
                    "application/ocsp-request",
                    n_nonce,
                    concurrency,
                )
                print(
                    f"OCSP good, nonce (HSM-signed): {rate:8.0f} responses/s  ({n_nonce} requests)"
                )

                # Revoked by another process (the command line, as an operator
                # would): this server hears of it through the database.
                start = time.perf_counter()
                await asyncio.to_thread(
                    subprocess.run,
                    [
                        sys.executable,
                        "-m",
                        "cloudsign.cli",
                        "--data-dir",
                        str(data_dir),
                        "revoke",
                        serial_hex(cert.serial_number),
                        "--reason",
                        "key-compromise",
                        "--operator",
                        "bench",
                    ],
                    cwd=REPO,
                    env=_env(),
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
                revoked_at = time.perf_counter()
                first = b""
                for _ in range(2000):
                    async with http.post(
                        ocsp_url, data=cached, headers={"Content-Type": "application/ocsp-request"}
                    ) as r:
                        first = await r.read()
                    if status_of(first) == "revoked":
                        break
                    await asyncio.sleep(0.01)
                done = time.perf_counter()
                print(
                    f"OCSP says {status_of(first)} {(done - revoked_at) * 1000:.0f} ms after "
                    f"`cloudsign revoke` returned ({(done - start) * 1000:.0f} ms with the command)"
                )
                rate, reply = await load(
                    http,
                    ocsp_url,
                    lambda: cached,
                    "application/ocsp-request",
                    requests // 4,
                    concurrency,
                )
                print(
                    f"OCSP revoked (signed each time): {rate:6.0f} responses/s  "
                    f"({requests // 4} requests)"
                )

                n_ts = max(requests // 10, 200)

                queries = iter([ts_query() for _ in range(n_ts)])
                rate, reply = await load(
                    http,
                    f"{base}/tsa",
                    lambda: next(queries),
                    "application/timestamp-query",
                    n_ts,
                    concurrency,
                )
                assert reply[:2] and b"\x06\x0b" in reply  # a token came back
                print(f"TSA time-stamp tokens:          {rate:8.0f} tokens/s     ({n_ts} requests)")
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    peak = __import__("resource").getrusage(__import__("resource").RUSAGE_SELF).ru_maxrss
    print(f"client peak RSS: {peak / 1024:.0f} MiB; CPUs: {os.cpu_count()}")
    _ = keys


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=32)
    a = ap.parse_args()
    asyncio.run(main(a.requests, a.concurrency))
