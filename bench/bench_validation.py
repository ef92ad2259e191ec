"""The validation service under load, over loopback against a `cloudsign
serve` subprocess on a fresh data dir (so client and server use separate
cores), as bench_status.py runs it.

Before the clock starts: a citizen certificate from the fresh CA
(registered, so its OCSP answers `good`; the key is a local throwaway) signs
a PAdES-LT document, a detached CAdES-B-T and an enveloped XAdES-B-T with
this service's signing code, time-stamped by the running service's TSA and
(LT) with its OCSP/CRL data in the DSS. Each is validated once and must be
TOTAL-PASSED.

Prints, for each: validations/s, latency p50/p99 (`POST /api/v1/validate`:
the worker pool, pyHanko, and the OCSP/CRL fetches the worker makes back to
the service), with `--concurrency` clients against `--workers` validation
worker processes; then the server's peak RSS and its workers' RSS. Also,
once, the same PAdES-LT report as a PDF (`Accept: application/pdf`).

Run: .venv/bin/python bench/bench_validation.py [--quick] [--requests 400]
     [--concurrency 8] [--workers 2] [--kinds pades-lt,cades-t,xades-t]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from asn1crypto import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_status import _env, free_port, iin, wait_ready
from cloudsign.ca import CertificateAuthority, Identity, register
from cloudsign.instance import ca_profile, initialise, prepare_hsm
from cloudsign.settings import load_settings
from cloudsign.signing.cms import HsmOwnerSigner, LevelServices, cades_detached, pades
from cloudsign.signing.xades import xades_enveloped
from cloudsign.storage import Database
from hsm_bridge import HashAlgorithm, HsmBridge, SignatureScheme
from tests.pdfs import simple_pdf

REPO = Path(__file__).resolve().parents[1]
KINDS = ("pades-lt", "cades-t", "xades-t")


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def seed_signer(
    data_dir: Path, public_url: str
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, list[x509.Certificate]]:
    """A registered citizen certificate for a local key, and the CA chain;
    the CA made with the server's public URL (its OCSP, CRLs and TSA there:
    the validation workers fetch only under it)."""
    settings = load_settings(env={}, data_dir=data_dir, public_url=public_url)
    await initialise(settings)
    access = prepare_hsm(settings)
    bridge = HsmBridge(access.module, access.token_label, access.pin)
    await bridge.start()
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        ca = CertificateAuthority.load(bridge, settings.pki_dir, ca_profile(settings.ca))
        who = Identity("person", iin(), "Бенчмарк", "Тексеруші", "bench@example.kz")
        cert = await ca.issue(who, spki)
        chain = ca.chain
    finally:
        await bridge.close()
    db = Database(settings.effective_database_url)
    try:
        async with db.transaction() as conn:
            await register(conn, cert, at=datetime.now(UTC))
    finally:
        await db.close()
    return key, cert, chain


def serve(data_dir: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = _env()
    env.update(
        CLOUDSIGN_PORT=str(port),
        CLOUDSIGN_PUBLIC_URL=f"http://127.0.0.1:{port}",
        CLOUDSIGN_AUDIT_BACKGROUND_TASKS="false",
        CLOUDSIGN_FACE_WORKERS="1",
        CLOUDSIGN_VALIDATION_WORKERS=str(workers),
        CLOUDSIGN_MAX_VALIDATIONS_PER_ADDRESS_PER_HOUR="100000",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "cloudsign.cli", "--data-dir", str(data_dir), "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def signed_samples(
    http: aiohttp.ClientSession,
    base: str,
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate,
    chain: list[x509.Certificate],
    kinds: list[str],
) -> dict[str, dict[str, str]]:
    """Validation request bodies, one per kind, signed by this service's code."""

    async def sign(digest: bytes, h: HashAlgorithm, scheme: SignatureScheme) -> bytes:
        assert scheme == SignatureScheme.ECDSA
        return key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))

    signer = HsmOwnerSigner(sign, "bench", cert, chain)
    services = LevelServices(f"{base}/tsa", (chain[-1],), tuple(chain[:-1]))
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    bodies: dict[str, dict[str, str]] = {}
    if "pades-lt" in kinds:
        pdf = await pades(signer, simple_pdf("bench"), session=http, level="LT", services=services)
        bodies["pades-lt"] = {"signature": b64(pdf)}
    if "cades-t" in kinds:
        content = os.urandom(4096)
        digest = hashlib.sha256(content).digest()
        p7s = await cades_detached(
            signer, digest, "sha256", session=http, level="T", services=services
        )
        bodies["cades-t"] = {"signature": b64(p7s), "content_sha256": b64(digest)}
    if "xades-t" in kinds:
        xml = await xades_enveloped(
            sign,
            "bench",
            cert,
            chain,
            b"<invoice><amount>100</amount><to>bench</to></invoice>",
            signing_time=datetime.now(UTC),
            session=http,
            level="T",
            services=services,
        )
        bodies["xades-t"] = {"signature": b64(xml)}
    return bodies


