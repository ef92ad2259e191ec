"""Liveness on real video frames (short_hamilton_clip.mp4: the subject turns to his
left, then to his right), through the full image pipeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from biometrics import Action, BiometricsPolicy, Challenge, FaceTemplate, Reason, enrol, verify

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
LEFT, RIGHT, BLINK = Action.TURN_LEFT, Action.TURN_RIGHT, Action.BLINK


@pytest.fixture(scope="module")
def frames(faces_dir: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((faces_dir / "hamilton_turns").glob("frame_*.jpg"))]


@pytest.fixture(scope="module")
def template(frames: list[bytes]) -> FaceTemplate:
    return enrol([frames[5]])


def challenge(*actions: Action) -> Challenge:
    return Challenge(
        nonce="n" * 32, issued_at=T0, expires_at=T0 + timedelta(seconds=60), actions=actions
    )


def test_real_turns_detected_in_order(template: FaceTemplate, frames: list[bytes]) -> None:
    # Stage video: 90-px faces, a microphone over the mouth. Same-person frontal frames
    # of this clip lie up to 0.62 apart, over the default threshold (see the docs), so
    # the match is checked with a lenient policy; the liveness decision is the point.
    lenient = BiometricsPolicy(match_threshold=0.65)
    verdict = verify(template, frames, challenge(LEFT, RIGHT), now=T0, policy=lenient)
    assert verdict.actions == ("turn_left", "turn_right")
    assert verdict.accepted, verdict


def test_real_turns_wrong_order_or_unrequested(template: FaceTemplate, frames: list[bytes]) -> None:
    assert (
        verify(template, frames, challenge(RIGHT, LEFT), now=T0).reason
        is Reason.ACTIONS_WRONG_ORDER
    )
    # asked only for a left turn: the extra right turn is refused too
    assert verify(template, frames, challenge(LEFT), now=T0).reason is Reason.ACTIONS_WRONG_ORDER


def test_real_video_without_the_action(template: FaceTemplate, frames: list[bytes]) -> None:
    # the first four frames: the head moves a little (not static) but does not turn
    verdict = verify(template, frames[:4], challenge(RIGHT), now=T0)
    assert verdict.reason is Reason.ACTIONS_MISSING
