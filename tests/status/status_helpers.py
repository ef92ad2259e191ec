"""Helpers of the status-service tests: openssl runs, PEM files of an
enrolled citizen's chain, OCSP requests built with asn1crypto."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from asn1crypto import ocsp, pem, x509

from cloudsign.settings import Settings
from tests.helpers import REPO
from tests.staff import STAFF

T = TypeVar("T")


def load_pem(text: str) -> x509.Certificate:
    _, _, der = pem.unarmor(text.encode())
    return x509.Certificate.load(der)


@dataclass(frozen=True)
class ChainFiles:
    leaf: Path
    issuing: Path
    root: Path
    chain: Path  # issuing + root
    serial: str
    cert: x509.Certificate
    issuer: x509.Certificate


def chain_files(tmp_path: Path, cred: dict[str, Any]) -> ChainFiles:
    leaf = tmp_path / "leaf.pem"
    issuing = tmp_path / "issuing.pem"
    root = tmp_path / "root.pem"
    chain = tmp_path / "chain.pem"
    leaf.write_text(cred["certificate"])
    issuing.write_text(cred["chain"][0])
    root.write_text(cred["chain"][1])
    chain.write_text(cred["chain"][0] + cred["chain"][1])
    return ChainFiles(
        leaf,
        issuing,
        root,
        chain,
        cred["certificate_serial"],
        load_pem(cred["certificate"]),
        load_pem(cred["chain"][0]),
    )


def openssl(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *args],
        capture_output=True,
        text=True,
        check=False,
        input=input.decode("latin-1") if input is not None else None,
    )


async def openssl_async(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(openssl, *args)


async def openssl_ocsp(files: ChainFiles, base_url: str, *extra: str) -> str:
    """`openssl ocsp` against the responder; returns stdout+stderr."""
    done = await openssl_async(
        "ocsp",
        "-issuer",
        str(files.issuing),
        "-cert",
        str(files.leaf),
        "-url",
        f"{base_url}/pki/ocsp",
        "-CAfile",
        str(files.root),
        *extra,
    )
    return done.stdout + done.stderr


def cert_id(cert_serial: int, issuer: x509.Certificate, hash_name: str = "sha1") -> ocsp.CertId:
    key_bits = bytes(issuer.public_key["public_key"].contents[1:])
    return ocsp.CertId(
        {
            "hash_algorithm": {"algorithm": hash_name},
            "issuer_name_hash": hashlib.new(hash_name, issuer.subject.dump()).digest(),
            "issuer_key_hash": hashlib.new(hash_name, key_bits).digest(),
            "serial_number": cert_serial,
        }
    )


def ocsp_request(*ids: ocsp.CertId, nonce: bytes | None = None) -> bytes:
    tbs: dict[str, Any] = {"request_list": [{"req_cert": cid} for cid in ids]}
    if nonce is not None:
        tbs["request_extensions"] = [{"extn_id": "nonce", "extn_value": nonce}]
    return bytes(ocsp.OCSPRequest({"tbs_request": tbs}).dump())


async def post_ocsp(http: aiohttp.ClientSession, base_url: str, body: bytes) -> ocsp.OCSPResponse:
    async with http.post(
        f"{base_url}/pki/ocsp",
        data=body,
        headers={"Content-Type": "application/ocsp-request"},
    ) as r:
        assert r.status == 200
        assert r.content_type == "application/ocsp-response"
        return ocsp.OCSPResponse.load(await r.read())


async def healthy(http: aiohttp.ClientSession, base_url: str) -> None:
    async with http.get(f"{base_url}/healthz") as r:
        assert r.status == 200


def operator_headers(base_url: str, role: str = "revocation") -> dict[str, str]:
    """The Bearer header of the server's signed-in operator with `role`
    (tests/staff.py)."""
    operator = getattr(STAFF[base_url], role)
    return {"Authorization": f"Bearer {operator.token}"}


def operator_url(base_url: str, path: str) -> str:
    """`path` on the operator listener of the server at `base_url`."""
    return STAFF[base_url].url + path


async def operator_revoke(
    http: aiohttp.ClientSession, base_url: str, serial: str, reason: str, **extra: str
) -> tuple[int, dict[str, Any]]:
    """A revocation officer revokes, over the operator listener."""
    async with http.post(
        operator_url(base_url, "/operator/api/v1/revocations"),
        json={"serial": serial, "reason": reason, **extra},
        headers=operator_headers(base_url),
    ) as r:
        return r.status, await r.json(content_type=None)


async def eventually(
    probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], within: float = 10.0
) -> T:
    """Poll `probe` until `ok(result)`; the last result otherwise."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if ok(result) or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.2)


async def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line beside the in-process server. On a thread: the test
    server shares this event loop, and a loop blocked on the subprocess
    would hold a server transaction open that the command waits for."""
    return await asyncio.to_thread(_cli, settings, *args)


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSIGN_", "SOFTHSM2_"))}
    env["CLOUDSIGN_DATABASE_URL"] = settings.effective_database_url
    return subprocess.run(
        [sys.executable, "-m", "cloudsign.cli", "--data-dir", str(settings.data_dir), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
