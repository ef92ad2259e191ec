"""Face detection, landmarks, embeddings and the quality gate (the dlib-heavy part).

Owns the face-recognition models (loaded lazily, once per process; the pool warms
them in each worker's initializer) and turns an RGB array into a
:class:`FaceObservation`: the main face, its 68 landmarks, and how many *other*
credible faces the frame holds.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFile

from biometrics.imaging import RGBImage
from biometrics.policy import BiometricsPolicy
from biometrics.verdict import Reason

Points = npt.NDArray[np.float64]
Vector = npt.NDArray[np.float64]

_lock = threading.Lock()
_api: ModuleType | None = None


def models() -> ModuleType:
    """``face_recognition.api`` with its dlib models loaded (first call ~1 s)."""
    global _api
    if _api is None:
        with _lock:
            if _api is None:
                truncated_ok = ImageFile.LOAD_TRUNCATED_IMAGES
                with warnings.catch_warnings():
                    # face_recognition_models imports pkg_resources (deprecated).
                    warnings.simplefilter("ignore")
                    import face_recognition.api as api
                # face_recognition flips this Pillow global to True on import, which
                # would make truncated uploads decode "successfully" as grey padding.
                ImageFile.LOAD_TRUNCATED_IMAGES = truncated_ok
                _api = api
    return _api


def warm_up() -> None:
    """Load the models and run each once so the first real request is not slow."""
    api = models()
    blank = np.zeros((96, 96, 3), dtype=np.uint8)
    api.face_detector(blank, 0)


@dataclass(frozen=True, slots=True)
class FaceBox:
    """Detector box in working-image pixels (may extend past the image border)."""

    left: int
    top: int
    right: int
    bottom: int
    score: float

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def side(self) -> int:
        return min(self.width, self.height)

    def visible_fraction(self, shape: tuple[int, ...]) -> float:
        h, w = shape[0], shape[1]
        iw = max(0, min(self.right, w) - max(self.left, 0))
        ih = max(0, min(self.bottom, h) - max(self.top, 0))
        area = max(1, self.width * self.height)
        return (iw * ih) / area


@dataclass(frozen=True, slots=True)
class FaceObservation:
    """The main face of one image; no pixels, no embedding."""

    box: FaceBox
    landmarks: Points = field(repr=False)
    image_shape: tuple[int, int]
    others: int  # credible faces besides the main one


def detect(image: RGBImage, policy: BiometricsPolicy) -> list[FaceBox]:
    """All detections with their HOG scores, largest first."""
    api = models()
    rects, scores, _ = api.face_detector.run(image, policy.detect_upsample, 0.0)
    boxes = [
        FaceBox(r.left(), r.top(), r.right(), r.bottom(), float(s))
        for r, s in zip(rects, scores, strict=True)
    ]
    boxes.sort(key=lambda b: (b.width * b.height, b.score), reverse=True)
    return boxes


def _rect(box: FaceBox) -> Any:
    import dlib

    return dlib.rectangle(box.left, box.top, box.right, box.bottom)


def landmarks68(image: RGBImage, box: FaceBox) -> Points:
    shape = models().pose_predictor_68_point(image, _rect(box))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def embed(image: RGBImage, box: FaceBox, jitters: int = 1) -> Vector:
    """128-d embedding exactly as ``face_recognition.face_encodings`` computes it."""
    api = models()
    shape5 = api.pose_predictor_5_point(image, _rect(box))
    return np.array(
        api.face_encoder.compute_face_descriptor(image, shape5, jitters), dtype=np.float64
    )


def observe(image: RGBImage, policy: BiometricsPolicy) -> FaceObservation | None:
    """Main face (largest box) and the count of other credible faces; None if no face."""
    boxes = detect(image, policy)
    if not boxes:
        return None
    main = boxes[0]
    # Small or low-score extra boxes are detector noise (e.g. a mission patch), not a
    # second person; a comparable, confident one is.
    others = sum(
        1
        for b in boxes[1:]
        if b.score >= policy.second_face_min_score
        and b.side >= policy.second_face_min_size_ratio * main.side
    )
    return FaceObservation(main, landmarks68(image, main), (image.shape[0], image.shape[1]), others)


def grey(image: RGBImage) -> npt.NDArray[np.float64]:
    rgb = image.astype(np.float64)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def face_crop(image: RGBImage, box: FaceBox, size: int) -> npt.NDArray[np.float64]:
    """Grey face crop (clipped to the image), resized to ``size`` x ``size``."""
    h, w = image.shape[0], image.shape[1]
    left, top = max(box.left, 0), max(box.top, 0)
    right, bottom = min(box.right, w), min(box.bottom, h)
    if right - left < 2 or bottom - top < 2:
        return np.zeros((size, size), dtype=np.float64)
    crop = Image.fromarray(image[top:bottom, left:right]).convert("L")
    crop = crop.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(crop, dtype=np.float64)


def sharpness(image: RGBImage, box: FaceBox) -> float:
    """Variance of the 4-neighbour Laplacian over the face at a fixed 128x128 scale."""
    g = face_crop(image, box, 128)
    # Contrast-normalised so a dim but sharp face is not called blurred (darkness has its
    # own gate): unit-variance crop scaled to a nominal std of 50 grey levels.
    std = float(g.std())
    g = (g - g.mean()) * (50.0 / max(std, 1.0))
    lap = (g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1]) - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def face_luma(image: RGBImage, box: FaceBox) -> float:
    # Centre half of the box: skin, not hair or background.
    cx, cy = (box.left + box.right) // 2, (box.top + box.bottom) // 2
    hw, hh = max(1, box.width // 4), max(1, box.height // 4)
    h, w = image.shape[0], image.shape[1]
    region = image[max(0, cy - hh) : min(h, cy + hh), max(0, cx - hw) : min(w, cx + hw)]
    if region.size == 0:
        return 0.0
    return float(grey(region).mean())


def truncated(obs: FaceObservation, policy: BiometricsPolicy) -> bool:
    """Face cut by the image border: box mostly outside, or any landmark outside."""
    h, w = obs.image_shape
    pts = obs.landmarks
    outside = bool(np.any((pts[:, 0] < 0) | (pts[:, 0] >= w) | (pts[:, 1] < 0) | (pts[:, 1] >= h)))
    return outside or obs.box.visible_fraction(obs.image_shape) < policy.min_visible_fraction


def quality_issue(
    image: RGBImage, obs: FaceObservation | None, policy: BiometricsPolicy, *, min_face_px: int
) -> Reason | None:
    """First failed quality criterion, in a fixed order, or None if the face is usable."""
    if obs is None:
        return Reason.NO_FACE
    if obs.others:
        return Reason.MULTIPLE_FACES
    if truncated(obs, policy):
        return Reason.FACE_TRUNCATED
    if obs.box.side < min_face_px:
        return Reason.FACE_TOO_SMALL
    luma = face_luma(image, obs.box)
    if luma < policy.min_face_luma:
        return Reason.TOO_DARK
    if luma > policy.max_face_luma:
        return Reason.TOO_BRIGHT
    if sharpness(image, obs.box) < policy.min_sharpness:
        return Reason.TOO_BLURRED
    return None
