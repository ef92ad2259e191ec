"""The OpenAPI 3.1 documents at /api/openapi.json and
/operator/api/openapi.json: valid OpenAPI, and exactly the routes the
listeners serve (no route missing, no stale path, every enumerated path
value resolves)."""

from __future__ import annotations

import itertools
import re
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from openapi_spec_validator import validate

from cloudsign.app import OPERATOR_ROUTES, ROUTES
from cloudsign.appkeys import OPERATOR_URL
from tests.staff import STAFF


def _router(tables: list[web.RouteTableDef]) -> web.UrlDispatcher:
    app = web.Application()
    for table in tables:
        app.add_routes(table)
    return app.router


def _served(router: web.UrlDispatcher) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route the router has."""
    out = set()
    for route in router.routes():
        resource = route.resource
        assert resource is not None
        if isinstance(resource, web.StaticResource):
            path = resource.canonical.rstrip("/") + "/{filename}"
        else:
            path = resource.canonical
        methods = ["GET", "POST"] if route.method == "*" else [route.method]
        out |= {(m, path) for m in methods if m != "HEAD"}
    return out


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, item in doc["paths"].items() for m in item}


def _sample(schema: dict[str, Any]) -> str:
    """A value that the parameter's pattern accepts."""
    pattern = re.compile(schema["pattern"])
    for candidate in ("x1", "1", "2026-12-01", "a.json", "deadbeef"):
        if pattern.fullmatch(candidate):
            return candidate
    raise AssertionError(f"no sample for {schema}")


async def _resolves(router: web.UrlDispatcher, method: str, path: str) -> bool:
    match = await router.resolve(make_mocked_request(method, path))
    return match.http_exception is None


async def _check(doc: dict[str, Any], router: web.UrlDispatcher) -> None:
    validate(doc)  # the OpenAPI 3.1 schema
    assert doc["openapi"].startswith("3.1")
    served, documented = _served(router), _documented(doc)
    assert served - documented == set(), "routes missing from the document"
    assert documented - served == set(), "stale paths in the document"
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    # Every combination of enumerated values is a real route.
    for path, item in doc["paths"].items():
        for method, op in item.items():
            params = op.get("parameters", [])
            choices = [p["schema"].get("enum") or [_sample(p["schema"])] for p in params]
            for values in itertools.product(*choices):
                concrete = path
                for p, v in zip(params, values, strict=True):
                    concrete = concrete.replace("{" + p["name"] + "}", v)
                assert await _resolves(router, method.upper(), concrete), (method, concrete)
            for p in params:
                assert p["in"] == "path" and p["required"]


async def test_the_public_document_is_the_public_router(
    http: aiohttp.ClientSession, base_url: str
) -> None:
    async with http.get(f"{base_url}/api/openapi.json") as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        doc = await resp.json()
    await _check(doc, _router(ROUTES))
    sign = doc["paths"]["/api/v1/me/credentials/{credential_id}/sign-hashes"]["post"]
    assert "application/json" in sign["requestBody"]["content"]
    assert {"citizen": []} in sign["security"]
    csc = doc["paths"]["/csc/{version}/signatures/signHash"]["post"]
    assert (
        "error" in csc["responses"]["default"]["content"]["application/json"]["schema"]["required"]
    )
    ocsp = doc["paths"]["/pki/ocsp"]["post"]
    assert "application/ocsp-request" in ocsp["requestBody"]["content"]
    certs = doc["paths"]["/pki/ca/{which}.cer"]["get"]["parameters"][0]["schema"]["enum"]
    assert set(certs) == {"root", "issuing", "ocsp", "tsa"}


async def test_the_operator_document_is_the_operator_router(
    http: aiohttp.ClientSession, app: Any, base_url: str
) -> None:
    url = f"{app[OPERATOR_URL]}/operator/api/openapi.json"
    async with http.get(url) as resp:
        assert resp.status == 401  # staff only, like every operator route
    auditor = STAFF[base_url].auditor
    async with http.get(url, headers={"Authorization": f"Bearer {auditor.token}"}) as resp:
        assert resp.status == 200
        doc = await resp.json()
    await _check(doc, _router(OPERATOR_ROUTES))
    assert all(
        op.get("security") in ([{"operator": []}], None)
        for item in doc["paths"].values()
        for op in item.values()
    )
