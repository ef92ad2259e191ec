"""TOTP (RFC 6238) as the service checks it, for citizens and operators
alike: fresh seeds, and which time step a code belongs to. Each account
accepts a step once (the caller records the last accepted step)."""

from __future__ import annotations

import base64
import re
import secrets
from datetime import datetime
from typing import Final

import pyotp

SEED_BYTES: Final = 20
#: ASCII digits only: `str.isdigit()` also takes '²' and '١', which
#: `compare_digest` then refuses with a TypeError.
CODE_FORMAT: Final = re.compile(r"[0-9]{6}")


def new_seed() -> str:
    return base64.b32encode(secrets.token_bytes(SEED_BYTES)).decode()


def provisioning_uri(seed: str, *, name: str, issuer: str, period: int) -> str:
    return pyotp.TOTP(seed, interval=period).provisioning_uri(name=name, issuer_name=issuer)


def well_formed(code: object) -> bool:
    return isinstance(code, str) and CODE_FORMAT.fullmatch(code) is not None


def matching_step(seed: str, code: str, now: datetime, *, period: int, window: int) -> int | None:
    """The time step within `window` steps of `now` whose code is `code`."""
    totp = pyotp.TOTP(seed, interval=period)
    current = totp.timecode(now)
    for off in range(-window, window + 1):
        at = datetime.fromtimestamp(now.timestamp() + off * period, tz=now.tzinfo)
        if secrets.compare_digest(totp.at(at), code):
            return current + off
    return None
