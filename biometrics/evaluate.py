"""Offline evaluation: FMR/FNMR of the match threshold over the test faces.

Owns the augmentation set and the all-pairs protocol behind the default threshold:
every gallery image becomes a single-image template, every gallery image x
augmentation becomes a probe (through the real decode -> detect -> gate -> embed
path), and every template/probe pair except a template against its own unaltered
image is scored. Run ``python -m biometrics.evaluate [--data tests/data/faces]``.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from biometrics import detection, liveness
from biometrics.engine import Probe, probe_image
from biometrics.errors import BiometricsError
from biometrics.imaging import decode_image
from biometrics.policy import DEFAULT_POLICY, BiometricsPolicy
from biometrics.template import FaceTemplate
from biometrics.verdict import Reason

DEFAULT_DATA = Path("tests/data/faces")
_SEED = 20240607

Augment = Callable[[Image.Image, np.random.Generator], Image.Image]


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _noise(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    arr = np.asarray(image, dtype=np.float64) + rng.normal(0.0, 8.0, (image.height, image.width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _scale(image: Image.Image, factor: float) -> Image.Image:
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


AUGMENTATIONS: dict[str, Augment] = {
    "original": lambda im, _: im,
    "flip": lambda im, _: ImageOps.mirror(im),
    "brighter": lambda im, _: ImageEnhance.Brightness(im).enhance(1.3),
    "darker": lambda im, _: ImageEnhance.Brightness(im).enhance(0.6),
    "jpeg_q20": lambda im, _: _jpeg(im, 20),
    "scale_0.75": lambda im, _: _scale(im, 0.75),
    "noise_8": _noise,
}


@dataclass(frozen=True, slots=True)
class Sample:
    identity: str
    name: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class PairResult:
    template: str
    probe: str
    augmentation: str
    genuine: bool
    distance: float | None  # None: the probe failed the gate (failure to acquire)
    accepted: bool


@dataclass(frozen=True, slots=True)
class Report:
    threshold: float
    pairs: tuple[PairResult, ...]
    probe_seconds: tuple[float, ...]
    refused_probes: tuple[tuple[str, str, str], ...]
    #: Images that could not be read at all (name, why): skipped, not scored.
    unreadable: tuple[tuple[str, str], ...] = ()

    def _of(self, genuine: bool) -> list[PairResult]:
        return [p for p in self.pairs if p.genuine is genuine]

    @property
    def fmr(self) -> float:
        imp = self._of(False)
        return sum(p.accepted for p in imp) / len(imp) if imp else 0.0

    @property
    def fnmr(self) -> float:
        gen = self._of(True)
        return sum(not p.accepted for p in gen) / len(gen) if gen else 0.0

    def distances(self, genuine: bool) -> list[float]:
        return sorted(p.distance for p in self._of(genuine) if p.distance is not None)

    def errors(self, genuine: bool) -> tuple[int, int]:
        """(wrong decisions, trials): refused genuine pairs or accepted impostors."""
        pairs = self._of(genuine)
        return sum(p.accepted is not genuine for p in pairs), len(pairs)


def upper_bound(errors: int, trials: int, confidence: float = 0.95) -> float:
    """The exact one-sided (Clopper-Pearson) upper confidence bound of a rate
    seen as `errors` in `trials`: with none in N it is about 3/N at 95 %, the
    most the data can show."""
    if trials <= 0 or errors >= trials:
        return 1.0
    alpha = 1.0 - confidence

    def at_most(p: float) -> float:  # P(X <= errors) for X ~ Binomial(trials, p)
        log_p, log_q = math.log(p), math.log1p(-p)
        terms = [
            math.lgamma(trials + 1)
            - math.lgamma(i + 1)
            - math.lgamma(trials - i + 1)
            + i * log_p
            + (trials - i) * log_q
            for i in range(errors + 1)
        ]
        top = max(terms)
        return math.exp(top) * sum(math.exp(t - top) for t in terms)

    lo, hi = errors / trials, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if mid <= 0.0 or at_most(mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


class Progress:
    """A one-line progress bar on stderr (an evaluation of a few hundred
    probes takes minutes); silent when stderr is not a terminal unless asked."""

    def __init__(self, total: int, what: str, *, enabled: bool | None = None) -> None:
        self.total, self.what, self.done = total, what, 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.started = time.monotonic()

    def step(self) -> None:
        self.done += 1
        if not self.enabled:
            return
        width = 30
        filled = width * self.done // max(1, self.total)
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.total - self.done)
        sys.stderr.write(
            f"\r{self.what} [{'#' * filled}{'.' * (width - filled)}] "
            f"{self.done}/{self.total}  {elapsed:4.0f} s, ~{left:4.0f} s left"
        )
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def load_gallery(data_dir: Path = DEFAULT_DATA, *, extras: bool = True) -> list[Sample]:
    """Gallery images from the manifest, plus skimage's astronaut and matplotlib's
    Grace Hopper when those (dev) packages are installed. A file that cannot
    be read becomes an empty sample, which `evaluate` reports and skips."""
    manifest = json.loads((data_dir / "manifest.json").read_text())
    samples = []
    for m in manifest["images"]:
        if m["use"] != "gallery":
            continue
        try:
            data = (data_dir / m["file"]).read_bytes()
        except OSError:
            data = b""
        samples.append(Sample(m["identity"], m["file"], data))
    if extras:
        samples.extend(_extra_samples())
    return samples


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _extra_samples() -> list[Sample]:
    out: list[Sample] = []
    try:
        astronaut: Any = importlib.import_module("skimage.data").astronaut
        out.append(Sample("astronaut", "skimage:astronaut", _png(Image.fromarray(astronaut()))))
    except ImportError:
        pass
    try:
        cbook: Any = importlib.import_module("matplotlib.cbook")
        path = Path(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
        out.append(Sample("hopper", "matplotlib:grace_hopper.jpg", path.read_bytes()))
    except (ImportError, OSError):
        pass
    return out


def augmented(sample: Sample, name: str) -> bytes:
    """``sample`` with augmentation ``name`` applied, as JPEG q95 bytes (PNG if lossless
    matters, i.e. the original is returned untouched)."""
    if name == "original":
        return sample.data
    rng = np.random.default_rng([_SEED, len(sample.name)])
    with Image.open(io.BytesIO(sample.data)) as im:
        base = im.convert("RGB")
    out = AUGMENTATIONS[name](base, rng)
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _probe(data: bytes, policy: BiometricsPolicy) -> tuple[Probe, float]:
    start = time.perf_counter()
    probe = probe_image(decode_image(data, policy), policy, min_face_px=policy.min_probe_face_px)
    return probe, time.perf_counter() - start


def evaluate(
    samples: Sequence[Sample],
    policy: BiometricsPolicy = DEFAULT_POLICY,
    augmentations: Sequence[str] = tuple(AUGMENTATIONS),
    *,
    progress: bool | None = False,
) -> Report:
    templates: dict[str, tuple[Sample, FaceTemplate]] = {}
    probes: list[tuple[Sample, str, Probe]] = []
    seconds: list[float] = []
    refused: list[tuple[str, str, str]] = []
    unreadable: list[tuple[str, str]] = []
    bar = Progress(len(samples) * len(augmentations), "probes", enabled=progress)
    for sample in samples:
        for aug in augmentations:
            bar.step()
            try:
                probe, took = _probe(augmented(sample, aug), policy)
            except (BiometricsError, OSError, ValueError, Image.DecompressionBombError) as e:
                # One bad file (a WebP named .jpg, a truncated JPEG, a
                # missing file) is reported; the rest of the run goes on.
                unreadable.append((sample.name, str(e) or type(e).__name__))
                bar.done += len(augmentations) - 1 - augmentations.index(aug)
                break
            seconds.append(took)
            probes.append((sample, aug, probe))
            if probe.reason is not None:
                refused.append((sample.name, aug, probe.reason.value))
            if aug == "original" and probe.embedding is not None:
                # Same path as enrol([image]): a single-image template.
                templates[sample.name] = (sample, FaceTemplate(probe.embedding, 1))
    pairs: list[PairResult] = []
    for name, (t_sample, template) in templates.items():
        for p_sample, aug, probe in probes:
            if p_sample.name == name and aug == "original":
                continue
            genuine = p_sample.identity == t_sample.identity
            dist = template.distance(probe.embedding) if probe.embedding is not None else None
            accepted = dist is not None and dist <= policy.match_threshold
            pairs.append(PairResult(name, p_sample.name, aug, genuine, dist, accepted))
    return Report(
        policy.match_threshold, tuple(pairs), tuple(seconds), tuple(refused), tuple(unreadable)
    )


@dataclass(frozen=True, slots=True)
class SweepPoint:
    cut: float  # crop edge position: share of the face width past the leftmost landmark
    visible: float | None  # share of the detector box inside the image
    landmarks_outside: int | None
    decision: str


def partial_face_sweep(
    sample: Sample,
    policy: BiometricsPolicy = DEFAULT_POLICY,
    cuts: Sequence[float] = (-0.2, -0.1, -0.05, 0.0, 0.02, 0.05, 0.1, 0.2, 0.3),
) -> list[SweepPoint]:
    """Crop the image from the left so the edge sits ``cut`` x face width right of the
    leftmost landmark (negative: a margin is kept) and run the enrolment gate."""
    image = decode_image(sample.data, policy)
    obs = detection.observe(image, policy)
    if obs is None:
        raise BiometricsError("no face in the sweep image", code="no_face")
    left = float(obs.landmarks[:, 0].min())
    width = float(np.ptp(obs.landmarks[:, 0]))
    out: list[SweepPoint] = []
    for cut in cuts:
        x0 = max(0, round(left + cut * width))
        crop = np.ascontiguousarray(image[:, x0:])
        c_obs = detection.observe(crop, policy)
        issue = detection.quality_issue(crop, c_obs, policy, min_face_px=policy.min_enrol_face_px)
        visible = outside = None
        if c_obs is not None:
            visible = round(c_obs.box.visible_fraction(c_obs.image_shape), 3)
            outside = int(np.sum(c_obs.landmarks[:, 0] < 0))
        out.append(SweepPoint(cut, visible, outside, (issue or Reason.ACCEPTED).value))
    return out


def gate_measurements(data: bytes, policy: BiometricsPolicy = DEFAULT_POLICY) -> str:
    """The truncation measurements of one image, for the report."""
    image = decode_image(data, policy)
    obs = detection.observe(image, policy)
    if obs is None:
        return "no face"
    h, w = obs.image_shape
    pts = obs.landmarks
    outside = int(np.sum((pts[:, 0] < 0) | (pts[:, 0] >= w) | (pts[:, 1] < 0) | (pts[:, 1] >= h)))
    issue = detection.quality_issue(image, obs, policy, min_face_px=policy.min_enrol_face_px)
    return (
        f"box visible {obs.box.visible_fraction(obs.image_shape):.2f}, "
        f"landmarks outside {outside}/68, gate: {(issue or Reason.ACCEPTED).value}"
    )


def video_genuine_distances(
    frames: Sequence[bytes], policy: BiometricsPolicy = DEFAULT_POLICY, max_yaw: float = 0.25
) -> list[float]:
    """Pairwise distances between the near-frontal, gate-passing frames of one person's
    video (informational: how far real, poor captures spread)."""
    embeddings: list[np.ndarray] = []
    for data in frames:
        image = decode_image(data, policy)
        obs = detection.observe(image, policy)
        if obs is None or abs(liveness.yaw_ratio(obs.landmarks)) >= max_yaw:
            continue
        if (
            detection.quality_issue(image, obs, policy, min_face_px=policy.min_probe_face_px)
            is None
        ):
            embeddings.append(detection.embed(image, obs.box))
    return sorted(
        float(np.linalg.norm(a - b)) for i, a in enumerate(embeddings) for b in embeddings[i + 1 :]
    )


def _fmt_range(values: Sequence[float]) -> str:
    return f"{min(values):.3f}..{max(values):.3f} (n={len(values)})" if values else "n/a"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m biometrics.evaluate", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threshold", type=float, default=DEFAULT_POLICY.match_threshold)
    args = parser.parse_args(argv)
    policy = BiometricsPolicy(match_threshold=args.threshold)
    samples = load_gallery(args.data)
    report = evaluate(samples, policy, progress=None)
    for name, why in report.unreadable:
        print(f"skipped, cannot be read: {name}: {why}")
    gen, imp = report.distances(True), report.distances(False)
    (fn, n_gen), (fm, n_imp) = report.errors(True), report.errors(False)
    print(
        f"images: {len(samples)} ({len({s.identity for s in samples})} people) x "
        f"{len(AUGMENTATIONS)} augmentations: {', '.join(AUGMENTATIONS)}"
    )
    print(f"threshold: {report.threshold:.3f}")
    print(
        f"genuine pairs:  {n_gen:5d}  FNMR = {report.fnmr:.4f} ({fn}/{n_gen}, 95 % upper bound "
        f"{upper_bound(fn, n_gen):.4f})  distances {_fmt_range(gen)}"
    )
    print(
        f"impostor pairs: {n_imp:5d}  FMR  = {report.fmr:.4f} ({fm}/{n_imp}, 95 % upper bound "
        f"{upper_bound(fm, n_imp):.4f})  distances {_fmt_range(imp)}"
    )
    if gen and imp:
        print(
            f"margin: max genuine {gen[-1]:.3f} < min impostor {imp[0]:.3f} "
            f"(gap {imp[0] - gen[-1]:.3f})"
            if gen[-1] < imp[0]
            else f"OVERLAP: max genuine {gen[-1]:.3f} >= min impostor {imp[0]:.3f}"
        )
    for name, aug, reason in report.refused_probes:
        print(f"probe refused by the gate: {name} [{aug}]: {reason}")
    secs = sorted(report.probe_seconds) or [0.0]
    print(
        f"time per probe (decode+detect+landmarks+gate+embed): "
        f"mean {statistics.fmean(secs) * 1000:.0f} ms, p50 {secs[len(secs) // 2] * 1000:.0f} ms,"
        f" max {secs[-1] * 1000:.0f} ms"
    )
    sweep_src = next((s for s in samples if s.name == "obama_1.jpg"), None)
    if sweep_src is not None:
        print("partial-face sweep on obama_1.jpg (crop edge vs leftmost landmark, in face widths):")
        for p in partial_face_sweep(sweep_src, policy):
            print(
                f"  cut {p.cut:+.2f}: box visible {p.visible}, landmarks outside "
                f"{p.landmarks_outside} -> {p.decision}"
            )
    video = sorted((args.data / "hamilton_turns").glob("frame_*.jpg"))
    if video:
        dists = video_genuine_distances([p.read_bytes() for p in video], policy)
        over = sum(d > policy.match_threshold for d in dists)
        print(
            f"informational, real stage video ({len(video)} frames, ~90 px faces, mic over "
            f"the mouth): frontal same-person frame pairs {_fmt_range(dists)}, "
            f"{over}/{len(dists)} over the threshold"
        )
    partial = args.data / "obama_partial_face.jpg"
    if partial.exists():
        print(f"obama_partial_face.jpg: {gate_measurements(partial.read_bytes(), policy)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
