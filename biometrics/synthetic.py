"""Synthetic liveness input for tests and the browser test's fake webcam.

Owns :func:`close_eyes` and :func:`blink_burst`: from one still photo, frames where the
eyes are painted over with skin colour, i.e. a *blink a photo can fake*. Never used on
the verification path; it exists so the limits of the liveness check are tested and
documented rather than assumed.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from biometrics import detection, liveness
from biometrics.errors import BiometricsError
from biometrics.imaging import decode_image
from biometrics.policy import DEFAULT_POLICY, BiometricsPolicy


def _encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        image.save(out, "JPEG", quality=92)
    else:
        image.save(out, "PNG")
    return out.getvalue()


def close_eyes(
    image: bytes, *, fmt: str = "PNG", policy: BiometricsPolicy = DEFAULT_POLICY
) -> bytes:
    """Paint both eyes of the (single) face with skin colour sampled under each eye.

    The output has the working size of ``policy`` (like every decoded image).
    """
    rgb = decode_image(image, policy)
    obs = detection.observe(rgb, policy)
    if obs is None:
        raise BiometricsError("no face to paint", code="no_face")
    pil = Image.fromarray(rgb)
    draw = ImageDraw.Draw(pil)
    for eye in (liveness.RIGHT_EYE, liveness.LEFT_EYE):
        pts = obs.landmarks[eye]
        cx, cy = pts.mean(axis=0)
        w = float(np.ptp(pts[:, 0]))
        patch = rgb[
            int(cy + 0.45 * w) : int(cy + 0.75 * w) + 1, int(cx - 0.3 * w) : int(cx + 0.3 * w) + 1
        ].reshape(-1, 3)
        colour = tuple(int(v) for v in np.median(patch, axis=0)) if patch.size else (160, 120, 100)
        draw.ellipse([cx - 0.75 * w, cy - 0.45 * w, cx + 0.75 * w, cy + 0.45 * w], fill=colour)
    return _encode(pil.filter(ImageFilter.GaussianBlur(0.5)), fmt)


def blink_burst(
    image: bytes,
    pattern: str = "oocoo",
    *,
    fmt: str = "PNG",
    policy: BiometricsPolicy = DEFAULT_POLICY,
) -> list[bytes]:
    """Frames following ``pattern`` ('o' open = the photo, 'c' closed = painted)."""
    if not pattern or set(pattern) - {"o", "c"}:
        raise BiometricsError("pattern is made of 'o' and 'c'", code="invalid_input")
    opened = _encode(Image.fromarray(decode_image(image, policy)), fmt)
    closed = close_eyes(image, fmt=fmt, policy=policy) if "c" in pattern else b""
    return [opened if c == "o" else closed for c in pattern]
