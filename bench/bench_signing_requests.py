"""Signing requests approved on a phone, end to end over real HTTP against an
in-process server (temporary data dir, SoftHSM2, SQLite, face workers).

Prints:
- signing requests created per second by one relying party (each with one
  SHA-256 to sign in CAdES), over `--create` requests at 8 in flight;
- the time from "approve" on the phone (the moment the citizen has passed
  the face check and presses approve: approval challenge, WebAuthn
  assertion, K_pw wrap, approval, HSM signing) to the signature at the
  requester (its next poll), p50/p95 with 1 and 4 concurrent citizens;
- peak RSS.

Run: .venv/bin/python bench/bench_signing_requests.py [--create 400] [--rounds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloudsign.app import create_app
from cloudsign.appkeys import TOTP_CLOCK
from cloudsign.settings import load_settings
from device_client.authenticator import SoftAuthenticator
from device_client.client import CloudsignClient
from tests.helpers import FAST_SETTINGS, free_port, new_client, passed_face_check
from tests.helpers import TOTP_CLOCK as STEPPING_CLOCK
from tests.mobile.test_devices import PASSWORD, phone_enrolled
from tests.staff import STAFF, bootstrap_staff


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def ms(samples: list[float]) -> str:
    return f"p50 {pct(samples, 50) * 1e3:7.1f} ms  p95 {pct(samples, 95) * 1e3:7.1f} ms"


class Party:
    def __init__(self, base: str, http: aiohttp.ClientSession, reg: dict[str, Any]) -> None:
        self.base, self.http = base, http
        token = f"{reg['client_id']}:{reg['client_secret']}".encode()
        self.headers = {"Authorization": "Basic " + base64.b64encode(token).decode()}

    async def create(self, iin: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "display_text": "Sign the form",
            "documents": [
                {
                    "name": "form",
                    "format": "cades",
                    "hash": base64.b64encode(os.urandom(32)).decode(),
                }
            ],
        }
        if iin is not None:
            body["iin"] = iin
        async with self.http.post(
            self.base + "/api/v1/rp/signing-requests", json=body, headers=self.headers
        ) as resp:
            assert resp.status == 201, await resp.text()
            result: dict[str, Any] = await resp.json()
            return result

    async def result(self, request_id: str) -> dict[str, Any]:
        async with self.http.get(
            self.base + f"/api/v1/rp/signing-requests/{request_id}", headers=self.headers
        ) as resp:
            result: dict[str, Any] = await resp.json()
            return result


async def one_approval(
    party: Party,
    client: CloudsignClient,
    phone: SoftAuthenticator,
    iin: str,
    latencies: list[float],
) -> None:
    made = await party.create(iin)
    face = await passed_face_check(client)  # the citizen's face check comes first
    t0 = time.perf_counter()
    await client.approve(made["request_id"], phone, password=PASSWORD, face_challenge_id=face)
    result = await party.result(made["request_id"])
    latencies.append(time.perf_counter() - t0)
    assert result["status"] == "approved" and result["documents"][0]["signature"]


async def main(creations: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        settings = load_settings(env={}, data_dir=Path(tmp), port=port, **FAST_SETTINGS)
        app = create_app(settings)
        app[TOTP_CLOCK] = STEPPING_CLOCK
        server = TestServer(app, host="127.0.0.1", port=port)
        await server.start_server()
        base = str(server.make_url("")).rstrip("/")
        async with aiohttp.ClientSession() as http:
            await bootstrap_staff(app, http, base)
            reg = await STAFF[base].security.request(
                "POST", "/operator/api/v1/relying-parties", {"name": "bench"}
            )
            party = Party(base, http, reg)

            sem = asyncio.Semaphore(8)

            async def create_one() -> None:
                async with sem:
                    await party.create(None)

            t0 = time.perf_counter()
            await asyncio.gather(*[create_one() for _ in range(creations)])
            took = time.perf_counter() - t0
            print(
                f"signing requests created (one relying party, 8 in flight): "
                f"{creations / took:7.0f} req/s ({creations} in {took:.2f} s)"
            )

            citizens: list[tuple[CloudsignClient, SoftAuthenticator, str]] = []
            for concurrency in (1, 4):
                while len(citizens) < concurrency:
                    c = new_client(base, http)
                    phone, _cred, identity = await phone_enrolled(c)
                    citizens.append((c, phone, identity["iin"]))
                latencies: list[float] = []
                for _ in range(rounds):
                    await asyncio.gather(
                        *[
                            one_approval(party, c, phone, iin, latencies)
                            for c, phone, iin in citizens[:concurrency]
                        ]
                    )
                print(
                    f"approve on the phone -> signature at the requester, "
                    f"{concurrency} concurrent citizen(s), {len(latencies)} approvals: "
                    f"{ms(latencies)}"
                )
        await server.close()
    print(
        f"peak RSS (server process, without face workers): "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--create", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    asyncio.run(main(args.create, args.rounds))
