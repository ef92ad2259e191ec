"""Image input caps: format sniffing, header-based pixel caps, malformed data."""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from bio_helpers import encode
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from biometrics import (
    BiometricsError,
    BiometricsPolicy,
    ImageTooLargeError,
    InvalidInputError,
    MalformedImageError,
    UnsupportedImageFormatError,
)
from biometrics.imaging import decode_image, sniff_header

POLICY = BiometricsPolicy()


def png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr
    chunk += struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 64


def jpeg_claiming(width: int, height: int) -> bytes:
    # SOI, an APP0 segment, then SOF0 announcing the size, then nothing useful.
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def test_png_bomb_header_refused_fast() -> None:
    data = png_header_only(50_000, 50_000)
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError) as exc:
        decode_image(data, POLICY)
    assert exc.value.code == "image_too_large"
    assert time.perf_counter() - start < 0.1


def test_jpeg_bomb_header_refused_fast() -> None:
    data = jpeg_claiming(60_000, 60_000)
    assert sniff_header(data).width == 60_000
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError):
        decode_image(data, POLICY)
    assert time.perf_counter() - start < 0.1


def test_real_png_over_pixel_cap_refused() -> None:
    data = encode(Image.new("RGB", (300, 300)))
    with pytest.raises(ImageTooLargeError):
        decode_image(data, BiometricsPolicy(max_image_pixels=200 * 200))


def test_too_many_bytes_refused() -> None:
    data = b"\xff\xd8\xff" + b"\x00" * 5000
    with pytest.raises(ImageTooLargeError):
        decode_image(data, BiometricsPolicy(max_image_bytes=4096))


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "WEBP", "ICO", "PPM"])
def test_other_image_formats_unsupported(fmt: str) -> None:
    data = encode(Image.new("RGB", (64, 64), (120, 100, 90)), fmt)
    with pytest.raises(UnsupportedImageFormatError) as exc:
        decode_image(data, POLICY)
    assert exc.value.code == "unsupported_format"


@pytest.mark.parametrize(
    "data", [b"hello world", b"%PDF-1.7\n", b"<svg xmlns='x'/>", b"\x00" * 100]
)
def test_non_images_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedImageFormatError):
        decode_image(data, POLICY)


def test_malformed_jpeg_and_png(face_bytes: Callable[[str], bytes]) -> None:
    real = face_bytes("obama_1.jpg")
    cases = [
        b"",  # empty
        b"\xff\xd8\xff" + b"garbage" * 20,  # JPEG signature, no valid segments
        real[: len(real) // 3],  # truncated JPEG
        jpeg_claiming(640, 480),  # valid header, no scan data
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,  # PNG without IHDR
        png_header_only(64, 64),  # IHDR but no image data
        png_header_only(0, 10),
    ]
    for data in cases:
        with pytest.raises(MalformedImageError) as exc:
            decode_image(data, POLICY)
        assert exc.value.code == "malformed_image"


def test_not_bytes_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError):
        decode_image("not bytes", POLICY)  # type: ignore[arg-type]


def test_large_image_downscaled_and_contiguous() -> None:
    yy, xx = np.mgrid[0:1600, 0:2400]
    rgb = np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
    for fmt in ("PNG", "JPEG"):
        out = decode_image(encode(Image.fromarray(rgb), fmt), POLICY)
        assert max(out.shape[:2]) <= POLICY.working_max_side
        assert out.dtype == np.uint8
        assert out.shape[2] == 3
        assert out.flags["C_CONTIGUOUS"]


def test_png_modes_converted_to_rgb() -> None:
    for mode in ("L", "LA", "P", "RGBA", "I;16"):
        out = decode_image(encode(Image.new(mode, (32, 24))), POLICY)
        assert out.shape == (24, 32, 3)


def test_exif_orientation_applied() -> None:
    im = Image.new("RGB", (40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes())
    assert decode_image(buf.getvalue(), POLICY).shape[:2] == (40, 20)


@settings(max_examples=150, deadline=None)
@given(
    prefix=st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b""]),
    body=st.binary(max_size=300),
)
def test_fuzz_only_biometrics_errors(prefix: bytes, body: bytes) -> None:
    code = None
    try:
        decode_image(prefix + body, POLICY)
    except BiometricsError as e:
        code = e.code
    assert code in {None, "unsupported_format", "malformed_image", "image_too_large"}


def test_truncated_jpeg_refused_after_models_loaded(face_bytes: Callable[[str], bytes]) -> None:
    from PIL import ImageFile

    from biometrics.detection import models

    models()  # face_recognition's import flips Pillow's LOAD_TRUNCATED_IMAGES
    real = face_bytes("obama_1.jpg")
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # as set by some other library
    try:
        with pytest.raises(MalformedImageError):
            decode_image(real[: len(real) // 2], POLICY)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
