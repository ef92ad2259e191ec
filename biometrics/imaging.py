"""Untrusted image bytes to RGB arrays, with hard input caps.

Owns decoding: only JPEG and PNG are accepted (sniffed from the signature, not from
any client-supplied type), the pixel count is read from the header by our own parser
*before* Pillow allocates anything (Pillow's MAX_IMAGE_PIXELS only warns below 2x and
is a process-wide global), and the result is downscaled to the working size and made
C-contiguous (dlib silently finds no face in non-contiguous arrays).
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFile, ImageOps

from biometrics.errors import (
    ImageTooLargeError,
    InvalidInputError,
    MalformedImageError,
    UnsupportedImageFormatError,
)
from biometrics.policy import BiometricsPolicy

RGBImage = npt.NDArray[np.uint8]

_JPEG_SIG: Final = b"\xff\xd8\xff"
_PNG_SIG: Final = b"\x89PNG\r\n\x1a\n"
# SOFn markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) are not SOFs.
_SOF_MARKERS: Final = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)
_STANDALONE_MARKERS: Final = frozenset({0x01, *range(0xD0, 0xD8)})


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """Format and dimensions as announced by the file header."""

    format: str
    width: int
    height: int


def sniff_header(data: bytes) -> ImageHeader:
    """Identify JPEG/PNG by signature and read the announced size without decoding."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInputError("image must be bytes")
    data = bytes(data)
    if len(data) == 0:
        raise MalformedImageError("empty image")
    if data.startswith(_PNG_SIG):
        return _png_header(data)
    if data.startswith(_JPEG_SIG):
        return _jpeg_header(data)
    raise UnsupportedImageFormatError("only JPEG and PNG images are accepted")


def _png_header(data: bytes) -> ImageHeader:
    # IHDR must be the first chunk: length(4) 'IHDR' width(4) height(4).
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise MalformedImageError("PNG without a leading IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    if width == 0 or height == 0:
        raise MalformedImageError("PNG with a zero dimension")
    return ImageHeader("PNG", width, height)


def _jpeg_header(data: bytes) -> ImageHeader:
    pos = 2
    n = len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise MalformedImageError("JPEG marker expected")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE_MARKERS:
            continue
        if marker in (0xD9, 0xDA):  # EOI or start of scan before any frame header
            break
        if pos + 2 > n:
            break
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise MalformedImageError("JPEG segment with invalid length")
        if marker in _SOF_MARKERS:
            if pos + 7 > n:
                break
            height, width = struct.unpack(">HH", data[pos + 3 : pos + 7])
            if width == 0 or height == 0:
                raise MalformedImageError("JPEG with a zero dimension")
            return ImageHeader("JPEG", width, height)
        pos += length
    raise MalformedImageError("JPEG without a frame header")


def check_caps(data: bytes, policy: BiometricsPolicy) -> ImageHeader:
    """Apply the byte and pixel caps; return the header. Cheap: no pixel is decoded."""
    if isinstance(data, bytes | bytearray | memoryview) and len(data) > policy.max_image_bytes:
        raise ImageTooLargeError(f"image exceeds {policy.max_image_bytes} bytes")
    header = sniff_header(data)
    if header.width * header.height > policy.max_image_pixels:
        raise ImageTooLargeError(
            f"image announces {header.width}x{header.height} pixels, "
            f"over the cap of {policy.max_image_pixels}"
        )
    return header


def _load_strict(im: Image.Image) -> None:
    # A truncated upload must fail, whatever another library set this global to
    # (face_recognition sets it to True on import).
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        im.load()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def decode_image(data: bytes, policy: BiometricsPolicy) -> RGBImage:
    """Decode JPEG/PNG bytes to a C-contiguous RGB array at most ``working_max_side``.

    Raises :class:`UnsupportedImageFormatError`, :class:`ImageTooLargeError` or
    :class:`MalformedImageError`; never a builtin exception.
    """
    header = check_caps(data, policy)
    target = policy.working_max_side
    try:
        with warnings.catch_warnings():
            # Our own cap already ran; make Pillow's bomb heuristic fatal as a backstop.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(bytes(data)), formats=[header.format]) as im:
                if im.size != (header.width, header.height):
                    raise MalformedImageError("header and decoder disagree on the size")
                if header.format == "JPEG":
                    # DCT-domain downscale: decode at 1/2..1/8 when the image is large.
                    im.draft("RGB", (target, target))
                _load_strict(im)
                oriented = ImageOps.exif_transpose(im)
                rgb = oriented.convert("RGB")
        rgb.thumbnail((target, target), Image.Resampling.BILINEAR)
        return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    except MalformedImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLargeError("image exceeds the decoder's pixel limit") from e
    except Exception as e:  # untrusted bytes into a C decoder: wrap everything
        raise MalformedImageError(f"cannot decode {header.format} image") from e
