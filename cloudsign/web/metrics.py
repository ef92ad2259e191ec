"""Prometheus metrics of one process, served at `/metrics` in the text format.

Each process has its own registry (and its own `/metrics`); a Prometheus
server scrapes every process behind the load balancer, as it scrapes any
horizontally scaled service, and sums them. Labels are bounded: the route is
the matched resource's pattern (`/api/v1/credentials/{id}`), never the raw
path, and an unmatched path is `unmatched`, so a scanner cannot grow the
series without bound.

What is measured:
- HTTP: requests by route, method and status; latency histograms by route
  and method; requests in flight.
- HSM: every PKCS#11 call's run time by operation, its wait on the process's
  PKCS#11 thread, and the calls queued there now.
- Face checks: each face-worker call's latency by operation (verify, enrol…)
  and the calls queued or running in the pool.
- Audit: sequencer lag (unsequenced events and the age of the oldest), the
  last anchored day, refreshed at every scrape.
- Rate limits: every refusal (429 or 423) by limit.

No label carries a personal value or a secret: routes are patterns, limits
are names.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from cloudsign.appkeys import METRICS

#: Latency buckets (seconds) from sub-millisecond HSM calls to face checks.
LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: The classic text format, which every Prometheus version reads.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

#: Runs before every scrape to refresh what is read from the database.
Refresher = Callable[[], Awaitable[None]]


class Metrics:
    """The process's instruments, on a registry of its own (several apps in
    one test process must not share one)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "cloudsign_http_requests",
            "HTTP requests answered, by route pattern, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "cloudsign_http_request_duration_seconds",
            "Time from the request's arrival to its answer, by route pattern and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "cloudsign_http_requests_in_flight", "Requests being handled now.", registry=r
        )
        self.hsm_seconds = Histogram(
            "cloudsign_hsm_operation_duration_seconds",
            "Run time of PKCS#11 calls on the HSM thread, by operation.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.hsm_wait = Histogram(
            "cloudsign_hsm_queue_wait_seconds",
            "Time a PKCS#11 call waited for the process's HSM thread.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.hsm_queue = Gauge(
            "cloudsign_hsm_queue_depth",
            "PKCS#11 calls submitted and not finished (queued or running).",
            registry=r,
        )
        self.face_seconds = Histogram(
            "cloudsign_face_check_duration_seconds",
            "Face-worker calls from submission to answer (queue included), by operation.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.face_queue = Gauge(
            "cloudsign_face_pool_pending",
            "Face-worker calls queued or running.",
            registry=r,
        )
        self.sequencer_lag_events = Gauge(
            "cloudsign_audit_sequencer_lag_events",
            "Committed events not yet sequenced into the log.",
            registry=r,
        )
        self.sequencer_lag_seconds = Gauge(
            "cloudsign_audit_sequencer_lag_seconds",
            "Age of the oldest committed event not yet sequenced (0 when none).",
            registry=r,
        )
        self.last_anchored_day = Gauge(
            "cloudsign_audit_last_anchored_day_timestamp_seconds",
            "Start (UTC) of the latest day whose checkpoint is confirmed on chain; 0 if none.",
            registry=r,
        )
        self.leader = Gauge(
            "cloudsign_background_leader",
            "1 while this process runs the once-only background work (sequencer, "
            "anchoring, retention, CRL publication), else 0.",
            registry=r,
        )
        self.leader_attempts = Gauge(
            "cloudsign_background_leader_attempts",
            "Times this process tried to become the leader.",
            registry=r,
        )
        self.refusals = Counter(
            "cloudsign_rate_limit_refusals",
            "Attempts refused by a rate limit or a lock-out, by limit.",
            ["limit", "kind"],
            registry=r,
        )
        self._refreshers: list[Refresher] = []

    def add_refresher(self, refresher: Refresher) -> None:
        self._refreshers.append(refresher)

    # -- feeds ---------------------------------------------------------------

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "OTHER"
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def observe_hsm(self, operation: str, waited: float, ran: float) -> None:
        self.hsm_wait.observe(waited)
        self.hsm_seconds.labels(operation).observe(ran)

    def observe_face(self, operation: str, seconds: float) -> None:
        self.face_seconds.labels(operation).observe(seconds)

    def observe_refusal(self, limit: str, kind: str) -> None:
        self.refusals.labels(limit, kind).inc()

    async def render(self) -> bytes:
        for refresher in self._refreshers:
            await refresher()
        return generate_latest(self.registry)


def route_of(request: web.BaseRequest) -> str:
    """The matched resource's pattern, or `unmatched`."""
    match_info = getattr(request, "match_info", None)
    route = getattr(match_info, "route", None)
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    metrics = request.app.get(METRICS)
    if metrics is None:
        return await handler(request)
    started = time.perf_counter()
    status = 500
    metrics.in_flight.inc()
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        metrics.in_flight.dec()
        metrics.observe_request(
            route_of(request), request.method, status, time.perf_counter() - started
        )


routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics_page(request: web.Request) -> web.Response:
    body = await request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
