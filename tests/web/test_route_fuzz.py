"""Every route in the router answers hostile input with a clear 4xx, echoes
no more than a short prefix of it, and leaves the service healthy.

The routes come from the running app's router, so a route added tomorrow is
fuzzed the day it is added; its field names come from its handler's source
(tests/web/fuzzing.py). Each route gets:
- JSON bodies with each of its fields set to each hostile value, with the
  credentials the route needs (so validation past authentication is reached);
- whole hostile bodies (deep nesting, huge numbers, NaN, invalid UTF-8,
  broken multipart, bad DER, wrong content types, 2 MiB) without, with garbage
  and with valid credentials;
- hostile path parameters and query values;
and after each route the service must still answer /healthz.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from yarl import URL

from cloudsign.web.auth import CSRF_HEADER, SESSION_COOKIE, csrf_token
from device_client.client import CloudsignClient
from tests.helpers import FAST_SETTINGS, enrolled, new_client, person
from tests.web.fuzzing import (
    ECHO_PROBE,
    HOSTILE_PATH,
    RAW_BODIES,
    Target,
    json_bodies,
    query_strings,
    targets,
)

#: Requests in flight at once: enough to keep the server busy, few enough
#: that a 2-core CI machine answers each in time.
CONCURRENCY = 16
MAX_ERROR_BODY = 4096
BIG_BODY = b'{"x": "' + b"a" * (2 << 20) + b'"}'


@dataclass
class Findings:
    failures: list[str] = field(default_factory=list)
    requests: int = 0

    def add(self, what: str) -> None:
        if len(self.failures) < 50:
            self.failures.append(what)


@dataclass(frozen=True)
class Credentials:
    owner: dict[str, str]
    cookie: dict[str, str]
    operator: dict[str, str]
    auditor: dict[str, str]

    def best_for(self, target: Target) -> dict[str, str]:
        """The credentials that get a request past authentication."""
        if target.formatter.startswith("/api/v1/operator"):
            return self.operator
        if target.formatter.startswith("/api/v1/audit"):
            return self.auditor
        if target.formatter.startswith("/portal"):
            return self.cookie
        return self.owner


NO_AUTH: dict[str, str] = {}
GARBAGE_AUTH = {"Authorization": "Bearer " + "\u00e9" * 10 + "x" * 600}


def _check_answer(
    findings: Findings, label: str, status: int, ctype: str, body: bytes, path: str
) -> None:
    findings.requests += 1
    if status >= 500:
        findings.add(f"{label}: HTTP {status} {body[:200]!r}")
        return
    if ECHO_PROBE.encode() in body:
        findings.add(f"{label}: the answer echoes the input ({len(body)} bytes)")
    if status < 400:
        return
    if len(body) > MAX_ERROR_BODY:
        findings.add(f"{label}: a {len(body)}-byte error body")
    if path.startswith("/csc/"):
        ok = ctype == "application/json" and b'"error"' in body
    else:
        ok = ctype == "application/problem+json" and b'"code"' in body
    if not ok:
        findings.add(f"{label}: HTTP {status} answered as {ctype}: {body[:120]!r}")


async def _send(
    http: aiohttp.ClientSession,
    findings: Findings,
    label: str,
    method: str,
    url: URL,
    *,
    headers: dict[str, str],
    body: bytes | None = None,
    content_type: str | None = None,
) -> None:
    sent = dict(headers)
    if content_type is not None:
        sent["Content-Type"] = content_type
    try:
        async with http.request(
            method,
            url,
            data=body,
            headers=sent,
            skip_auto_headers=() if content_type else ("Content-Type",),
        ) as resp:
            answer = await resp.read()
            _check_answer(findings, label, resp.status, resp.content_type, answer, url.path)
    except (aiohttp.ClientError, TimeoutError) as e:
        findings.add(f"{label}: {type(e).__name__}: {e}")


async def _healthy(http: aiohttp.ClientSession, base_url: str) -> bool:
    try:
        async with http.get(f"{base_url}/healthz") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def _run_all(jobs: list[Callable[[], Awaitable[None]]]) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await job()

    await asyncio.gather(*(one(j) for j in jobs))


def _jobs_for(
    http: aiohttp.ClientSession,
    base_url: str,
    target: Target,
    creds: Credentials,
    findings: Findings,
) -> list[Callable[[], Awaitable[None]]]:
    jobs: list[Callable[[], Awaitable[None]]] = []
    best = creds.best_for(target)
    url = URL(base_url + target.path(), encoded=True)
    name = str(target)

    def job(label: str, method: str, u: URL, **kw: Any) -> None:
        jobs.append(lambda: _send(http, findings, label, method, u, **kw))

    for what, body in json_bodies(target):
        job(
            f"{name} [{what}]",
            target.method,
            url,
            headers=best,
            body=body,
            content_type="application/json",
        )
    for auth_name, auth in (("no auth", NO_AUTH), ("garbage auth", GARBAGE_AUTH), ("auth", best)):
        for what, ctype, body in RAW_BODIES:
            job(
                f"{name} [{what}, {auth_name}]",
                target.method,
                url,
                headers=auth,
                body=body,
                content_type=ctype,
            )
    job(
        f"{name} [2 MiB body]",
        target.method,
        url,
        headers=best,
        body=BIG_BODY,
        content_type="application/json",
    )
    for query in query_strings(target):
        job(
            f"{name} [?{query[:40]}]",
            target.method,
            URL(f"{url}?{query}", encoded=True),
            headers=best,
        )
    for param in target.params:
        for value in HOSTILE_PATH:
            bad = URL(base_url + target.path({param: value}), encoded=True)
            job(f"{name} [{param}={value[:20]}]", target.method, bad, headers=best)
    return jobs


@pytest.fixture
async def credentials(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str
) -> Credentials:
    # A fully enrolled owner, so that routes behind each enrolment step are reached.
    await enrolled(client)
    owner_token = client.access_token
    assert owner_token is not None
    # A second session for the portal cookie (logout may revoke it mid-fuzz).
    other = new_client(base_url, http)
    await other.create_account(person())
    cookie_token = other.access_token
    assert cookie_token is not None
    return Credentials(
        owner={"Authorization": f"Bearer {owner_token}"},
        cookie={
            "Cookie": f"{SESSION_COOKIE}={cookie_token}",
            CSRF_HEADER: csrf_token(cookie_token),
        },
        operator={"Authorization": f"Bearer {FAST_SETTINGS['operator_token']}"},
        auditor={"Authorization": f"Bearer {FAST_SETTINGS['auditor_token']}"},
    )


@pytest.mark.slow
async def test_every_route_refuses_hostile_input_and_keeps_serving(
    app: Any, base_url: str, credentials: Credentials
) -> None:
    walk = targets(app)
    assert len(walk) >= 40, [str(t) for t in walk]
    findings = Findings()
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        for target in walk:
            await _run_all(_jobs_for(http, base_url, target, credentials, findings))
            if not await _healthy(http, base_url):
                findings.add(f"{target}: the service stopped answering /healthz")
                break
        # The fuzzed owner's account is intact and still served.
        async with http.get(f"{base_url}/api/v1/me", headers=credentials.owner) as resp:
            assert resp.status == 200
    assert not findings.failures, "\n".join(findings.failures)
    assert findings.requests > 5000
