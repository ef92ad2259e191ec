"""The values that bind an approval to its transaction, on both sides."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from device_client import approval
from mobile_api import codes

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
RID = "3f2b1c4d-0000-4000-8000-000000000001"


@given(
    st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=5),
    st.binary(min_size=16, max_size=16),
)
def test_the_phone_computes_what_the_service_computes(hashes: list[bytes], nonce: bytes) -> None:
    server = codes.commitment(RID, "sha256", hashes)
    assert approval.commitment(RID, "sha256", hashes) == server
    code = codes.verification_code(server)
    assert approval.verification_code(server) == code and len(code) == 4 and code.isdigit()
    assert approval.approval_challenge(server, code, nonce) == codes.approval_challenge(
        server, code, nonce
    )


def test_the_commitment_covers_id_algorithm_order_and_every_hash() -> None:
    a, b = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    base = codes.commitment(RID, "sha256", [a, b])
    assert codes.commitment(RID, "sha256", [b, a]) != base
    assert codes.commitment(RID, "sha384", [a, b]) != base
    assert codes.commitment(RID.replace("1", "2"), "sha256", [a, b]) != base
    assert codes.commitment(RID, "sha256", [a]) != base
    assert codes.commitment(RID, "sha256", [a + b[:0], b]) == base
    # Length prefixes: moving bytes between hashes changes the commitment.
    assert codes.commitment(RID, "sha256", [a + b]) != base
    nonce = secrets.token_bytes(16)
    challenge = codes.approval_challenge(base, "1234", nonce)
    assert codes.approval_challenge(base, "1235", nonce) != challenge
    assert codes.approval_challenge(base, "1234", secrets.token_bytes(16)) != challenge


def test_qr_frames_are_fresh_for_a_few_seconds_only() -> None:
    secret = secrets.token_bytes(32)
    frame = codes.parse_qr(codes.qr_frame(RID, secret, 12))
    assert frame is not None and frame.elapsed_seconds == 12
    shown = T0 + timedelta(seconds=12)
    assert codes.qr_is_fresh(frame, secret, T0, shown)
    assert codes.qr_is_fresh(frame, secret, T0, shown + codes.QR_MAX_AGE)
    assert not codes.qr_is_fresh(frame, secret, T0, shown + codes.QR_MAX_AGE + timedelta(seconds=1))
    assert codes.qr_is_fresh(frame, secret, T0, shown - timedelta(seconds=1))
    assert not codes.qr_is_fresh(frame, secret, T0, shown - timedelta(seconds=2))
    assert not codes.qr_is_fresh(frame, secrets.token_bytes(32), T0, shown)


def test_anything_but_a_frame_parses_to_nothing() -> None:
    good = codes.qr_frame(RID, b"k" * 32, 3)
    for bad in ["", good + "0", good.upper(), good.replace(".", ":"), None, 5, "x" * 500,
                f"cloudsign.{RID}.9999999.{'0' * 64}"]:  # fmt: skip
        assert codes.parse_qr(bad) is None
