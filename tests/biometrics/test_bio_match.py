"""Same person accepted, different people refused, over every pair of the test data
and its augmentations, at the default threshold (the protocol of biometrics.evaluate)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from biometrics import DEFAULT_MATCH_THRESHOLD, FaceTemplate, Reason, enrol, match
from biometrics.evaluate import AUGMENTATIONS, Report, augmented, evaluate, load_gallery

Load = Callable[[str], bytes]


@pytest.fixture(scope="module")
def report(faces_dir: Path) -> Report:
    return evaluate(load_gallery(faces_dir))


def test_every_probe_passes_the_gate(report: Report) -> None:
    assert report.refused_probes == ()


def test_all_pairs_at_default_threshold(report: Report) -> None:
    assert report.threshold == DEFAULT_MATCH_THRESHOLD
    genuine = [p for p in report.pairs if p.genuine]
    impostor = [p for p in report.pairs if not p.genuine]
    assert len(genuine) >= 100
    assert len(impostor) >= 300
    assert {p.augmentation for p in report.pairs} == set(AUGMENTATIONS)
    wrong = [p for p in report.pairs if p.accepted is not p.genuine]
    assert wrong == []
    assert report.fmr == 0.0
    assert report.fnmr == 0.0


def test_margin_around_threshold(report: Report) -> None:
    max_genuine = report.distances(True)[-1]
    min_impostor = report.distances(False)[0]
    # the default sits inside the measured gap, with room on both sides
    assert max_genuine + 0.05 < DEFAULT_MATCH_THRESHOLD < min_impostor - 0.05


def test_match_function_agrees_with_evaluation(
    report: Report, faces_dir: Path, face_bytes: Load
) -> None:
    samples = {s.name: s for s in load_gallery(faces_dir, extras=False)}
    template = enrol([face_bytes("obama_1.jpg")])
    for probe, aug in [
        ("obama_2.jpg", "darker"),
        ("biden_3.jpg", "flip"),
        ("obama_3.jpg", "noise_8"),
    ]:
        verdict = match(template, augmented(samples[probe], aug))
        expected = next(
            p
            for p in report.pairs
            if p.template == "obama_1.jpg" and p.probe == probe and p.augmentation == aug
        )
        assert verdict.accepted is expected.accepted
        assert verdict.score == pytest.approx(expected.distance, abs=1e-5)


def test_match_refuses_unusable_probe(obama_template: FaceTemplate, face_bytes: Load) -> None:
    verdict = match(obama_template, face_bytes("two_people.jpg"))
    assert verdict.reason is Reason.MULTIPLE_FACES
    assert verdict.score is None
