"""Liveness signals and the action detector.

Owns the per-frame geometry (eye aspect ratio, yaw proxy, appearance-based eye
openness), the decision "which actions does this burst show, in which order", and the
static-replay test. The action detector works on landmark sequences alone, so head
pose decisions are testable without images.

What it proves, honestly: that the frames show a face whose landmarks perform the
requested actions in order and that the burst is not one picture repeated. It does not
prove a live human in front of a real camera (see docs/biometrics.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from biometrics.challenge import Action
from biometrics.policy import BiometricsPolicy
from biometrics.verdict import Reason

Points = npt.NDArray[np.float64]
GreyImage = npt.NDArray[np.float64]

# 68-point (iBUG 300-W) indices.
JAW = slice(0, 17)
NOSE_BRIDGE_TIP = 30
RIGHT_EYE = slice(36, 42)  # the subject's right eye: left side of an unmirrored image
LEFT_EYE = slice(42, 48)
# Points that do not move when the eyes close: jaw line and nose.
_RIGID = np.r_[0:17, 27:36]
REST_FRAMES = 3


@dataclass(frozen=True, slots=True)
class FrameSignals:
    """What the detector needs from one frame."""

    ear: float
    yaw: float
    openness: float | None = None


def eye_aspect_ratio(eye: Points) -> float:
    """Soukupová & Čech EAR: (|p2-p6| + |p3-p5|) / (2 |p1-p4|)."""
    v = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
    h = 2.0 * np.linalg.norm(eye[0] - eye[3])
    return float(v / h) if h > 0 else 0.0


def yaw_ratio(landmarks: Points) -> float:
    """Horizontal nose position between the jaw ends, in [-1, 1]; 0 is frontal.

    Positive when the nose tip is towards the image's right, i.e. (unmirrored camera)
    the subject turned to *their* left: the tip sticks out of the face plane, so under
    yaw it moves further than the jaw ends do.
    """
    x0, x16 = landmarks[0, 0], landmarks[16, 0]
    width = x16 - x0
    if abs(width) < 1e-6:
        return 0.0
    return float(2.0 * ((landmarks[NOSE_BRIDGE_TIP, 0] - x0) / width) - 1.0)


def signals_from_landmarks(landmarks: Points, openness: float | None = None) -> FrameSignals:
    ear = 0.5 * (eye_aspect_ratio(landmarks[RIGHT_EYE]) + eye_aspect_ratio(landmarks[LEFT_EYE]))
    return FrameSignals(ear=ear, yaw=yaw_ratio(landmarks), openness=openness)


def _similarity(src: Points, dst: Points) -> tuple[float, npt.NDArray[np.float64], Points, Points]:
    """Least-squares similarity transform (Umeyama) mapping ``src`` onto ``dst``."""
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - ms, dst - md
    u, sv, vt = np.linalg.svd(d.T @ s)
    fix = np.eye(2)
    if np.linalg.det(u @ vt) < 0:
        fix[1, 1] = -1.0
    rot = u @ fix @ vt
    var = float((s**2).sum())
    scale = float((sv * np.diag(fix)).sum() / var) if var > 0 else 1.0
    return scale, rot, ms, md


def eye_openness(grey: GreyImage, landmarks: Points, reference: Points) -> float:
    """Texture (std/mean of grey) inside the eyes, located via the rigid landmarks.

    The dlib predictor is a shape prior: on a closed or painted-over eye it tends to
    slide the eye points up to the eyebrows, so EAR alone misses such frames. Here the
    eye outlines of an open-eye ``reference`` frame are carried over by a similarity
    transform fitted on the jaw and nose, which stay put, and the pixels there are
    measured: an open eye (iris, sclera, lashes) is textured, a lid or skin is flat.
    """
    scale, rot, ms, md = _similarity(reference[_RIGID], landmarks[_RIGID])
    h, w = grey.shape
    values: list[float] = []
    for eye in (RIGHT_EYE, LEFT_EYE):
        pts = (scale * (rot @ (reference[eye] - ms).T)).T + md
        centre = pts.mean(axis=0)
        pts = (pts - centre) * 1.2 + centre
        x0, y0 = np.floor(pts.min(axis=0)).astype(int)
        x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 - x0 < 3 or y1 - y0 < 2:
            continue
        mask_im = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(mask_im).polygon([(float(x - x0), float(y - y0)) for x, y in pts], fill=1)
        mask = np.asarray(mask_im, dtype=bool)
        region = grey[y0:y1, x0:x1][mask]
        if region.size >= 4:
            values.append(float(region.std() / max(float(region.mean()), 1.0)))
    return float(np.mean(values)) if values else 0.0


def detect_actions(signals: Sequence[FrameSignals], policy: BiometricsPolicy) -> tuple[Action, ...]:
    """Actions visible in a burst, in the order they start.

    * Turn: the yaw proxy crosses ``turn_yaw``; another turn the same way only counts
      after a return below ``neutral_yaw``.
    * Blink: near-frontal frames where the eyes are closed (EAR below
      ``blink_ear_ratio`` of the burst's open-eye baseline, or eye texture below
      ``blink_openness_ratio`` of its baseline), with open frames before *and* after.
    """
    if not signals:
        return ()
    yaw = relative_yaw(signals, policy)
    frontal = [abs(y) < policy.turn_yaw for y in yaw]
    closed = closed_frames(signals, policy)

    events: list[tuple[int, Action]] = []
    pose: str | None = None
    for i, y in enumerate(yaw):
        new = (
            "L"
            if y >= policy.turn_yaw
            else "R"
            if y <= -policy.turn_yaw
            else ("N" if abs(y) < policy.neutral_yaw else pose)
        )
        if new != pose and new in ("L", "R"):
            events.append((i, Action.TURN_LEFT if new == "L" else Action.TURN_RIGHT))
        pose = new

    seen_open = False
    run_start: int | None = None
    for i in range(len(signals)):
        if not frontal[i]:
            continue
        if closed[i]:
            if seen_open and run_start is None:
                run_start = i
        else:
            if run_start is not None:
                events.append((run_start, Action.BLINK))
                run_start = None
            seen_open = True
    events.sort(key=lambda e: e[0])
    return tuple(a for _, a in events)


def closed_frames(signals: Sequence[FrameSignals], policy: BiometricsPolicy) -> list[bool]:
    """Per frame: are the eyes closed? Judged only on near-frontal frames.

    Baselines are the burst's medians: EAR differs a lot between people (0.18 for a
    smiling Biden, 0.39 for the astronaut) and a blink lasts only a few frames, so the
    median is an open-eye value.
    """
    yaw = relative_yaw(signals, policy)
    frontal = [abs(y) < policy.turn_yaw for y in yaw]
    ears = [s.ear for s, f in zip(signals, frontal, strict=True) if f]
    if not ears:
        return [False] * len(signals)
    ear_base = float(np.median(ears))
    opens = [
        s.openness for s, f in zip(signals, frontal, strict=True) if f and s.openness is not None
    ]
    open_base = float(np.median(opens)) if opens else None
    out: list[bool] = []
    for s, f in zip(signals, frontal, strict=True):
        by_ear = ear_base > 0 and s.ear < policy.blink_ear_ratio * ear_base
        by_look = (
            open_base is not None
            and open_base > 0
            and s.openness is not None
            and s.openness < policy.blink_openness_ratio * open_base
        )
        out.append(bool(f and (by_ear or by_look)))
    return out


def relative_yaw(signals: Sequence[FrameSignals], policy: BiometricsPolicy) -> list[float]:
    """Yaw relative to the resting pose, sign-corrected so + is the subject's left.

    Relative because people rarely sit square to the camera (obama_2.jpg reads -0.45
    while looking at the lens). The resting pose is the median of the first
    ``REST_FRAMES`` frames: the client shows the challenge before it starts capturing,
    so a burst starts at rest (a whole-burst median would be dragged off by a turn that
    is held for half of the frames).
    """
    sign = -1.0 if policy.mirrored_frames else 1.0
    base = float(np.median([s.yaw for s in signals[:REST_FRAMES]])) if signals else 0.0
    return [sign * (s.yaw - base) for s in signals]


def detect_actions_from_landmarks(
    landmarks: Sequence[Points], policy: BiometricsPolicy
) -> tuple[Action, ...]:
    """:func:`detect_actions` on 68x2 landmark arrays (EAR and yaw only)."""
    return detect_actions(
        [signals_from_landmarks(np.asarray(lm, dtype=np.float64)) for lm in landmarks], policy
    )


def compare_actions(detected: Sequence[Action], required: Sequence[Action]) -> Reason | None:
    """None if ``detected`` follows ``required``; else the refusal reason.

    Extra blinks are tolerated (people blink spontaneously); an unrequested turn is
    not, so replaying a clip that does every action in turn fails.
    """
    i = 0
    for action in detected:
        if i < len(required) and action == required[i]:
            i += 1
        elif action == Action.BLINK:
            continue
        else:
            return Reason.ACTIONS_WRONG_ORDER
    if i == len(required):
        return None
    if not Counter(required) - Counter(detected):
        return Reason.ACTIONS_WRONG_ORDER
    return Reason.ACTIONS_MISSING


def is_static(crops: Sequence[GreyImage], policy: BiometricsPolicy) -> bool:
    """True when no frame differs visibly from the first (same picture resent).

    Measured as the share of face-crop pixels that changed by more than
    ``static_pixel_delta`` grey levels, which re-encoding noise does not reach but a
    blink (even a painted one) or any head motion does.
    """
    if len(crops) < 2:
        return True
    first = crops[0]
    changed = max(float(np.mean(np.abs(c - first) > policy.static_pixel_delta)) for c in crops[1:])
    return changed < policy.static_min_changed_fraction


def reference_shape(landmarks: Sequence[Points]) -> Points:
    """Median landmark shape of a burst, in the first frame's coordinates.

    Each frame is aligned onto the first by its rigid points, then the median is taken
    point by point: eye points that jumped to the eyebrows in a closed-eye frame are
    outvoted by the open frames.
    """
    first = landmarks[0]
    aligned = []
    for lm in landmarks:
        scale, rot, ms, md = _similarity(lm[_RIGID], first[_RIGID])
        aligned.append((scale * (rot @ (lm - ms).T)).T + md)
    return np.asarray(np.median(np.stack(aligned), axis=0), dtype=np.float64)
