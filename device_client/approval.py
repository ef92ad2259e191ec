"""What the phone recomputes before it approves (docs/wire-format.md).

The same three values the service derives (mobile_api/codes.py), computed
here from what the phone displays, so a service that showed one thing and
asked the authenticator to sign another would be caught on the phone: the
commitment over the request id, hash algorithm and document hashes; the
four-digit verification code; and the approval challenge over the
commitment, the code and the service's one-time nonce.
"""

from __future__ import annotations

import hashlib
from typing import Final

COMMITMENT_LABEL: Final = b"cloudsign/signing-request/v1\x00"
CHALLENGE_LABEL: Final = b"cloudsign/approval/v1\x00"
CODE_LABEL: Final = b"cloudsign/verification-code/v1\x00"


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
