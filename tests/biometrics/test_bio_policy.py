"""Policy validation and the library's public surface / import boundaries."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import biometrics
from biometrics import BiometricsPolicy, PolicyError


def test_defaults_are_valid() -> None:
    policy = BiometricsPolicy()
    assert policy.match_threshold == biometrics.DEFAULT_MATCH_THRESHOLD
    assert policy.match_threshold < 0.6  # stricter than dlib's generic default


@pytest.mark.parametrize(
    "kwargs",
    [
        {"match_threshold": 0.0},
        {"match_threshold": 3.0},
        {"min_probe_face_px": 200},
        {"min_face_luma": 250.0},
        {"min_frames": 2},
        {"max_frames": 2},
        {"turn_yaw": 0.1, "neutral_yaw": 0.2},
        {"blink_ear_ratio": 1.5},
        {"working_max_side": 10},
        {"max_image_pixels": 10},
        {"min_visible_fraction": 0.0},
    ],
)
def test_invalid_policies_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(PolicyError) as exc:
        BiometricsPolicy(**kwargs)  # type: ignore[arg-type]
    assert exc.value.code == "invalid_policy"


def test_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        BiometricsPolicy().match_threshold = 0.9  # type: ignore[misc]


def test_library_never_imports_the_service() -> None:
    forbidden = {"cloudsign", "hsm_bridge", "audit_chain", "mobile_api"}
    for path in Path(biometrics.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not {n.split(".")[0] for n in names} & forbidden, path


def test_public_surface() -> None:
    for name in (
        "enrol",
        "enrol_frames",
        "verify",
        "match",
        "Challenge",
        "FaceTemplate",
        "FaceWorkerPool",
        "Verdict",
        "Reason",
        "BiometricsError",
        "BiometricsPolicy",
    ):
        assert name in biometrics.__all__
