"""A national identity registry for tests: the protocol of
docs/registry-protocol.md on a loopback port, its answers signed with an
Ed25519 key it generates, and, on request, each way an answer can be wrong
(`Fault`), so tests can show the service refuses every one of them.

    registry = RegistryServer()
    url = await registry.start()
    person = registry.add("Obama", "Barack", "obama_1.jpg")
    registry.fault = Fault.STALE       # the next answers are stale
    registry.reset()                   # honest again
"""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
)

from tests.face_images import photo
from tests.helpers import make_iin

_NONCE: Final = re.compile(r"[0-9a-f]{32}")
#: Older than any `registry_max_age_seconds` the service accepts (at most 3600).
STALE_BY: Final = timedelta(hours=2)
#: Ahead of the service's clock by more than the skew it tolerates (30 s).
FUTURE_BY: Final = timedelta(minutes=10)


class Fault(enum.Enum):
    """How the registry misbehaves, for every request until `reset()`."""

    STALE = "stale"  # issued_at older than the service accepts
    FUTURE = "future"  # issued_at ahead of the service's clock
    NAIVE_TIME = "naive_time"  # issued_at without a UTC offset
    WRONG_KEY = "wrong_key"  # signed with a key the service does not know
    TAMPERED = "tampered"  # the payload changed after it was signed
    WRONG_NONCE = "wrong_nonce"  # echoes a nonce other than the request's
    WRONG_IIN = "wrong_iin"  # a record of another IIN than the one asked for
    DUPLICATE_KEY = "duplicate_key"  # a payload naming two surnames (signed)
    GARBAGE = "garbage"  # 200, but not the envelope
    NOT_FOUND = "not_found"  # 404 even for a known person
    SERVER_ERROR = "server_error"  # 500
    HANG = "hang"  # no answer until reset() or close()


@dataclass(frozen=True)
class RegistryPerson:
    iin: str
    surname: str
    given_name: str
    photo: bytes = field(repr=False)


@dataclass(frozen=True)
class Asked:
    """One request the registry received."""

    iin: str
    nonce: str


class RegistryServer:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.persons: dict[str, RegistryPerson] = {}
        self.fault: Fault | None = None
        self.asked: list[Asked] = []
        #: The `reference` of every signed answer sent, in order.
        self.references: list[str] = []
        self._release = asyncio.Event()
        self._server: TestServer | None = None

    def __repr__(self) -> str:
        return f"RegistryServer({self.url if self._server else 'stopped'})"

    # -- set-up --------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the registry is not started")
        return str(self._server.make_url("")).rstrip("/")

    @property
    def public_key(self) -> str:
        """The key as `registry_public_key` takes it: base64 of the raw 32 bytes."""
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def public_key_pem(self) -> bytes:
        return self.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    def add(
        self, surname: str, given_name: str, face: str, iin: str | None = None
    ) -> RegistryPerson:
        """A person the registry knows, with a photo from tests/data/faces."""
        person = RegistryPerson(iin or make_iin(), surname, given_name, photo(face))
        self.persons[person.iin] = person
        return person

    def reset(self) -> None:
        """Honest again; requests left hanging are answered (503)."""
        self.fault = None
        self._release.set()
        self._release = asyncio.Event()

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/v1/persons/{iin}", self._person)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self.url

    async def close(self) -> None:
        self._release.set()
        if self._server is not None:
            await self._server.close()

    # -- the protocol ------------------------------------------------------------

    async def _person(self, request: web.Request) -> web.Response:
        iin = request.match_info["iin"]
        nonce = request.query.get("nonce", "")
        self.asked.append(Asked(iin, nonce))
        fault = self.fault
        if fault is Fault.HANG:
            await self._release.wait()
            return web.json_response({"error": "unavailable"}, status=503)
        if fault is Fault.SERVER_ERROR:
            return web.json_response({"error": "internal"}, status=500)
        if not _NONCE.fullmatch(nonce):
            return web.json_response({"error": "bad_nonce"}, status=400)
        person = self.persons.get(iin)
        if person is None or fault is Fault.NOT_FOUND:
            return web.json_response({"error": "not_found"}, status=404)
        if fault is Fault.GARBAGE:
            return web.json_response({"payload": "not base64!", "signature": 7})
        return web.json_response(self.envelope(person, nonce, fault))

    def envelope(
        self, person: RegistryPerson, nonce: str, fault: Fault | None = None
    ) -> dict[str, str]:
        """The signed answer for `person` to a request with `nonce`,
        spoiled as `fault` says."""
        issued = datetime.now(UTC).replace(microsecond=0)
        if fault is Fault.STALE:
            issued -= STALE_BY
        elif fault is Fault.FUTURE:
            issued += FUTURE_BY
        issued_at = issued.strftime("%Y-%m-%dT%H:%M:%SZ")
        if fault is Fault.NAIVE_TIME:
            issued_at = issued.strftime("%Y-%m-%dT%H:%M:%S")
        reference = f"test-registry/{secrets.token_hex(8)}"
        payload: dict[str, Any] = {
            "iin": make_iin() if fault is Fault.WRONG_IIN else person.iin,
            "surname": person.surname,
            "given_name": person.given_name,
            "photo": base64.b64encode(person.photo).decode(),
            "issued_at": issued_at,
            "nonce": secrets.token_hex(16) if fault is Fault.WRONG_NONCE else nonce,
            "reference": reference,
        }
        raw = _json(payload)
        if fault is Fault.DUPLICATE_KEY:
            # Two surnames: parsers disagree on which one counts.
            raw = raw.replace(b'{"iin"', b'{"surname":"Impostor","iin"', 1)
        signer = Ed25519PrivateKey.generate() if fault is Fault.WRONG_KEY else self.key
        signature = signer.sign(raw)
        if fault is Fault.TAMPERED:
            raw = _json({**payload, "surname": "Impostor"})
        self.references.append(reference)
        return {
            "payload": base64.b64encode(raw).decode(),
            "signature": base64.b64encode(signature).decode(),
        }


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
