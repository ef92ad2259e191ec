"""Enrolment and its quality gate, on the real photos with the real dlib models."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from bio_helpers import encode
from PIL import Image, ImageEnhance, ImageFilter

from biometrics import (
    BiometricsPolicy,
    EnrolmentRefusedError,
    FaceTemplate,
    InvalidInputError,
    MalformedImageError,
    enrol,
    enrol_frames,
)
from biometrics.evaluate import Sample, partial_face_sweep

Load = Callable[[str], bytes]


def altered(data: bytes, fn: Callable[[Image.Image], Image.Image]) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        out: bytes = encode(fn(im.convert("RGB")), "JPEG", quality=95)
    return out


def refused_code(images: list[bytes], policy: BiometricsPolicy | None = None) -> str:
    with pytest.raises(EnrolmentRefusedError) as exc:
        enrol(images, policy or BiometricsPolicy())
    return exc.value.code


def test_enrol_one_to_three_images(face_bytes: Load) -> None:
    one = enrol([face_bytes("obama_1.jpg")])
    three = enrol([face_bytes(f"obama_{i}.jpg") for i in (1, 2, 3)])
    assert isinstance(one, FaceTemplate)
    assert one.images == 1
    assert three.images == 3
    assert one != three


def test_enrol_accepts_png(face_bytes: Load) -> None:
    png = altered(face_bytes("biden_2.jpg"), lambda im: im)
    png = encode(Image.open(io.BytesIO(png)), "PNG")
    assert enrol([png]).images == 1


def test_two_people_refused(face_bytes: Load) -> None:
    assert refused_code([face_bytes("two_people.jpg")]) == "multiple_faces"


def test_partial_face_refused(face_bytes: Load) -> None:
    with pytest.raises(EnrolmentRefusedError) as exc:
        enrol([face_bytes("obama_1.jpg"), face_bytes("obama_partial_face.jpg")])
    assert exc.value.code == "face_truncated"
    assert exc.value.image_index == 1


def test_partial_face_line(face_bytes: Load) -> None:
    """Where the line is: jaw touching the border passes, 5% of the face cut fails."""
    sweep = {
        p.cut: p.decision
        for p in partial_face_sweep(Sample("obama", "obama_1.jpg", face_bytes("obama_1.jpg")))
    }
    assert sweep[-0.2] == sweep[-0.1] == sweep[0.0] == "accepted"
    assert sweep[0.05] == sweep[0.1] == sweep[0.2] == sweep[0.3] == "face_truncated"


def test_spurious_small_detection_ignored() -> None:
    # skimage's astronaut: the mission patch is detected as a face with a low score.
    astronaut = pytest.importorskip("skimage.data").astronaut()
    assert enrol([encode(Image.fromarray(astronaut))]).images == 1


def test_no_face(face_bytes: Load) -> None:
    blank = encode(Image.new("RGB", (400, 300), (90, 120, 160)))
    assert refused_code([blank]) == "no_face"


def test_too_dark(face_bytes: Load) -> None:
    dark = altered(face_bytes("obama_1.jpg"), lambda im: ImageEnhance.Brightness(im).enhance(0.2))
    assert refused_code([dark]) == "too_dark"


def test_too_bright(face_bytes: Load) -> None:
    bright = altered(face_bytes("obama_1.jpg"), lambda im: ImageEnhance.Brightness(im).enhance(2.5))
    assert refused_code([bright]) == "too_bright"


def test_too_blurred(face_bytes: Load) -> None:
    blurred = altered(face_bytes("obama_1.jpg"), lambda im: im.filter(ImageFilter.GaussianBlur(3)))
    assert refused_code([blurred]) == "too_blurred"


def test_face_too_small(face_bytes: Load) -> None:
    small = altered(
        face_bytes("obama_1.jpg"), lambda im: im.resize((im.width // 3, im.height // 3))
    )
    assert refused_code([small]) == "face_too_small"


def test_different_people_refused(face_bytes: Load) -> None:
    with pytest.raises(EnrolmentRefusedError) as exc:
        enrol([face_bytes("obama_1.jpg"), face_bytes("biden_2.jpg")])
    assert exc.value.code == "inconsistent_images"
    assert exc.value.image_index is None


def test_image_count_limits(face_bytes: Load) -> None:
    with pytest.raises(InvalidInputError):
        enrol([])
    with pytest.raises(InvalidInputError):
        enrol([face_bytes("obama_1.jpg")] * 4)
    with pytest.raises(InvalidInputError):
        enrol(face_bytes("obama_1.jpg"))  # type: ignore[arg-type]


def test_bad_image_bytes_raise_image_errors(face_bytes: Load) -> None:
    with pytest.raises(MalformedImageError):
        enrol([face_bytes("obama_1.jpg"), b"\xff\xd8\xff broken"])


def test_enrol_from_frames_picks_passing_frames(face_bytes: Load) -> None:
    blank = encode(Image.new("RGB", (320, 240)))
    frames = [blank, face_bytes("obama_1.jpg"), face_bytes("obama_2.jpg"), blank]
    template = enrol_frames(frames)
    assert template.images == 2
    with pytest.raises(EnrolmentRefusedError) as exc:
        enrol_frames([blank, blank])
    assert exc.value.code == "no_face"


def test_template_is_mean_of_single_templates(face_bytes: Load) -> None:
    a = enrol([face_bytes("biden_1.jpg")])
    b = enrol([face_bytes("biden_2.jpg")])
    both = enrol([face_bytes("biden_1.jpg"), face_bytes("biden_2.jpg")])
    va, vb, vboth = (np.frombuffer(t.to_bytes()[10:-4], "<f8") for t in (a, b, both))
    assert np.allclose(vboth, (va + vb) / 2)
