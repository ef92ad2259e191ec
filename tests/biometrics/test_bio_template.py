"""Templates: versioned round trip, no leak through repr/str/format, corruption refused."""

from __future__ import annotations

import pickle
import re
import struct

import numpy as np
import pytest

from biometrics import FaceTemplate, TemplateError, TemplateVersionError


@pytest.fixture
def template() -> FaceTemplate:
    vec = np.random.default_rng(7).normal(0.0, 0.1, 128)
    return FaceTemplate(vec, 2)


def test_round_trip(template: FaceTemplate) -> None:
    data = template.to_bytes()
    again = FaceTemplate.from_bytes(data)
    assert again == template
    assert again.images == 2
    assert again.to_bytes() == data


def test_real_template_round_trip(obama_template: FaceTemplate) -> None:
    assert FaceTemplate.from_bytes(obama_template.to_bytes()) == obama_template


def test_repr_str_format_do_not_leak(template: FaceTemplate) -> None:
    for text in (repr(template), str(template), f"{template}", f"{template!r}", repr([template])):
        assert "redacted" in text
        # no floating-point number of the vector appears
        assert not re.search(r"\d\.\d{3}", text)
    assert not hasattr(template, "__dict__")


def test_pickle_round_trip(template: FaceTemplate) -> None:
    assert pickle.loads(pickle.dumps(template)) == template


def test_wrong_version_refused(template: FaceTemplate) -> None:
    data = bytearray(template.to_bytes())
    data[4] = 2
    with pytest.raises(TemplateVersionError) as exc:
        FaceTemplate.from_bytes(bytes(data))
    assert exc.value.code == "template_version"


@pytest.mark.parametrize("mutate", ["crc", "truncate", "magic", "dim", "empty", "nan"])
def test_corrupt_templates_refused(template: FaceTemplate, mutate: str) -> None:
    data = bytearray(template.to_bytes())
    if mutate == "crc":
        data[20] ^= 0xFF
    elif mutate == "truncate":
        data = data[:-9]
    elif mutate == "magic":
        data[:4] = b"XXXX"
    elif mutate == "dim":
        data[8:10] = struct.pack("<H", 64)
    elif mutate == "empty":
        data = bytearray()
    else:
        with pytest.raises(TemplateError):
            FaceTemplate(np.full(128, np.nan), 1)
        return
    with pytest.raises(TemplateError) as exc:
        FaceTemplate.from_bytes(bytes(data))
    assert exc.value.code in {"invalid_template", "template_version"}


def test_constructor_validates() -> None:
    with pytest.raises(TemplateError):
        FaceTemplate(np.zeros(127), 1)
    with pytest.raises(TemplateError):
        FaceTemplate(np.zeros(128), 0)
    with pytest.raises(TemplateError):
        FaceTemplate.from_bytes("nope")  # type: ignore[arg-type]
