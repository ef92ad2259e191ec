"""A property-based fuzz of the whole HTTP API from its own OpenAPI
document (schemathesis): every operation of the public and the operator
listener gets generated paths, queries and bodies, sent with a real
citizen's (or operator's) credentials so the handlers get past
authentication and parse what they are given. No answer may be a 5xx; every
error is problem+json (CSC's `{error, error_description}` under `/csc/`);
the server still answers afterwards.

Bounded and repeatable: `EXAMPLES` cases per operation, derandomised
(the same cases every run), no example database. The calls run on a thread
(schemathesis speaks `requests`), so the in-process server's event loop keeps
serving them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from cloudsign.appkeys import OPERATOR_URL
from device_client.client import CloudsignClient
from tests.helpers import enrolled, new_client
from tests.staff import STAFF

EXAMPLES = 15
# DER bodies (OCSP requests, time-stamp queries) go out as raw bytes.
schemathesis.serializer.alias(
    ["application/ocsp-request", "application/timestamp-query"], "application/octet-stream"
)
#: Operations that would end the fuzzing session itself (it then only
#: meets 401s): they are exercised by their own tests.
SKIP = {
    ("DELETE", "/api/v1/sessions/current"),
    ("POST", "/portal/session/logout"),
    ("DELETE", "/operator/api/v1/sessions/current"),
}


def _content_type(headers: dict[str, Any]) -> str:
    for name, value in headers.items():
        if name.lower() == "content-type":
            first = value[0] if isinstance(value, list) else value
            return str(first).split(";")[0].strip()
    return ""


def _check(case: Any, response: Any) -> str | None:
    where = f"{case.method} {case.formatted_path}"
    if response.status_code >= 500:
        return f"{where}: {response.status_code} for\n{case.as_curl_command()}"
    if response.status_code < 400:
        return None
    kind = _content_type(response.headers)
    if case.formatted_path.startswith("/csc/"):
        body = json.loads(response.content)
        if kind != "application/json" or "error" not in body:
            return f"{where}: {response.status_code} not CSC's error form ({kind})"
    elif kind != "application/problem+json":
        return (
            f"{where}: {response.status_code} as {kind!r}, not problem+json: "
            f"{response.content[:200]!r} for\n{case.as_curl_command()}"
        )
    else:
        body = json.loads(response.content)
        if body.get("status") != response.status_code or "code" not in body:
            return f"{where}: a problem whose status or code is wrong: {body}"
    return None


def _fuzz(
    doc: dict[str, Any], base_url: str, headers: dict[str, str], known: dict[str, str]
) -> tuple[int, list[str]]:
    """Every operation of `doc`, `EXAMPLES` cases each; (calls, failures).
    Path parameters named in `known` take that real value (a random id
    only ever meets a 404 before the body is read)."""
    schema = schemathesis.openapi.from_dict(doc)
    failures: list[str] = []
    statuses: dict[int, int] = {}
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIP:
            continue

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            nonlocal calls
            calls += 1
            for name, value in known.items():
                if case.path_parameters and name in case.path_parameters:
                    case.path_parameters[name] = value
            response = case.call(base_url=base_url, headers=headers, timeout=60)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            problem = _check(case, response)
            if problem is not None and len(failures) < 20:
                failures.append(problem)

        run()
    print(f"{calls} calls; answers by status: {dict(sorted(statuses.items()))}")
    return calls, failures


async def test_the_public_api_under_fuzz(
    http: aiohttp.ClientSession, base_url: str, client: CloudsignClient
) -> None:
    # A citizen of its own: the fuzz may lock their factors, nobody else's.
    _totp, cred = await enrolled(client)
    async with http.get(f"{base_url}/api/openapi.json") as resp:
        doc = await resp.json()
    headers = {"Authorization": f"Bearer {client.access_token}"}
    known = {"credential_id": cred["credential_id"]}
    calls, failures = await asyncio.to_thread(_fuzz, doc, base_url, headers, known)
    assert not failures, "\n\n".join(failures)
    assert calls >= EXAMPLES * len(doc["paths"]) // 2, calls  # it really ran
    # Still serving, and the session still works.
    async with http.get(f"{base_url}/healthz") as resp:
        assert resp.status == 200
    other = new_client(base_url, http)
    other.access_token = client.access_token
    assert (await other.request("GET", "/api/v1/me"))["owner_id"] == client.owner_id


async def test_the_operator_api_under_fuzz(
    http: aiohttp.ClientSession, base_url: str, app: Any
) -> None:
    operator_url = app[OPERATOR_URL]
    # An auditor reads; the fuzz cannot approve, revoke or create anything.
    auditor = await STAFF[base_url].security.new_operator(["auditor"])
    headers = {"Authorization": f"Bearer {auditor.token}"}
    async with http.get(f"{operator_url}/operator/api/openapi.json", headers=headers) as resp:
        doc = await resp.json()
    calls, failures = await asyncio.to_thread(_fuzz, doc, operator_url, headers, {})
    assert not failures, "\n\n".join(failures)
    assert calls >= len(doc["paths"])
    async with http.get(f"{operator_url}/healthz") as resp:
        assert resp.status == 200
