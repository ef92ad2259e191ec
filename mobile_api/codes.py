"""What binds an approval to one transaction, and what a person compares.

Three values, all computable by the app from what it displays, so a server
that showed one thing and asked for another would be caught on the phone:

- the **commitment**: SHA-256 over the request id, the hash algorithm and
  every document hash in order (length-prefixed, so no two lists encode
  alike);
- the **verification code**: four digits from the commitment (Smart-ID's
  scheme: the last two bytes of a SHA-256, modulo 10,000), shown on the
  requesting screen and on the phone; a person who sees two different codes
  stops;
- the **approval challenge** the WebAuthn authenticator signs: SHA-256 over
  the commitment, the code and a one-time server nonce. An assertion is
  therefore valid for these hashes, this code and this one attempt only.

The animated QR follows BankID's scheme: each frame is
``cloudsign.<token>.<t>.<auth>``, where ``t`` is the whole seconds since the
request was created and ``auth`` = HMAC-SHA256(qr secret, ``t``). The qr
secret is derived inside the HSM from the request id (`qr_secret`), so it is
never stored and never reaches the browser, which only fetches the current
frame; a photographed frame is stale once ``t`` falls behind the clock by
more than `QR_MAX_AGE`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

COMMITMENT_LABEL: Final = b"cloudsign/signing-request/v1\x00"
CHALLENGE_LABEL: Final = b"cloudsign/approval/v1\x00"
CODE_LABEL: Final = b"cloudsign/verification-code/v1\x00"
QR_PREFIX: Final = "cloudsign"
#: A QR frame older than this (by its own elapsed-time field) is refused.
QR_MAX_AGE: Final = timedelta(seconds=5)
_QR = re.compile(r"^cloudsign\.([0-9a-f-]{36})\.(\d{1,6})\.([0-9a-f]{64})$")


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def commitment(request_id: str, hash_algorithm: str, hashes: list[bytes]) -> bytes:
    parts = [COMMITMENT_LABEL, _field(request_id.encode()), _field(hash_algorithm.encode())]
    parts.append(len(hashes).to_bytes(4, "big"))
    parts.extend(_field(h) for h in hashes)
    return hashlib.sha256(b"".join(parts)).digest()


def verification_code(commitment_bytes: bytes) -> str:
    digest = hashlib.sha256(CODE_LABEL + commitment_bytes).digest()
    return f"{int.from_bytes(digest[-2:], 'big') % 10000:04d}"


def approval_challenge(commitment_bytes: bytes, code: str, nonce: bytes) -> bytes:
    return hashlib.sha256(
        CHALLENGE_LABEL + commitment_bytes + _field(code.encode()) + _field(nonce)
    ).digest()


def qr_frame(request_id: str, secret: bytes, elapsed_seconds: int) -> str:
    auth = hmac.new(secret, str(elapsed_seconds).encode(), hashlib.sha256).hexdigest()
    return f"{QR_PREFIX}.{request_id}.{elapsed_seconds}.{auth}"


@dataclass(frozen=True)
class QrFrame:
    request_id: str
    elapsed_seconds: int
    auth: str

    def __repr__(self) -> str:
        return f"QrFrame({self.request_id!r}, t={self.elapsed_seconds})"


def parse_qr(text: object) -> QrFrame | None:
    """The fields of a frame, or None for anything that is not one."""
    if not isinstance(text, str) or len(text) > 200:
        return None
    m = _QR.match(text)
    if m is None:
        return None
    return QrFrame(m.group(1), int(m.group(2)), m.group(3))


def qr_is_fresh(frame: QrFrame, secret: bytes, created_at: datetime, now: datetime) -> bool:
    """The frame's HMAC is right and its time is now, within QR_MAX_AGE (and
    at most a second ahead, for clocks that round differently)."""
    expected = qr_frame(frame.request_id, secret, frame.elapsed_seconds).rsplit(".", 1)[1]
    if not hmac.compare_digest(expected, frame.auth):
        return False
    shown_at = created_at + timedelta(seconds=frame.elapsed_seconds)
    return -timedelta(seconds=1) <= now - shown_at <= QR_MAX_AGE
