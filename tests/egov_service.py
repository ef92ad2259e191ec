"""An e-government service that speaks the eGov QR signing protocol, as the
tests' counterpart of cloudsign's mobile_api/egov.py (docs/egov-qr.md).

It registers procedures (`new` gives the `mobileSign:` link its QR would
show), answers API No. 1 and API No. 2 (Token auth checked), and takes the
signatures back with a PUT, verifying each CMS with `openssl cms -verify`
against the CA certificates it was told to trust: a detached one against
the document it sent (CMS_SIGN_ONLY), an attached one by comparing the
content it carries (CMS_WITH_DATA). Signatures it cannot verify are
refused with 400, as a service would.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

PREFIX = "/egov/"


@dataclass
class Procedure:
    id: str
    documents: list[tuple[str, bytes, str]]
    sign_method: str
    auth_type: str
    token: str
    expires_at: datetime
    #: Served instead of the real API No. 2 answer (garbage, oversized).
    api2_body: bytes | None = None
    api2_content_type: str = "application/json"
    #: Answer this many PUTs with 503 before taking one.
    failing_puts: int = 0
    api1_hits: int = 0
    api2_hits: int = 0
    puts: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    #: The verified content of each document, by id, once signed.
    verified: dict[int, bytes] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    signed: asyncio.Event = field(default_factory=asyncio.Event)


class EgovService:
    def __init__(self) -> None:
        self.procedures: dict[str, Procedure] = {}
        self.base_url = ""
        self.root_pem = ""
        self.chain_pem = ""
        app = web.Application()
        app.router.add_get(PREFIX + "api1/{id}", self.api1)
        app.router.add_get(PREFIX + "api2/{id}", self.api2)
        app.router.add_put(PREFIX + "api2/{id}", self.receive)
        self.app = app

    @property
    def prefix(self) -> str:
        return self.base_url + PREFIX

    def trust(self, chain: list[str]) -> None:
        """The CA certificates (PEM, leaf first) signatures must chain to."""
        self.root_pem = chain[-1]
        self.chain_pem = "".join(chain)

    def new(
        self,
        documents: list[tuple[str, bytes, str]],
        sign_method: str = "CMS_SIGN_ONLY",
        *,
        auth_type: str = "Token",
        expires_in: timedelta = timedelta(minutes=5),
    ) -> tuple[str, Procedure]:
        """A procedure for (name, content, mime) documents; its link."""
        proc = Procedure(
            id=secrets.token_hex(8),
            documents=documents,
            sign_method=sign_method,
            auth_type=auth_type,
            token=secrets.token_urlsafe(16),
            expires_at=datetime.now(UTC) + expires_in,
        )
        self.procedures[proc.id] = proc
        return f"mobileSign:{self.prefix}api1/{proc.id}", proc

    def _procedure(self, request: web.Request) -> Procedure:
        proc = self.procedures.get(request.match_info["id"])
        if proc is None:
            raise web.HTTPNotFound(text=json.dumps({"message": "Транзакция не найдена."}))
        return proc

    def _authorised(self, request: web.Request, proc: Procedure) -> None:
        if proc.auth_type == "Token" and request.headers.get("Authorization") != (
            f"Bearer {proc.token}"
        ):
            raise web.HTTPUnauthorized(text=json.dumps({"message": "token"}))

    async def api1(self, request: web.Request) -> web.Response:
        proc = self._procedure(request)
        proc.api1_hits += 1
        document: dict[str, Any] = {
            "uri": f"{self.prefix}api2/{proc.id}",
            "auth_type": proc.auth_type,
        }
        if proc.auth_type == "Token":
            document["auth_token"] = proc.token
        return web.json_response(
            {
                "description": "Заявление на получение справки",
                "expiry_date": proc.expires_at.astimezone(
                    datetime.now().astimezone().tzinfo
                ).isoformat(),
                "organisation": {
                    "nameRu": "Тестовое ведомство",
                    "nameKz": "Сынақ ведомствосы",
                    "nameEn": "Test agency",
                    "bin": "000740001307",
                },
                "document": document,
            }
        )

    async def api2(self, request: web.Request) -> web.Response:
        proc = self._procedure(request)
        self._authorised(request, proc)
        proc.api2_hits += 1
        if proc.api2_body is not None:
            return web.Response(body=proc.api2_body, content_type=proc.api2_content_type)
        return web.json_response(
            {
                "signMethod": proc.sign_method,
                "version": 1,
                "documentsToSign": [
                    {
                        "id": i + 1,
                        "nameRu": name,
                        "nameKz": name,
                        "nameEn": name,
                        "meta": [{"name": "Номер", "value": f"{proc.id}-{i + 1}"}],
                        "document": {
                            "file": {"mime": mime, "data": base64.b64encode(content).decode()}
                        },
                    }
                    for i, (name, content, mime) in enumerate(proc.documents)
                ],
            }
        )

    async def receive(self, request: web.Request) -> web.Response:
        proc = self._procedure(request)
        self._authorised(request, proc)
        proc.puts += 1
        if proc.failing_puts > 0:
            proc.failing_puts -= 1
            return web.json_response({"message": "try later"}, status=503)
        body = await request.json()
        proc.received.append(body)
        items = {d["id"]: d for d in body["documentsToSign"]}
        if body.get("signMethod") != proc.sign_method or sorted(items) != list(
            range(1, len(proc.documents) + 1)
        ):
            proc.errors.append("wrong documents")
            return web.json_response({"message": "wrong documents"}, status=400)
        verified: dict[int, bytes] = {}
        for i, (_name, content, _mime) in enumerate(proc.documents):
            item = items[i + 1]
            if item.get("meta") != [{"name": "Номер", "value": f"{proc.id}-{i + 1}"}]:
                proc.errors.append("meta not echoed")
                return web.json_response({"message": "meta"}, status=400)
            cms = base64.b64decode(item["document"]["file"]["data"])
            detached = proc.sign_method == "CMS_SIGN_ONLY"
            ok, out = await asyncio.to_thread(self._verify, cms, content if detached else None)
            if not ok or (not detached and out != content):
                proc.errors.append(f"document {i + 1}: {out[:300]!r}")
                return web.json_response({"message": "signature invalid"}, status=400)
            verified[i + 1] = out if not detached else content
        proc.verified = verified
        proc.signed.set()
        return web.json_response({"backUrl": f"{self.base_url}/done/{proc.id}"})

    def _verify(self, cms: bytes, content: bytes | None) -> tuple[bool, bytes]:
        """openssl cms -verify: detached over `content`, or attached."""
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            (d / "sig.p7s").write_bytes(cms)
            (d / "root.pem").write_text(self.root_pem)
            (d / "chain.pem").write_text(self.chain_pem)
            args = ["openssl", "cms", "-verify", "-binary", "-inform", "DER",
                    "-in", str(d / "sig.p7s"), "-CAfile", str(d / "root.pem"),
                    "-certfile", str(d / "chain.pem"), "-out", str(d / "out")]  # fmt: skip
            if content is not None:
                (d / "content").write_bytes(content)
                args += ["-content", str(d / "content")]
            done = subprocess.run(args, capture_output=True, check=False)
            if done.returncode != 0:
                return False, done.stderr
            return True, (d / "out").read_bytes()


async def running_service() -> AsyncIterator[EgovService]:
    service = EgovService()
    server = TestServer(service.app, host="127.0.0.1")
    await server.start_server()
    service.base_url = str(server.make_url("")).rstrip("/")
    try:
        yield service
    finally:
        await server.close()
