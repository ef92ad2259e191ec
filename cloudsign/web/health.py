"""`/healthz`: the process answers (liveness, for load balancers and
supervisors). `/readyz`: the process can serve now (readiness, for the load
balancer's rotation).

`/readyz` runs every registered probe at once, each under a time limit, and
answers 200 when every *required* one passed, 503 otherwise, with each
probe's outcome in the body (a short reason, never a stack or a secret). The
app registers the database, the HSM and the face pool as required, and the
chain as reported only: every process shares one chain, so an anchoring
outage would otherwise take the whole service out of rotation, while signing
does not need the chain (closed days are anchored when it returns).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from cloudsign.appkeys import READINESS

PROBE_TIMEOUT_SECONDS: Final = 3.0

routes = web.RouteTableDef()


@dataclass(frozen=True)
class Probe:
    """`check()` returns when the part works and raises when it does not."""

    check: Callable[[], Awaitable[object]]
    required: bool = True


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _outcome(probe: Probe) -> str:
    try:
        await asyncio.wait_for(probe.check(), PROBE_TIMEOUT_SECONDS)
    except TimeoutError:
        return "timeout"
    except Exception as e:  # noqa: BLE001 - a probe reports any failure, never raises
        return f"failed: {type(e).__name__}"
    return "ok"


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    probes = request.app.get(READINESS, {})
    names = sorted(probes)
    outcomes = await asyncio.gather(*(_outcome(probes[n]) for n in names))
    checks = dict(zip(names, outcomes, strict=True))
    ready = all(checks[n] == "ok" for n in names if probes[n].required)
    return web.json_response(
        {"status": "ready" if ready else "unready", "checks": checks},
        status=200 if ready else 503,
        headers={"Cache-Control": "no-store"},
    )
