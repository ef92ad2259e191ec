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
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from cloudsign.app import OPERATOR_ROUTES
from cloudsign.appkeys import GUARD, LIMITS
from cloudsign.operators.api import ROLES
from cloudsign.web.auth import CSRF_HEADER, SESSION_COOKIE, csrf_token
from device_client.client import CloudsignClient
from tests.helpers import activated, enrolled, new_client
from tests.staff import OperatorClient, Staff, set_up
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
    #: An operator holding every role, so every operator route is reached.
    operator: dict[str, str]
    #: A second operator session, for the sign-out route (which ends it).
    operator_throwaway: dict[str, str]
    #: A second owner session, for the owner's sign-out route (which ends it).
    owner_throwaway: dict[str, str]

    def best_for(self, target: Target) -> dict[str, str]:
        """The credentials that get a request past authentication."""
        if target.formatter == "/operator/api/v1/sessions/logout":
            return self.operator_throwaway
        if target.formatter == "/api/v1/sessions/current":
            return self.owner_throwaway
        if target.formatter.startswith(("/operator/", "/console")):
            return self.operator
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


async def _all_roles_operator(staff: Staff, http: aiohttp.ClientSession) -> OperatorClient:
    """Created by one security officer, approved by the other (it holds the
    security role too), set up with its setup code."""
    name = f"fuzz.{secrets.token_hex(3)}"
    status, pending = await staff.security.request_status(
        "POST",
        "/operator/api/v1/operators",
        {"username": name, "display_name": "Fuzz", "roles": sorted(ROLES)},
    )
    assert status == 202, pending
    done = await staff.security2.request(
        "POST", f"/operator/api/v1/approvals/{pending['approval_id']}/approve"
    )
    return await set_up(staff.url, http, name, done["result"]["setup_code"])


@pytest.fixture
async def credentials(
    client: CloudsignClient, http: aiohttp.ClientSession, base_url: str, staff: Staff
) -> Credentials:
    # A fully enrolled owner, so that routes behind each enrolment step are reached.
    await enrolled(client)
    owner_token = client.access_token
    assert owner_token is not None
    # A second session for the portal cookie (logout may revoke it mid-fuzz).
    other = new_client(base_url, http)
    await activated(other)
    cookie_token = other.access_token
    assert cookie_token is not None
    ending = new_client(base_url, http)
    await activated(ending)
    operator = await _all_roles_operator(staff, http)
    throwaway = await OperatorClient(
        staff.url, http, operator.username, operator.password, operator.totp
    ).sign_in()
    return Credentials(
        owner={"Authorization": f"Bearer {owner_token}"},
        cookie={
            "Cookie": f"{SESSION_COOKIE}={cookie_token}",
            CSRF_HEADER: csrf_token(cookie_token),
        },
        operator={"Authorization": f"Bearer {operator.token}"},
        operator_throwaway={"Authorization": f"Bearer {throwaway.token}"},
        owner_throwaway={"Authorization": f"Bearer {ending.access_token}"},
    )


def _operator_routes() -> web.Application:
    """The operator listener's routes, as the app mounts them."""
    operator_app = web.Application()
    for routes in OPERATOR_ROUTES:
        operator_app.add_routes(routes)
    return operator_app


@pytest.mark.slow
async def test_every_route_refuses_hostile_input_and_keeps_serving(
    app: Any, base_url: str, credentials: Credentials, staff: Staff
) -> None:
    public, operator = targets(app), targets(_operator_routes())
    assert len(public) >= 40, [str(t) for t in public]
    assert len(operator) >= 15, [str(t) for t in operator]
    findings = Findings()
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        for listener, walk in ((base_url, public), (staff.url, operator)):
            for target in walk:
                await _run_all(_jobs_for(http, listener, target, credentials, findings))
                if not await _healthy(http, listener) or not await _healthy(http, base_url):
                    findings.add(f"{target}: the service stopped answering /healthz")
                    break
        # The fuzzed owner's account is intact and still served.
        async with http.get(f"{base_url}/api/v1/me", headers=credentials.owner) as resp:
            assert resp.status == 200
        async with http.get(
            f"{staff.url}/operator/api/v1/me", headers=credentials.operator
        ) as resp:
            assert resp.status == 200
    # The fuzz's wrong activation codes locked this address: later tests
    # activate from it too.
    await app[GUARD].clear(app[LIMITS].activation, "127.0.0.1")
    assert not findings.failures, "\n".join(findings.failures)
    assert findings.requests > 5000
