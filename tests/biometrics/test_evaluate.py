"""`python -m biometrics.evaluate --data DIR` on a directory of its own: an
image it cannot read is reported and skipped, the rest is scored, and the
rates come with their exact confidence bounds."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from biometrics.evaluate import main, upper_bound

FACES = Path(__file__).resolve().parents[1] / "data" / "faces"


def test_unreadable_images_are_reported_and_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, target in (("obama_1.jpg", "obama_a.jpg"), ("biden_1.jpg", "biden_a.jpg")):
        shutil.copy(FACES / name, tmp_path / target)
    webp = io.BytesIO()
    Image.open(FACES / "obama_2.jpg").save(webp, "WEBP")
    (tmp_path / "webp_named.jpg").write_bytes(webp.getvalue())  # a WebP file named .jpg
    (tmp_path / "truncated.jpg").write_bytes((FACES / "biden_2.jpg").read_bytes()[:200])
    manifest = {
        "images": [
            {"file": "obama_a.jpg", "identity": "obama", "use": "gallery"},
            {"file": "biden_a.jpg", "identity": "biden", "use": "gallery"},
            {"file": "webp_named.jpg", "identity": "obama", "use": "gallery"},
            {"file": "truncated.jpg", "identity": "biden", "use": "gallery"},
            {"file": "missing.jpg", "identity": "biden", "use": "gallery"},
        ]
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))

    assert main(["--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    skipped = [line for line in out.splitlines() if line.startswith("skipped, cannot be read")]
    assert [line.split(":")[1].strip() for line in skipped] == [
        "webp_named.jpg",
        "truncated.jpg",
        "missing.jpg",
    ], out
    assert "only JPEG and PNG" in skipped[0]
    assert "genuine pairs:" in out and "impostor pairs:" in out
    assert "95 % upper bound" in out
    assert "Traceback" not in out


def test_upper_bound_is_the_exact_clopper_pearson_bound() -> None:
    # No error in N trials: 1 - 0.05 ** (1 / N), about 3 / N.
    assert upper_bound(0, 1000) == pytest.approx(1 - 0.05 ** (1 / 1000), rel=1e-9)
    assert upper_bound(0, 1000) == pytest.approx(3 / 1000, rel=0.01)
    assert upper_bound(5, 5) == 1.0 and upper_bound(0, 0) == 1.0
    beta = pytest.importorskip("scipy.stats").beta
    for errors, trials in ((1, 50), (25, 35_742), (3, 100), (40, 400)):
        exact = float(beta.ppf(0.95, errors + 1, trials - errors))
        assert upper_bound(errors, trials) == pytest.approx(exact, rel=1e-6)
        assert upper_bound(errors, trials) > errors / trials
