"""Challenges: random, short-lived, JSON-able, and refused once expired."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from biometrics import (
    BLINK_ONLY,
    Action,
    BiometricsPolicy,
    Challenge,
    ChallengeError,
    ChallengeExpiredError,
    FaceTemplate,
    Reason,
    verify,
)

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def test_new_challenge_shape() -> None:
    ch = Challenge.new(length=3, now=T0)
    assert ch.issued_at == T0
    assert ch.expires_at - ch.issued_at == timedelta(seconds=60)
    assert len(ch.actions) == 3
    assert all(a in set(Action) for a in ch.actions)
    assert all(a != b for a, b in zip(ch.actions, ch.actions[1:], strict=False))
    assert len(ch.nonce) >= 32


def test_nonces_and_sequences_are_random() -> None:
    many = [Challenge.new(length=4) for _ in range(200)]
    assert len({c.nonce for c in many}) == 200
    assert len({c.actions for c in many}) > 10


def test_blink_only_vocabulary() -> None:
    ch = Challenge.new(vocabulary=BLINK_ONLY, length=2, now=T0)
    assert ch.actions == (Action.BLINK, Action.BLINK)
    ch = Challenge.new(vocabulary=["blink"], length=1, now=T0)
    assert ch.actions == (Action.BLINK,)


def test_json_round_trip() -> None:
    ch = Challenge.new(now=T0)
    wire = json.loads(json.dumps(ch.to_dict()))
    assert Challenge.from_dict(wire) == ch


def test_expiry_given_now() -> None:
    ch = Challenge.new(now=T0, lifetime=timedelta(seconds=30))
    ch.ensure_live(T0 + timedelta(seconds=29))
    for moment in (T0 + timedelta(seconds=30), T0 + timedelta(hours=1), T0 - timedelta(minutes=1)):
        assert not ch.is_live(moment)
        with pytest.raises(ChallengeExpiredError) as exc:
            ch.ensure_live(moment)
        assert exc.value.code == "challenge_expired"


def test_verify_refuses_expired_challenge_before_any_decoding() -> None:
    ch = Challenge.new(vocabulary=BLINK_ONLY, length=1, now=T0)
    template = FaceTemplate([0.0] * 128, 1)
    verdict = verify(template, [b"not even an image"] * 3, ch, now=T0 + timedelta(minutes=5))
    assert not verdict.accepted
    assert verdict.reason is Reason.CHALLENGE_EXPIRED
    assert verdict.score is None


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"v": 2},
        {"v": 1, "nonce": "x" * 32, "issued_at": "yesterday", "expires_at": "", "actions": []},
        {
            "v": 1,
            "nonce": "x" * 32,
            "issued_at": T0.isoformat(),
            "expires_at": (T0 + timedelta(seconds=10)).isoformat(),
            "actions": ["jump"],
        },
        {
            "v": 1,
            "nonce": "x" * 32,
            "issued_at": T0.isoformat(),
            "expires_at": (T0 + timedelta(days=1)).isoformat(),
            "actions": ["blink"],
        },
        {
            "v": 1,
            "nonce": "short",
            "issued_at": T0.isoformat(),
            "expires_at": (T0 + timedelta(seconds=10)).isoformat(),
            "actions": ["blink"],
        },
        {
            "v": 1,
            "nonce": "x" * 32,
            "issued_at": "2025-01-01T12:00:00",
            "expires_at": "2025-01-01T12:00:10",
            "actions": ["blink"],
        },
    ],
)
def test_malformed_dicts_refused(data: dict[str, object]) -> None:
    with pytest.raises(ChallengeError) as exc:
        Challenge.from_dict(data)
    assert exc.value.code == "invalid_challenge"


def test_bad_arguments_refused() -> None:
    with pytest.raises(ChallengeError):
        Challenge.new(vocabulary=[])
    with pytest.raises(ChallengeError):
        Challenge.new(vocabulary=["smile"])
    with pytest.raises(ChallengeError):
        Challenge.new(length=0)
    with pytest.raises(ChallengeError):
        Challenge.new(now=datetime(2025, 1, 1))  # naive
    with pytest.raises(ChallengeError):
        Challenge.new(lifetime=timedelta(hours=1))


def test_policy_skew_applies() -> None:
    ch = Challenge.new(now=T0)
    assert ch.is_live(T0 - timedelta(seconds=4), skew_s=BiometricsPolicy().clock_skew_s)
