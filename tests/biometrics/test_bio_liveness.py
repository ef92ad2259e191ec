"""Action detection on landmark sequences (head turns cannot be faked from a photo,
so the decision is tested on geometry), plus the action/challenge comparison."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from biometrics import Action, BiometricsPolicy, Reason
from biometrics.detection import observe
from biometrics.imaging import decode_image
from biometrics.liveness import (
    FrameSignals,
    compare_actions,
    detect_actions,
    detect_actions_from_landmarks,
    is_static,
    yaw_ratio,
)

POLICY = BiometricsPolicy()
L, R, B = Action.TURN_LEFT, Action.TURN_RIGHT, Action.BLINK

# Rough depth (in face widths, + towards the camera) of the 68 points, for rotating a
# frontal 2-D shape: jaw ends far back, chin less, nose tip furthest forward.
_DEPTH = np.array(
    [-0.45 + 0.4 * (1 - abs(i - 8) / 8) for i in range(17)]  # jaw
    + [0.05] * 10  # brows
    + [0.1, 0.15, 0.2, 0.3]  # nose bridge down to the tip
    + [0.2] * 5  # nostrils
    + [0.0] * 12  # eyes
    + [0.05] * 20  # mouth
)


@pytest.fixture(scope="module")
def frontal(face_bytes: Callable[[str], bytes]) -> np.ndarray:
    obs = observe(decode_image(face_bytes("obama_1.jpg"), POLICY), POLICY)
    assert obs is not None
    return obs.landmarks


def rotate(lm: np.ndarray, degrees: float) -> np.ndarray:
    """Yaw the shape: positive = the subject turns to their left (nose to image right)."""
    width = lm[16, 0] - lm[0, 0]
    cx = lm[:, 0].mean()
    t = math.radians(degrees)
    out = lm.copy()
    out[:, 0] = cx + (lm[:, 0] - cx) * math.cos(t) + _DEPTH * width * math.sin(t)
    return out


def close_eyes(lm: np.ndarray) -> np.ndarray:
    out = lm.copy()
    for eye in (slice(36, 42), slice(42, 48)):
        cy = out[eye, 1].mean()
        out[eye, 1] = cy + (out[eye, 1] - cy) * 0.2
    return out


def seq(frontal: np.ndarray, angles: Sequence[float]) -> list[np.ndarray]:
    return [rotate(frontal, a) for a in angles]


def test_frontal_shape_reads_frontal(frontal: np.ndarray) -> None:
    assert abs(yaw_ratio(frontal)) < 0.1
    assert yaw_ratio(rotate(frontal, 25)) > POLICY.turn_yaw
    assert yaw_ratio(rotate(frontal, -25)) < -POLICY.turn_yaw


def test_turn_left(frontal: np.ndarray) -> None:
    assert detect_actions_from_landmarks(seq(frontal, [0, 0, 10, 25, 30, 20, 5, 0]), POLICY) == (L,)


def test_turn_right(frontal: np.ndarray) -> None:
    assert detect_actions_from_landmarks(seq(frontal, [0, 0, -12, -28, -25, 0, 0]), POLICY) == (R,)


def test_no_turn_for_small_motions(frontal: np.ndarray) -> None:
    angles = [0, 3, -4, 6, 2, -5, 0, 4]
    assert detect_actions_from_landmarks(seq(frontal, angles), POLICY) == ()


def test_left_then_right_in_order(frontal: np.ndarray) -> None:
    angles = [0, 0, 25, 30, 0, 0, -25, -30, 0, 0]
    found = detect_actions_from_landmarks(seq(frontal, angles), POLICY)
    assert found == (L, R)
    assert compare_actions(found, (L, R)) is None
    assert compare_actions(found, (R, L)) is Reason.ACTIONS_WRONG_ORDER


def test_same_turn_twice_needs_return_to_centre(frontal: np.ndarray) -> None:
    held = seq(frontal, [0, 0, 25, 30, 28, 25, 0, 0])
    assert detect_actions_from_landmarks(held, POLICY) == (L,)
    twice = seq(frontal, [0, 0, 25, 0, 0, 25, 0, 0])
    assert detect_actions_from_landmarks(twice, POLICY) == (L, L)


def test_mirrored_frames_flip_direction(frontal: np.ndarray) -> None:
    mirrored = BiometricsPolicy(mirrored_frames=True)
    frames = seq(frontal, [0, 0, 25, 30, 0, 0])
    assert detect_actions_from_landmarks(frames, mirrored) == (R,)


def test_offset_resting_pose_is_not_a_turn(frontal: np.ndarray) -> None:
    # Someone sitting 15 degrees off-axis the whole time did not turn.
    assert detect_actions_from_landmarks(seq(frontal, [15] * 8), POLICY) == ()
    # ... but turning from there still counts, relative to that resting pose.
    found = detect_actions_from_landmarks(seq(frontal, [15, 15, 15, 40, 45, 15, 15]), POLICY)
    assert found == (L,)


def test_blink_from_eye_aspect_ratio(frontal: np.ndarray) -> None:
    frames = [frontal, frontal, close_eyes(frontal), frontal, frontal]
    assert detect_actions_from_landmarks(frames, POLICY) == (B,)
    # closed at the end (never reopened) or from the start: not a blink
    assert detect_actions_from_landmarks([frontal, frontal, close_eyes(frontal)], POLICY) == ()


def test_blink_from_eye_texture_when_landmarks_do_not_move() -> None:
    # The predictor may keep eye points where they were on a painted-over eye; the
    # appearance signal still sees the blink.
    sig = [FrameSignals(0.3, 0.0, o) for o in (0.6, 0.62, 0.02, 0.61, 0.6)]
    assert detect_actions(sig, POLICY) == (B,)


def test_blink_then_turn_order(frontal: np.ndarray) -> None:
    frames = [frontal, close_eyes(frontal), frontal, frontal, rotate(frontal, 30), frontal, frontal]
    found = detect_actions_from_landmarks(frames, POLICY)
    assert found == (B, L)
    assert compare_actions(found, (B, L)) is None
    assert compare_actions(found, (L, B)) is Reason.ACTIONS_WRONG_ORDER


@pytest.mark.parametrize(
    ("detected", "required", "expected"),
    [
        ((B,), (B,), None),
        ((B, B, L), (B, L), None),  # a spontaneous extra blink is tolerated
        ((L, B), (L,), None),
        ((), (B,), Reason.ACTIONS_MISSING),
        ((L,), (L, R), Reason.ACTIONS_MISSING),
        ((B,), (B, B), Reason.ACTIONS_MISSING),
        ((R, L), (L, R), Reason.ACTIONS_WRONG_ORDER),
        ((L, R, L, R), (L, R), Reason.ACTIONS_WRONG_ORDER),  # replayed "do everything" clip
        ((L, B), (B,), Reason.ACTIONS_WRONG_ORDER),  # an unrequested turn
    ],
)
def test_compare_actions(
    detected: tuple[Action, ...], required: tuple[Action, ...], expected: Reason | None
) -> None:
    assert compare_actions(detected, required) is expected


def test_static_detection() -> None:
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 255, (64, 64))
    noisy = [base + rng.normal(0, 2, base.shape) for _ in range(5)]
    assert is_static([base, *noisy], POLICY)
    moved = np.roll(base, 3, axis=1)
    assert not is_static([base, base, moved], POLICY)
    assert is_static([base], POLICY)
