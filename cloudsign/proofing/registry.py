"""The national identity registry, behind one interface, and its HTTP adapter.

The protocol (docs/registry-protocol.md):

    GET {registry_url}/v1/persons/{iin}?nonce={32 hex}
    200 {"payload": base64(JSON), "signature": base64(Ed25519(payload bytes))}
    404 the registry knows no such person

The payload is a JSON object: `iin`, `surname`, `given_name`, `photo`
(base64 JPEG, the reference photo), `issued_at` (RFC 3339 with an offset),
`nonce` (the request's, echoed), `reference` (the registry's id of this
answer). An answer counts only if its Ed25519 signature verifies under the
configured public key over exactly the payload bytes, the payload is one
JSON object without repeated names, it echoes this request's nonce, names
the IIN asked for, and was issued within `registry_max_age` of now (and not
in the future beyond a small skew). Anything else is treated as no answer:
remote proofing fails closed. Any status but 200 and 404 (redirects
included) and no answer in time mean the registry is unavailable. The
photo is the registry's, never one the applicant supplied.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

import aiohttp
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from cloudsign.clock import Clock
from cloudsign.errors import CloudsignError, ConfigurationError
from cloudsign.web.inputs import check_text

CLOCK_SKEW: Final = timedelta(seconds=30)
MAX_ANSWER_BYTES: Final = 4 << 20
REQUEST_TIMEOUT: Final = aiohttp.ClientTimeout(total=15)
#: What the proofings and owners columns hold.
MAX_NAME: Final = 200
MAX_REFERENCE: Final = 128


class RegistryUnavailableError(CloudsignError):
    code = "registry_unavailable"
    status = 503
    title = "Identity registry unavailable"


@dataclass(frozen=True)
class RegistryRecord:
    iin: str
    surname: str
    given_name: str
    photo: bytes = field(repr=False)
    issued_at: datetime
    reference: str


class IdentityRegistry(Protocol):
    async def lookup(self, iin: str) -> RegistryRecord | None:
        """The person's signed record, or None if the registry has none (or
        sent nothing this service can trust)."""


def load_registry_key(value: str) -> Ed25519PublicKey:
    """A PEM file path, or the base64 of the 32-byte raw key."""
    try:
        path = Path(value)
        if path.is_file():
            key = load_pem_public_key(path.read_bytes())
            if not isinstance(key, Ed25519PublicKey):
                raise ConfigurationError("registry_public_key is not an Ed25519 key")
            return key
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(value, validate=True))
    except (OSError, ValueError, binascii.Error) as e:
        raise ConfigurationError(f"registry_public_key cannot be read: {type(e).__name__}") from e


class HttpIdentityRegistry:
    def __init__(
        self,
        url: str,
        key: Ed25519PublicKey,
        http: aiohttp.ClientSession,
        *,
        max_age: timedelta,
        clock: Clock,
        timeout: aiohttp.ClientTimeout = REQUEST_TIMEOUT,
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.http = http
        self.max_age = max_age
        self.clock = clock
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"HttpIdentityRegistry({self.url!r})"

    async def lookup(self, iin: str) -> RegistryRecord | None:
        nonce = secrets.token_hex(16)
        try:
            async with self.http.get(
                f"{self.url}/v1/persons/{iin}",
                params={"nonce": nonce},
                timeout=self.timeout,
                allow_redirects=False,
            ) as resp:
                if resp.status == 404:
                    return None
                if resp.status != 200:
                    raise RegistryUnavailableError(f"the registry answered {resp.status}")
                # content.read(n) returns what has arrived so far, not n bytes.
                body = bytearray()
                async for chunk in resp.content.iter_any():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        return None
        except (aiohttp.ClientError, TimeoutError) as e:
            raise RegistryUnavailableError("the identity registry is unreachable") from e
        return self._check(bytes(body), iin, nonce)

    def _check(self, body: bytes, iin: str, nonce: str) -> RegistryRecord | None:
        """The record, if the answer passes every check; None otherwise."""
        try:
            # 1. The envelope: two base64 strings.
            envelope = _json_object(body)
            payload = base64.b64decode(_str(envelope["payload"]), validate=True)
            signature = base64.b64decode(_str(envelope["signature"]), validate=True)
            # 2. The signature, over exactly the payload's bytes.
            self.key.verify(signature, payload)
            # 3. The payload: one JSON object, every field of its type.
            data = _json_object(payload)
            issued = datetime.fromisoformat(_str(data["issued_at"]).replace("Z", "+00:00"))
            if issued.utcoffset() is None:
                return None
            record = RegistryRecord(
                iin=_str(data["iin"]),
                surname=_name(data["surname"], "surname"),
                given_name=_name(data["given_name"], "given_name"),
                photo=base64.b64decode(_str(data["photo"]), validate=True),
                issued_at=issued.astimezone(UTC),
                reference=check_text(data["reference"], "reference", max_len=MAX_REFERENCE),
            )
            echoed = data["nonce"]
        except (
            InvalidSignature,
            ValueError,
            KeyError,
            TypeError,
            binascii.Error,
            RecursionError,
            CloudsignError,
        ):
            return None
        # 4. This request's answer, about this person, issued just now.
        now = self.clock()
        fresh = now - self.max_age <= record.issued_at <= now + CLOCK_SKEW
        if echoed != nonce or record.iin != iin or not fresh or not record.photo:
            return None
        return record


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects whose names are unique: a repeated name means two
    parsers may read two different records from one signed payload."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("a name is repeated in a JSON object")
    return obj


def _json_object(raw: bytes) -> dict[str, Any]:
    """UTF-8 JSON (json.loads would also guess UTF-16 and UTF-32), an object."""
    value = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_repeats)
    if not isinstance(value, dict):
        raise TypeError("not a JSON object")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _name(value: object, field: str) -> str:
    """A name for the certificate: text without control characters, not blank."""
    name = check_text(value, field, max_len=MAX_NAME)
    if not name.strip():
        raise ValueError(f"{field} is blank")
    return name
