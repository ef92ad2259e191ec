"""Fixtures for the biometrics tests: real dlib models, real test photos, no mocks."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# The editable install may predate biometrics/__init__.py (then `biometrics` resolves
# as a namespace package); putting the repo root first makes the real package win.
_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import biometrics  # noqa: E402
from biometrics import FaceTemplate  # noqa: E402

FACES = _ROOT / "tests" / "data" / "faces"


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return FACES


@pytest.fixture(scope="session")
def face_bytes() -> Callable[[str], bytes]:
    def load(name: str) -> bytes:
        return (FACES / name).read_bytes()

    return load


@pytest.fixture(scope="session")
def obama_template() -> FaceTemplate:
    return biometrics.enrol([(FACES / "obama_1.jpg").read_bytes()])
