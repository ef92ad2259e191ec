"""Hostile inputs for the route fuzz (test_route_fuzz.py), and the walk of
the router that gives every route its share of them.

The corpus is built from the classes of weakness seen so far, not from one
probe each: deep nesting, numbers past every bound, wrong types, lone
surrogates, control characters, non-ASCII digits, over-long values, bad
base64, broken multipart, bad DER, absurd query values, missing and garbage
credentials. Field names come from each handler's own source, so a route
added tomorrow is fuzzed with its own fields without touching this file.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

#: A marker long enough that any echo of it is visible; answers may quote
#: at most a short prefix (cloudsign.web.inputs.PREVIEW_CHARS).
MARKER: Final = "Zq9"
LONG_TEXT: Final = MARKER * 20_000
ECHO_PROBE: Final = MARKER * 16

#: Values that parse as JSON but are wrong for any field of ours.
HOSTILE_VALUES: Final[list[Any]] = [
    ["a", ["b"]],
    {"x": {"y": 1}},
    1.5e300,
    -1,
    2**63,
    2**70,  # beyond 64 bits: a float after parsing
    True,
    "",
    " ",
    "\u0000",
    "a\u001b[31mb",
    "\u202eevil",
    "²²²²²²",
    "١٢٣٤٥٦",
    "１２３４５６",
    "\ud800",  # a lone surrogate, sent as the JSON escape \ud800
    "@@@@not-base64@@@@",
    "YQ",  # base64 without its padding
    LONG_TEXT,
    [LONG_TEXT] * 3,
    [[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]],
    {"transport_key_id": "\u0000", "device_public_key": "@@", "wrapped_key": 7},
    [{"id": "PIN", "value": ["x"]}, {"id": {"x": 1}, "value": "\u0000"}],
]

#: Whole bodies: (label, content type or None, bytes).
RAW_BODIES: Final[list[tuple[str, str | None, bytes]]] = [
    ("deep array 70000", "application/json", b"[" * 70_000 + b"]" * 70_000),
    ("deep object 50000", "application/json", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
    ("deep array 20", "application/json", b"[" * 20 + b"]" * 20),
    ("integer of 5000 digits", "application/json", b'{"x": ' + b"7" * 5000 + b"}"),
    ("NaN", "application/json", b'{"x": NaN}'),
    ("Infinity", "application/json", b'{"x": -Infinity}'),
    ("invalid UTF-8", "application/json", b'{"a": "\xff\xfe\xfd"}'),
    ("byte-order mark", "application/json", b'\xef\xbb\xbf{"a": 1}'),
    ("raw control character", "application/json", b'{"a": "x\x01y"}'),
    ("truncated", "application/json", b'{"a": [1, 2'),
    ("top-level array", "application/json", b"[1, 2, 3]"),
    ("top-level string", "application/json", b'"hello"'),
    ("top-level null", "application/json", b"null"),
    ("empty", "application/json", b""),
    ("not JSON", "application/json", b"\x00\x01\x02 garbage"),
    ("JSON as text/plain", "text/plain", b'{"a": 1}'),
    ("no content type", None, b'{"a": 1}'),
    ("garbage content type", "x/y; boundary=\u00e9;;;", b"{}"),
    ("multipart without boundary", "multipart/form-data", b"--x\r\n\r\nfoo\r\n--x--\r\n"),
    (
        "multipart with a garbage body",
        "multipart/form-data; boundary=b0undary",
        b"this is not multipart at all",
    ),
    (
        "multipart with broken part headers",
        "multipart/form-data; boundary=b0undary",
        b"--b0undary\r\nContent-Disposition\r\n\xff\xfe: x\r\n\r\ndata\r\n--b0undary--\r\n",
    ),
    (
        "multipart truncated",
        "multipart/form-data; boundary=b0undary",
        b'--b0undary\r\nContent-Disposition: form-data; name="frame"\r\n\r\nabc',
    ),
    (
        "multipart with a bad transfer encoding",
        "multipart/form-data; boundary=b0undary",
        b'--b0undary\r\nContent-Disposition: form-data; name="frame"\r\n'
        b"Content-Transfer-Encoding: rot13\r\n\r\nabc\r\n--b0undary--\r\n",
    ),
    (
        "multipart with base64 garbage",
        "multipart/form-data; boundary=b0undary",
        b'--b0undary\r\nContent-Disposition: form-data; name="image"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n@@@@\r\n--b0undary--\r\n",
    ),
    (
        "multipart nested",
        "multipart/form-data; boundary=b0undary",
        b"--b0undary\r\nContent-Type: multipart/mixed; boundary=inner\r\n\r\n"
        b"--inner\r\n\r\nx\r\n--inner--\r\n--b0undary--\r\n",
    ),
    ("OCSP request garbage", "application/ocsp-request", b"\x30\x82\xff\xff" + b"\x00" * 64),
    ("OCSP request deep DER", "application/ocsp-request", b"\x30\x80" * 30_000),
    ("time-stamp query garbage", "application/timestamp-query", b"\x30\x03\x02\x01"),
    ("time-stamp query deep DER", "application/timestamp-query", b"\x30\x80" * 30_000),
]

#: Query values, written raw into the URL (already percent-encoded where needed).
HOSTILE_QUERY: Final[list[str]] = [
    "%C2%B2",  # ²
    "%D9%A1",  # ١
    "-1",
    "1" * 400,
    "99999999999999999999999",
    "%00",
    "%ED%A0%80",  # an encoded lone surrogate
    "%FF%FE",  # invalid UTF-8
    "0x10",
    "1e3",
    "",
    "%20%31",
]

#: Path parameter values: a plausible one first, hostile ones after.
PATH_VALUES: Final[dict[str, str]] = {
    "version": "v2",
    "which": "root",
    "name": "issuing",
    "scope": "issuing",
    "number": "1",
    "day": "2026-01-01",
    "path": "js/app.js",
    "request": "MAA%3D",
    "credential_id": "00000000-0000-4000-8000-000000000000",
    "signature_id": "00000000-0000-4000-8000-000000000000",
    "challenge_id": "00000000-0000-4000-8000-000000000000",
}
HOSTILE_PATH: Final[list[str]] = [
    "%C2%B2",
    "%ED%A0%80",
    "%FF",
    "%00",
    "x" * 5000,
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "%0D%0ASet-Cookie:%20x=1",
    "%E2%80%AE",
    "2026-02-30",
    "99999999999999999999999999",
]

#: Fields every part of the API reads through shared helpers (so they are
#: not always named in the handler's own source).
COMMON_FIELDS: Final = (
    "otp",
    "OTP",
    "PIN",
    "SAD",
    "iin",
    "hash_algorithm",
    "hashes",
    "hash",
    "credentialID",
    "password_key",
    "purpose",
    "image",
    "frame",
)
_NAME: Final = re.compile(r"""["']([A-Za-z_][A-Za-z0-9_]{0,39})["']""")


@dataclass(frozen=True)
class Target:
    """One method on one route of the router."""

    method: str
    formatter: str
    params: tuple[str, ...]
    handler: Callable[..., Any]

    def path(self, override: dict[str, str] | None = None) -> str:
        values = {p: PATH_VALUES.get(p, "x") for p in self.params}
        values.update(override or {})
        return self.formatter.format(**values)

    def fields(self) -> list[str]:
        """Field and parameter names the handler's source mentions, plus the
        common ones."""
        try:
            source = inspect.getsource(self.handler)
        except (OSError, TypeError):
            source = ""
        names = dict.fromkeys([*_NAME.findall(source), *COMMON_FIELDS])
        return list(names)

    def __str__(self) -> str:
        return f"{self.method} {self.formatter}"


def targets(app: web.Application) -> list[Target]:
    """Every (method, route) of the app, HEAD left out (GET covers it),
    `*` expanded to GET and POST."""
    out: dict[tuple[str, str], Target] = {}
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        formatter = info.get("formatter") or info.get("path")
        if formatter is None:
            continue
        params = tuple(re.findall(r"{(\w+)}", formatter))
        methods = ("GET", "POST") if route.method == "*" else (route.method,)
        for method in methods:
            out[(method, formatter)] = Target(method, formatter, params, route.handler)
    return list(out.values())


def json_bodies(target: Target) -> Iterator[tuple[str, bytes]]:
    """One JSON object per (field, hostile value), the field alone in it."""
    for name in target.fields():
        for value in HOSTILE_VALUES:
            yield f"{name}={json.dumps(value)[:24]}", json.dumps({name: value}).encode()
    # Everything at once, hostile values of different kinds side by side.
    everything = {
        name: HOSTILE_VALUES[i % len(HOSTILE_VALUES)] for i, name in enumerate(target.fields())
    }
    yield "all fields hostile", json.dumps(everything).encode()


def query_strings(target: Target) -> Iterator[str]:
    for name in target.fields():
        for value in HOSTILE_QUERY:
            yield f"{name}={value}"
    yield "&".join(f"k{i}=v" for i in range(500))
