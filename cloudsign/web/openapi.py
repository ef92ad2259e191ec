"""An OpenAPI 3.1 description of the HTTP API, built from the route tables
the listeners serve, so it cannot name a path that does not exist or miss
one that does (tests/web/test_openapi.py checks it against the router and
fuzzes the service from it).

Each operation takes its summary from the handler's docstring, its path
parameters from the route pattern (a `{name:a|b}` alternation becomes an
enum, another regex a `pattern`), and what the handler reads and who may call
it from the helpers it uses: `read_json` (a JSON object body), `read_images`
(multipart frames), `read_body` (raw bytes), `current_owner` (the citizen's
Bearer token or portal session), `current_operator` (an operator's Bearer
token), relying-party Basic credentials. `described(...)` on a handler
states its body schema or media type where that is more than "an object".
Every error is RFC 9457 problem+json, CSC's `{error, error_description}`
under `/csc/`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

from aiohttp import web

from cloudsign.web.auth import SESSION_COOKIE

H = TypeVar("H", bound=Callable[..., Any])

#: The document each listener serves (set by cloudsign.app).
OPENAPI_DOCUMENT: Final = web.AppKey("openapi_document", dict)
routes = web.RouteTableDef()

OPENAPI_VERSION: Final = "3.1.0"
_PARAM: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::((?:[^{}]|\{[^{}]*\})*))?\}")
_LITERAL_ALTERNATION: Final = re.compile(r"[A-Za-z0-9_.-]+(\|[A-Za-z0-9_.-]+)*")

PROBLEM_SCHEMA: Final = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
    },
}
CSC_ERROR_SCHEMA: Final = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}


def described(
    *,
    body: dict[str, Any] | None = None,
    media_type: str | None = None,
    response_type: str | None = None,
) -> Callable[[H], H]:
    """State what a handler takes (a JSON schema for its body, or another
    media type) and answers (`response_type`), where the defaults say less."""

    def mark(handler: H) -> H:
        handler.__openapi__ = {  # type: ignore[attr-defined]
            "body": body,
            "media_type": media_type,
            "response_type": response_type,
        }
        return handler

    return mark


def openapi_path(pattern: str) -> tuple[str, list[dict[str, Any]]]:
    """An aiohttp route pattern as an OpenAPI path and its parameters."""
    params: list[dict[str, Any]] = []

    def replace(m: re.Match[str]) -> str:
        name, regex = m.group(1), m.group(2)
        schema: dict[str, Any] = {"type": "string"}
        if regex and _LITERAL_ALTERNATION.fullmatch(regex):
            schema["enum"] = regex.split("|")
        elif regex:
            schema["pattern"] = f"^(?:{regex})$"
        else:
            schema["pattern"] = "^[^/]+$"
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    return _PARAM.sub(replace, pattern), params


def _source(handler: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(handler)
    except (OSError, TypeError):
        return ""


def _tag(handler: Callable[..., Any]) -> str:
    parts = [p for p in handler.__module__.split(".") if p not in ("cloudsign", "api")]
    return parts[0] if parts else "service"


def _summary(handler: Callable[..., Any]) -> str:
    doc = inspect.getdoc(handler)
    if doc:
        return doc.split("\n\n")[0].replace("\n", " ")
    return handler.__name__.replace("_", " ")


def _security(source: str) -> list[dict[str, list[str]]] | None:
    if "current_operator(" in source:
        return [{"operator": []}]
    if "current_owner(" in source or "owner_token(" in source:
        return [{"citizen": []}, {"portalSession": []}]
    if "_party(" in source:
        return [{"relyingParty": []}]
    return None


def _request_body(source: str, marks: dict[str, Any]) -> dict[str, Any] | None:
    if marks.get("media_type"):
        return {
            "required": True,
            "content": {marks["media_type"]: {"schema": {"type": "string", "format": "binary"}}},
        }
    if marks.get("body") is not None or "read_json(" in source:
        schema = marks.get("body") or {"type": "object"}
        return {"required": True, "content": {"application/json": {"schema": schema}}}
    if "read_images(" in source or ".multipart()" in source:
        return {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "frame": {
                                "type": "array",
                                "items": {"type": "string", "contentMediaType": "image/jpeg"},
                            }
                        },
                    }
                }
            },
        }
    if "read_body(" in source or "request.content" in source:
        return {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    return None


def _responses(path: str, marks: dict[str, Any]) -> dict[str, Any]:
    error = (
        {"application/json": {"schema": CSC_ERROR_SCHEMA}}
        if path.startswith("/csc/")
        else {"application/problem+json": {"schema": PROBLEM_SCHEMA}}
    )
    ok: dict[str, Any] = {"description": "success"}
    if marks.get("response_type"):
        ok["content"] = {marks["response_type"]: {"schema": {}}}
    return {
        "2XX": ok,
        "3XX": {"description": "a redirect"},
        "default": {"description": "an error", "content": error},
    }


def _add(item: dict[str, Any], method: str, operation: dict[str, Any]) -> None:
    """One operation per path and method: two routes that differ only in a
    parameter's alternatives (`{which:root|issuing}.cer` and
    `{which:ocsp|tsa}.cer`) are one operation whose enum is their union."""
    known = item.get(method)
    if known is None:
        item[method] = operation
        return
    by_name = {p["name"]: p for p in known.get("parameters", [])}
    for param in operation.get("parameters", []):
        mine = by_name[param["name"]]["schema"]
        mine["enum"] = sorted({*mine.get("enum", []), *param["schema"].get("enum", [])})
    known["summary"] = f"{known['summary']}; {operation['summary']}"


def build_openapi(
    tables: Iterable[web.RouteTableDef], *, title: str, version: str, server: str
) -> dict[str, Any]:
    """The OpenAPI document of every route in `tables` (one listener)."""
    paths: dict[str, dict[str, Any]] = {}
    seen_ids: set[str] = set()
    for table in tables:
        for route in table:
            marks: dict[str, Any]
            if isinstance(route, web.StaticDef):
                path, params = openapi_path(route.prefix.rstrip("/") + "/{filename:.+}")
                method, handler, source, marks = "get", None, "", {}
                summary, tag = f"static files under {route.prefix}", "static"
                operation_id = "static" + re.sub(r"\W+", "_", route.prefix)
            elif isinstance(route, web.RouteDef):
                if route.method == "HEAD":
                    continue
                path, params = openapi_path(route.path)
                method, handler = route.method.lower(), route.handler
                source = _source(handler)
                marks = getattr(handler, "__openapi__", {})
                summary, tag = _summary(handler), _tag(handler)
                operation_id = f"{handler.__module__}.{handler.__name__}"
            else:
                continue
            while operation_id in seen_ids:
                operation_id += "_"
            seen_ids.add(operation_id)
            operation: dict[str, Any] = {
                "operationId": operation_id,
                "summary": summary,
                "tags": [tag],
                "responses": _responses(path, marks),
            }
            if params:
                operation["parameters"] = params
            security = _security(source)
            if security is not None:
                operation["security"] = security
            body = _request_body(source, marks)
            for verb in ("get", "post") if method == "*" else (method,):
                op = dict(
                    operation, operationId=operation_id + ("" if method != "*" else "_" + verb)
                )
                if body is not None and verb in ("post", "put", "patch", "delete"):
                    op["requestBody"] = body
                _add(paths.setdefault(path, {}), verb, op)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version},
        "servers": [{"url": server}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "citizen": {"type": "http", "scheme": "bearer"},
                "portalSession": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
                "operator": {"type": "http", "scheme": "bearer"},
                "relyingParty": {"type": "http", "scheme": "basic"},
            }
        },
    }


@routes.get("/api/openapi.json")
async def public_document(request: web.Request) -> web.Response:
    """This OpenAPI 3.1 description of the public API."""
    return web.json_response(request.app[OPENAPI_DOCUMENT])
