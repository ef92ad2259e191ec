"""Benchmark of biometrics verification (prints figures; not a test).

For each image: our per-probe-frame verification time (``biometrics.match``: decode with
caps, downscale, detect, 68 landmarks, quality gate, embed, decide) beside the raw
``face_recognition.face_locations`` + ``face_encodings`` time on the same image in the
same run, the overhead ratio, then ``biometrics.verify`` per frame on a blink burst, and
the process's peak RSS.

    .venv/bin/python bench/bench_biometrics.py [--iterations 30]
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import face_recognition  # noqa: E402

from biometrics import BLINK_ONLY, Challenge, enrol, match, verify  # noqa: E402
from biometrics.synthetic import blink_burst  # noqa: E402

FACES = ROOT / "tests" / "data" / "faces"


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return p50 * 1000, p99 * 1000


def timed(fn: Callable[[], object], n: int) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def webcam_frame(data: bytes) -> bytes:
    """A 640x480 JPEG like a webcam frame, cut around the face of a portrait photo."""
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
    rgb.thumbnail((800, 800))
    w, h = rgb.size
    box = (max(0, (w - 640) // 2), 0, max(0, (w - 640) // 2) + min(640, w), min(480, h))
    buf = io.BytesIO()
    rgb.crop(box).resize((640, 480)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()
    n = args.iterations

    template = enrol([(FACES / "obama_1.jpg").read_bytes()])
    original = (FACES / "obama_2.jpg").read_bytes()
    images = {
        "obama_2.jpg test copy (417x800)": original,
        "biden_2.jpg (800x800)": (FACES / "biden_2.jpg").read_bytes(),
        "webcam-like 640x480 JPEG": webcam_frame((FACES / "obama_2.jpg").read_bytes()),
    }
    shared = Path("/work/shared/testdata/faces/obama2.jpg")
    if shared.exists():
        images["obama2.jpg full-size 626x1200"] = shared.read_bytes()

    print(f"iterations per measurement: {n}")
    print(f"{'image':48s} {'ours p50/p99 ms':>18s} {'raw fr p50/p99 ms':>19s} {'ratio p50':>9s}")
    for name, data in images.items():

        def ours_once(data: bytes = data) -> None:
            match(template, data)

        ours = timed(ours_once, n)

        def raw(data: bytes = data) -> None:
            img = face_recognition.load_image_file(io.BytesIO(data))
            locations = face_recognition.face_locations(img)
            face_recognition.face_encodings(img, locations)

        base = timed(raw, n)
        o50, o99 = percentiles(ours)
        b50, b99 = percentiles(base)
        print(f"{name:48s} {o50:8.0f} /{o99:6.0f}  {b50:9.0f} /{b99:6.0f}  {o50 / b50:9.2f}")

    frames = blink_burst(images["webcam-like 640x480 JPEG"], "oooooocoooooo", fmt="JPEG")
    t0 = datetime.now(UTC)
    challenge = Challenge.new(vocabulary=BLINK_ONLY, length=1, now=t0)
    verdict = verify(template, frames, challenge, now=t0 + timedelta(seconds=1))
    burst = timed(
        lambda: verify(template, frames, challenge, now=t0 + timedelta(seconds=1)), max(3, n // 5)
    )
    per_frame = [t / len(frames) for t in burst]
    f50, f99 = percentiles(per_frame)
    print(
        f"verify(): {len(frames)}-frame 640x480 blink burst -> {verdict.reason.value}; "
        f"per frame p50 {f50:.0f} ms, p99 {f99:.0f} ms; whole burst p50 "
        f"{statistics.median(burst) * 1000:.0f} ms"
    )
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {peak_kib / 1024:.0f} MiB")
    print(
        f"numpy {np.__version__}; face_recognition {metadata.version('face_recognition')}; "
        f"dlib {metadata.version('dlib-bin')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
