"""What an operator watches: `/metrics` (Prometheus text), `/healthz` and
`/readyz`, request ids echoed and carried by every log line, JSON log lines,
and no secret or personal field in any of them."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from cloudsign.appkeys import GUARD, READINESS
from cloudsign.errors import RateLimitedError
from cloudsign.guard import Limit
from cloudsign.web.health import Probe
from cloudsign.web.logs import (
    JsonFormatter,
    SafeAccessLogger,
    install_request_ids,
    request_id_middleware,
)
from device_client.client import CloudsignClient
from tests.helpers import passed_face_check, person
from tests.staff import DESKS


async def _samples(
    http: aiohttp.ClientSession, url: str
) -> dict[tuple[str, tuple[Any, ...]], float]:
    async with http.get(url) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await r.text()
    out: dict[tuple[str, tuple[Any, ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict[tuple[str, tuple[Any, ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_requests_by_route_pattern_not_raw_path(
    http: aiohttp.ClientSession, base_url: str
) -> None:
    before = await _samples(http, f"{base_url}/metrics")
    secret_path = uuid.uuid4().hex
    for _ in range(3):
        async with http.get(f"{base_url}/pki/ca/root.pem") as r:
            assert r.status == 200
    async with http.get(f"{base_url}/no/such/{secret_path}") as r:
        assert r.status == 404
    async with http.get(f"{base_url}/api/v1/signing-requests/{secret_path}") as r:
        assert r.status == 401
    after = await _samples(http, f"{base_url}/metrics")
    name = "cloudsign_http_requests_total"
    root = {"route": "/pki/ca/{which}.pem", "method": "GET", "status": "200"}
    assert _value(after, name, **root) - _value(before, name, **root) == 3
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    assert _value(after, name, **unmatched) - _value(before, name, **unmatched) >= 1
    assert (
        _value(
            after,
            "cloudsign_http_request_duration_seconds_count",
            route="/pki/ca/{which}.pem",
            method="GET",
        )
        >= 3
    )
    # The path's values never become a label.
    assert not any(secret_path in str(labels) for _, labels in after)
    # The families the issue names are all there.
    names = {n for n, _ in after}
    for family in (
        "cloudsign_hsm_queue_depth",
        "cloudsign_face_pool_pending",
        "cloudsign_audit_sequencer_lag_events",
        "cloudsign_audit_sequencer_lag_seconds",
        "cloudsign_audit_last_anchored_day_timestamp_seconds",
        "cloudsign_http_requests_in_flight",
    ):
        assert family in names, family


async def test_hsm_and_face_calls_are_timed(
    http: aiohttp.ClientSession, base_url: str, client: CloudsignClient
) -> None:
    await DESKS[base_url].proof(person())  # a desk capture: one face-worker call at least
    async with http.get(f"{base_url}/readyz") as r:  # one HSM round trip
        assert r.status == 200
    samples = await _samples(http, f"{base_url}/metrics")
    assert _value(samples, "cloudsign_hsm_operation_duration_seconds_count", operation="ping") >= 1
    assert (
        sum(v for (n, _), v in samples.items() if n == "cloudsign_hsm_queue_wait_seconds_count")
        >= 1
    )
    face = sum(
        v for (n, _), v in samples.items() if n == "cloudsign_face_check_duration_seconds_count"
    )
    assert face >= 1


async def test_rate_limit_refusals_are_counted_by_limit(
    http: aiohttp.ClientSession, base_url: str, app: Any
) -> None:
    limit = Limit(f"test.metrics.{uuid.uuid4().hex[:8]}", 1, timedelta(minutes=5))
    guard = app[GUARD]
    await guard.attempt([(limit, "someone")], factor="test")
    for _ in range(2):
        with pytest.raises(RateLimitedError):
            await guard.attempt([(limit, "someone")], factor="test")
    samples = await _samples(http, f"{base_url}/metrics")
    assert (
        _value(
            samples, "cloudsign_rate_limit_refusals_total", limit=limit.name, kind="rate_limited"
        )
        == 2
    )


async def test_readyz_names_each_part_and_fails_on_a_required_one(
    http: aiohttp.ClientSession, base_url: str, app: Any
) -> None:
    async with http.get(f"{base_url}/readyz") as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    assert body["status"] == "ready"
    assert {"database", "hsm", "face_pool", "chain"} <= set(body["checks"])
    for part in ("database", "hsm", "face_pool"):
        assert body["checks"][part] == "ok"

    async def broken() -> None:
        raise ConnectionError("secret detail 10.0.0.7")

    probes = app[READINESS]
    probes["test_optional"] = Probe(broken, required=False)
    try:
        async with http.get(f"{base_url}/readyz") as r:
            assert r.status == 200  # an optional part reports, it does not fail
            assert (await r.json())["checks"]["test_optional"] == "failed: ConnectionError"
        probes["test_required"] = Probe(broken)
        async with http.get(f"{base_url}/readyz") as r:
            assert r.status == 503
            text = await r.text()
        assert json.loads(text)["status"] == "unready" and "10.0.0.7" not in text
    finally:
        probes.pop("test_optional", None)
        probes.pop("test_required", None)
    async with http.get(f"{base_url}/healthz") as r:
        assert r.status == 200


async def test_every_answer_carries_a_request_id(
    http: aiohttp.ClientSession, base_url: str
) -> None:
    seen = set()
    for method, path in (
        ("GET", "/healthz"),
        ("GET", "/nothing/here"),
        ("POST", "/api/v1/sessions/challenge"),  # no body: a problem+json 400/415
        ("GET", "/api/v1/me"),  # 401
    ):
        async with http.request(method, f"{base_url}{path}") as r:
            rid = r.headers["X-Request-Id"]
            assert len(rid) == 32 and int(rid, 16) >= 0
            seen.add(rid)
    assert len(seen) == 4
    async with http.get(f"{base_url}/healthz", headers={"X-Request-Id": "lb-1234abcd"}) as r:
        assert r.headers["X-Request-Id"] == "lb-1234abcd"
    for offered in ("short", "x" * 65, "has space in it", "evil<script>id"):
        async with http.get(f"{base_url}/healthz", headers={"X-Request-Id": offered}) as r:
            assert r.headers["X-Request-Id"] != offered


async def test_log_lines_carry_the_request_id_as_json(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("cloudsign.test.observability")

    async def handler(request: web.Request) -> web.Response:
        logger.info("handling it")
        return web.Response(text="ok")

    app = web.Application(middlewares=[request_id_middleware])
    install_request_ids(app)
    app.router.add_get("/x", handler)
    caplog.set_level(logging.INFO)
    async with TestClient(TestServer(app)) as tc:
        resp = await tc.get("/x", headers={"X-Request-Id": "req-0123456789"})
        assert resp.headers["X-Request-Id"] == "req-0123456789"
        resp = await tc.get("/x")
        generated = resp.headers["X-Request-Id"]
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == logger.name]
    assert [line["request_id"] for line in lines] == ["req-0123456789", generated]
    assert all(line["message"] == "handling it" and line["level"] == "INFO" for line in lines)

    # The access line is written after the handler: it reads the id from the request.
    from aiohttp.test_utils import make_mocked_request

    request = make_mocked_request("GET", "/x")

    async def noop(r: web.Request) -> web.Response:
        return web.Response()

    await request_id_middleware(request, noop)
    caplog.clear()
    access = logging.getLogger("cloudsign.access")
    SafeAccessLogger(access, "").log(request, web.Response(), 0.01)
    (record,) = [r for r in caplog.records if r.name == "cloudsign.access"]
    line = json.loads(JsonFormatter().format(record))
    assert len(line["request_id"]) == 32


async def test_no_secret_or_personal_field_in_any_log_line(
    client: CloudsignClient, base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A whole life: proofing, activation, consents, TOTP, face, credential,
    authorisation and signature, a wrong password; every line the service
    wrote meanwhile, formatted as `cloudsign serve` writes it, names none of
    the secrets or personal fields that went through it."""
    caplog.set_level(logging.DEBUG)
    identity = person()
    password = "Unique-Passphrase-" + uuid.uuid4().hex[:10]
    proofing = await DESKS[base_url].proof(identity)
    await client.activate(proofing["activation_code"])
    await client.accept_consents()
    totp = await client.setup_totp()
    face_id = await passed_face_check(client)
    cred = await client.create_credential(password, await totp.fresh_code(), face_id, "ec-p256")
    face_id = await passed_face_check(client)
    digest = hashlib.sha256(b"observed").digest()
    sad = await client.authorize(
        cred["credential_id"],
        [digest],
        password=password,
        otp=await totp.fresh_code(),
        face_challenge_id=face_id,
    )
    (signature,) = await client.sign_hashes(cred["credential_id"], sad, [digest])
    face_id = await passed_face_check(client)
    with pytest.raises(Exception):  # noqa: B017,PT011 - any refusal; the log is the point
        await client.authorize(
            cred["credential_id"],
            [digest],
            password=password + "x",
            otp=await totp.fresh_code(),
            face_challenge_id=face_id,
        )

    secrets = {
        "password": password,
        "iin": identity["iin"],
        "given name": identity["given_name"],
        "email": identity["email"],
        "activation code": proofing["activation_code"],
        "totp seed": totp.totp.secret,
        "access token": client.access_token,
        "SAD": sad,
        "signature": signature.hex(),
    }
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records]
    assert lines, "the flow wrote no log line at all"
    for line in lines:
        json.loads(line)
        for what, value in secrets.items():
            assert value not in line, f"{what} in a log line: {line[:300]}"