async def validate(
    http: aiohttp.ClientSession, url: str, body: dict[str, str], accept: str = "application/json"
) -> tuple[int, bytes]:
    async with http.post(url, json=body, headers={"Accept": accept}) as r:
        return r.status, await r.read()


async def load(
    http: aiohttp.ClientSession, url: str, body: dict[str, str], requests: int, concurrency: int
) -> tuple[float, list[float]]:
    """`requests` validations from `concurrency` clients: (per second, latencies)."""
    remaining = requests
    latencies: list[float] = []

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            status, reply = await validate(http, url, body)
            latencies.append(time.perf_counter() - t0)
            assert status == 200, reply[:300]
            assert b'"indication":"TOTAL-PASSED"' in reply.replace(b" ", b""), reply[:3000]

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return requests / (time.perf_counter() - start), latencies


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


async def main(requests: int, concurrency: int, workers: int, kinds: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="cloudsign-bench-validation-") as tmp:
        data_dir = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        key, cert, chain = await seed_signer(data_dir, base)
        proc = serve(data_dir, port, workers)
        url = f"{base}/api/v1/validate"
        try:
            conn = aiohttp.TCPConnector(limit=concurrency + 4)
            async with aiohttp.ClientSession(connector=conn) as http:
                await wait_ready(http, base)
                bodies = await signed_samples(http, base, key, cert, chain, kinds)
                sizes = {k: len(base64.b64decode(b["signature"])) for k, b in bodies.items()}
                print(
                    f"{workers} validation worker(s), {concurrency} concurrent clients, "
                    f"{requests} validations per kind; CPUs: {os.cpu_count()}"
                )
                for kind in kinds:
                    body = bodies[kind]
                    # Warm-up: workers spawned and imported, caches and connections filled.
                    await load(http, url, body, max(workers * 2, 4), min(concurrency, workers))
                    rate, lat = await load(http, url, body, requests, concurrency)
                    print(
                        f"{kind:9s} ({sizes[kind]:6d} bytes): {rate:7.1f} validations/s  "
                        f"p50 {pct(lat, 50) * 1e3:7.1f} ms  p99 {pct(lat, 99) * 1e3:7.1f} ms"
                    )
                if "pades-lt" in bodies:
                    t0 = time.perf_counter()
                    status, pdf = await validate(
                        http, url, bodies["pades-lt"], accept="application/pdf"
                    )
                    took = time.perf_counter() - t0
                    assert status == 200 and pdf.startswith(b"%PDF-"), pdf[:300]
                    print(
                        f"pades-lt as a PDF report: {took * 1e3:.0f} ms, {len(pdf)} bytes "
                        "(one request)"
                    )
                server_peak = _status_kib(proc.pid, "VmHWM")
                worker_rss = [_status_kib(c, "VmRSS") for c in _children(proc.pid)]
                print(
                    f"server peak RSS: {server_peak / 1024:.0f} MiB; its child processes "
                    f"(validation and face workers) now: "
                    + ", ".join(f"{r / 1024:.0f}" for r in worker_rss)
                    + " MiB"
                )
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"client peak RSS: {peak / 1024:.0f} MiB")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=400, help="validations per kind")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="validation worker processes")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--quick", action="store_true", help="a short run: 40 validations per kind")
    a = ap.parse_args()
    chosen = [k for k in a.kinds.split(",") if k]
    unknown = set(chosen) - set(KINDS)
    if unknown:
        ap.error(f"unknown kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    asyncio.run(main(40 if a.quick else a.requests, a.concurrency, a.workers, chosen))
