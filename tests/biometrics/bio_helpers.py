"""Small helpers shared by the biometrics tests."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image


def encode(image: Image.Image, fmt: str = "PNG", **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()
