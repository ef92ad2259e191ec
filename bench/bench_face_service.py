"""Does face matching leave the event loop free? An in-process server runs 4
face verifications at once while a client polls /healthz every 10 ms; the
/healthz latency p50/p99 (the event-loop lag as a client sees it) is
printed beside the same figure with the server idle, and the verification
time per burst.

Run: .venv/bin/python bench/bench_face_service.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloudsign.app import create_app
from cloudsign.appkeys import TOTP_CLOCK
from cloudsign.settings import load_settings
from device_client.client import CloudsignClient
from tests.face_images import live_burst
from tests.helpers import FAST_SETTINGS, enrolled, free_port, new_client
from tests.helpers import TOTP_CLOCK as STEPPING_CLOCK
from tests.staff import bootstrap_staff


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def poll_health(http: aiohttp.ClientSession, base: str, stop: asyncio.Event) -> list[float]:
    lags: list[float] = []
    while not stop.is_set():
        t0 = time.perf_counter()
        async with http.get(f"{base}/healthz") as resp:
            await resp.read()
        lags.append(time.perf_counter() - t0)
        await asyncio.sleep(0.01)
    return lags


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        settings = load_settings(env={}, data_dir=Path(tmp), port=port, **FAST_SETTINGS)
        app = create_app(settings)
        app[TOTP_CLOCK] = STEPPING_CLOCK
        server = TestServer(app, host="127.0.0.1", port=port)
        await server.start_server()
        base = str(server.make_url("")).rstrip("/")
        async with aiohttp.ClientSession() as http:
            # The centre's staff: citizens are proofed at its desk first.
            await bootstrap_staff(app, http, base)
            clients = []
            for _ in range(4):
                c = new_client(base, http)
                await enrolled(c)
                clients.append(c)

            stop = asyncio.Event()
            idle_task = asyncio.create_task(poll_health(http, base, stop))
            await asyncio.sleep(2)
            stop.set()
            idle = await idle_task

            async def verify(c: CloudsignClient) -> float:
                ch = await c.face_challenge()
                frames = live_burst("obama_2.jpg", ch["actions"])
                t0 = time.perf_counter()
                await c.send_burst(ch["challenge_id"], frames)
                return time.perf_counter() - t0

            stop = asyncio.Event()
            busy_task = asyncio.create_task(poll_health(http, base, stop))
            bursts: list[float] = []
            for _ in range(rounds):
                bursts += await asyncio.gather(*[verify(c) for c in clients])
            stop.set()
            busy = await busy_task
        await server.close()
    print(
        f"/healthz latency, idle:                     p50 {pct(idle, 50) * 1e3:6.1f} ms  "
        f"p99 {pct(idle, 99) * 1e3:6.1f} ms  (n={len(idle)})"
    )
    print(
        f"/healthz latency, 4 verifications running:  p50 {pct(busy, 50) * 1e3:6.1f} ms  "
        f"p99 {pct(busy, 99) * 1e3:6.1f} ms  (n={len(busy)})"
    )
    print(
        f"burst verification (5 frames, {settings.face_workers} workers, 4 at once): "
        f"p50 {pct(bursts, 50):.2f} s  p99 {pct(bursts, 99):.2f} s  (n={len(bursts)})"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(ap.parse_args().rounds))
