"""Face input for service tests: the shipped photos and live-looking bursts.

Only `blink` can be synthesised from a still photo (the eyes are painted
over with skin colour), so service tests run with a blink-only liveness
vocabulary. Each burst gets per-frame sensor noise, as a real camera would
give: the service refuses frames it has seen before.
"""

from __future__ import annotations

import io
import secrets
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from biometrics.synthetic import blink_burst

FACES = Path(__file__).resolve().parent / "data" / "faces"


@cache
def photo(name: str) -> bytes:
    return (FACES / name).read_bytes()


#: The longest side of a burst frame: a webcam's 640x480, not the photo's 800.
CAMERA_SIDE = 480


@cache
def camera_still(name: str) -> bytes:
    """The photo as a camera would frame it (scaled to CAMERA_SIDE)."""
    with Image.open(io.BytesIO(photo(name))) as im:
        rgb = im.convert("RGB")
    rgb.thumbnail((CAMERA_SIDE, CAMERA_SIDE))
    out = io.BytesIO()
    rgb.save(out, "PNG")
    return out.getvalue()


@cache
def _blink_frames(name: str) -> tuple[bytes, ...]:
    return tuple(blink_burst(camera_still(name), "oocoo", fmt="PNG"))


def live_burst(name: str, actions: list[str]) -> list[bytes]:
    """Frames that perform `actions` (blinks only) for the face in `name`."""
    if set(actions) - {"blink"}:
        raise ValueError(f"cannot synthesise {actions} from a photo")
    rng = np.random.default_rng(secrets.randbits(64))
    frames = []
    for _ in actions:
        for raw in _blink_frames(name):
            pixels = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), dtype=np.int16)
            noisy = np.clip(pixels + rng.integers(-2, 3, pixels.shape), 0, 255).astype(np.uint8)
            out = io.BytesIO()
            Image.fromarray(noisy).save(out, "JPEG", quality=92)
            frames.append(out.getvalue())
    return frames
