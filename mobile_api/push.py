"""Web Push to bound phones: a new signing request reaches the app at once.

The app subscribes its service worker (`PushManager.subscribe` with the
service's VAPID key from `GET /api/v1/push/key`) and registers the
subscription for one of the account's bound devices. When a request for
that citizen is created, every active device's subscription gets an
encrypted message (RFC 8291, aes128gcm, through pywebpush) with the request
id, the requester and the verification code: no document, no hash. A push
is a hint; the inbox has the same.

The VAPID key (RFC 8292, P-256) is derived from the HSM's `mobile-qr` HMAC
key, so it is never stored and is the same in every process; it signs only
the push services' JWTs and is not a key of any citizen.

Push services are outside the centre: a subscription's endpoint must be an
https URL on one of `push_services` (the browser vendors' push services by
default), so an account cannot make the service POST to an address of its
choosing. Loopback endpoints are accepted only when `push_allow_loopback`
is set (the tests' own push endpoint).
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02, VapidException
from pywebpush import WebPushException, webpush_async
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from cloudsign.clock import Clock
from cloudsign.errors import NotFoundError, ValidationError
from cloudsign.storage import Database
from hsm_bridge import KeyedHasher
from mobile_api.settings import MobileSettings
from mobile_api.tables import devices, push_subscriptions

log = logging.getLogger(__name__)

VAPID_LABEL: Final = b"cloudsign/vapid/v1"
#: The order of the P-256 group.
P256_N: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
PUSH_TTL_SECONDS: Final = 300
PUSH_TIMEOUT: Final = 10.0
LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class Subscription:
    endpoint: str
    p256dh: str
    auth: str

    def __repr__(self) -> str:
        return f"Subscription({urlsplit(self.endpoint).hostname!r})"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PushService:
    def __init__(
        self,
        db: Database,
        hasher: KeyedHasher,
        http: aiohttp.ClientSession,
        settings: MobileSettings,
        *,
        clock: Clock,
    ) -> None:
        self.db = db
        self.hasher = hasher
        self.http = http
        self.settings = settings
        self.clock = clock
        self._key: ec.EllipticCurvePrivateKey | None = None

    def __repr__(self) -> str:
        return "PushService()"

    async def _vapid_key(self) -> ec.EllipticCurvePrivateKey:
        if self._key is None:
            seed = await self.hasher.hmac_sha256("mobile-qr", VAPID_LABEL)
            self._key = ec.derive_private_key(
                int.from_bytes(seed, "big") % (P256_N - 1) + 1, ec.SECP256R1()
            )
        return self._key

    async def public_key(self) -> str:
        """The applicationServerKey: the uncompressed point, base64url."""
        point = (
            (await self._vapid_key())
            .public_key()
            .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        )
        return _b64url(point)

    def check_endpoint(self, endpoint: str) -> str:
        url = urlsplit(endpoint)
        host = (url.hostname or "").lower()
        if self.settings.push_allow_loopback and host in LOOPBACK and url.scheme == "http":
            return endpoint
        allowed = any(host == s or host.endswith("." + s) for s in self.settings.push_services)
        if url.scheme != "https" or not allowed or url.username or url.password:
            raise ValidationError(
                "the endpoint must be https on a known push service", field="endpoint"
            )
        return endpoint

    async def subscribe(
        self, owner_id: str, device_id: str, endpoint: str, p256dh: str, auth: str
    ) -> None:
        self.check_endpoint(endpoint)
        try:
            point = _unb64url(p256dh)
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
            if len(_unb64url(auth)) != 16:
                raise ValueError("auth")
        except ValueError as e:
            raise ValidationError("keys.p256dh / keys.auth are not a P-256 point and 16 bytes",
                                  field="keys") from e  # fmt: skip
        now = self.clock()
        async with self.db.transaction() as conn:
            found = (
                await conn.execute(
                    select(devices.c.id).where(
                        devices.c.id == device_id,
                        devices.c.owner_id == owner_id,
                        devices.c.revoked_at.is_(None),
                    )
                )
            ).first()
            if found is None:
                raise NotFoundError("no such bound device")
            values = {
                "device_id": device_id,
                "endpoint": endpoint,
                "client_keys": {"p256dh": p256dh, "auth": auth},
                "created_at": now,
            }
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            stmt = dialect.insert(push_subscriptions).values(**values)
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[push_subscriptions.c.device_id],
                    set_={k: v for k, v in values.items() if k != "device_id"},
                )
            )

    async def notify(self, owner_id: str, message: dict[str, Any]) -> int:
        """Push `message` to every active bound device of the owner; returns
        how many push services accepted it."""
        async with self.db.read() as conn:
            rows = list(
                await conn.execute(
                    select(
                        push_subscriptions.c.device_id,
                        push_subscriptions.c.endpoint,
                        push_subscriptions.c.client_keys,
                    )
                    .select_from(
                        push_subscriptions.join(
                            devices, devices.c.id == push_subscriptions.c.device_id
                        )
                    )
                    .where(devices.c.owner_id == owner_id, devices.c.revoked_at.is_(None))
                )
            )
        if not rows:
            return 0
        vapid = Vapid02(private_key=await self._vapid_key())
        data = json.dumps(message)
        sent = 0
        for device_id, endpoint, keys in rows:
            try:
                resp = await webpush_async(
                    {"endpoint": endpoint, "keys": dict(keys)},
                    data=data,
                    vapid_private_key=vapid,
                    vapid_claims={"sub": self.settings.push_contact},
                    ttl=PUSH_TTL_SECONDS,
                    timeout=PUSH_TIMEOUT,
                    aiohttp_session=self.http,
                )
            except WebPushException as e:
                status = getattr(e.response, "status", None)
                log.info("push to a device refused (%s)", status)
                if status in (404, 410):  # the subscription is gone
                    await self._forget(device_id)
                continue
            except (aiohttp.ClientError, TimeoutError, VapidException) as e:
                log.warning("push to a device failed: %s", type(e).__name__)
                continue
            if isinstance(resp, aiohttp.ClientResponse) and resp.status < 300:
                sent += 1
        return sent

    async def _forget(self, device_id: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                delete(push_subscriptions).where(push_subscriptions.c.device_id == device_id)
            )
