"""Synchronous entry points: enrol, match and verify (CPU-bound; dlib runs here).

Owns the pipelines that tie decoding, detection, the quality gate, liveness and the
match decision together. Every function is safe to call in a worker process; the
asyncio facade in :mod:`biometrics.pool` only forwards to these.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from biometrics import detection, liveness
from biometrics.challenge import Challenge
from biometrics.detection import FaceObservation, Vector
from biometrics.errors import BiometricsError, EnrolmentRefusedError, InvalidInputError
from biometrics.imaging import RGBImage, decode_image
from biometrics.policy import DEFAULT_POLICY, BiometricsPolicy
from biometrics.template import FaceTemplate
from biometrics.verdict import Reason, Verdict

# Never log images, embeddings or templates; counts and reason codes only.
log = logging.getLogger(__name__)

_STATIC_CROP = 64


@dataclass(frozen=True, slots=True)
class Probe:
    """A decoded image's usable face, or why it is not usable (no pixels kept)."""

    reason: Reason | None
    embedding: Vector | None = field(default=None, repr=False)


def _as_bytes_list(items: Sequence[bytes], what: str, lo: int, hi: int) -> list[bytes]:
    if isinstance(items, bytes | bytearray | str) or not isinstance(items, Sequence):
        raise InvalidInputError(f"{what} must be a sequence of image bytes")
    if not lo <= len(items) <= hi:
        raise InvalidInputError(f"expected {lo}..{hi} {what}, got {len(items)}")
    out: list[bytes] = []
    for item in items:
        if not isinstance(item, bytes | bytearray | memoryview):
            raise InvalidInputError(f"each of the {what} must be bytes")
        out.append(bytes(item))
    return out


def _check_policy(policy: BiometricsPolicy) -> None:
    if not isinstance(policy, BiometricsPolicy):
        raise InvalidInputError("policy must be a BiometricsPolicy")


def _guard(fn_name: str, exc: Exception) -> BiometricsError:
    # Last line of defence: builtin exceptions never escape a public entry point.
    log.warning("%s failed with %s", fn_name, type(exc).__name__)
    return BiometricsError(f"{fn_name} failed internally", code="internal_error")


def probe_image(image: RGBImage, policy: BiometricsPolicy, *, min_face_px: int) -> Probe:
    """Quality-gate one decoded image and embed its face if it passes."""
    obs = detection.observe(image, policy)
    issue = detection.quality_issue(image, obs, policy, min_face_px=min_face_px)
    if issue is not None or obs is None:
        return Probe(issue or Reason.NO_FACE)
    return Probe(None, detection.embed(image, obs.box))


def decide(
    template: FaceTemplate,
    embeddings: Sequence[Vector],
    policy: BiometricsPolicy,
    *,
    frames: int = 1,
    actions: tuple[str, ...] = (),
) -> Verdict:
    """Match decision: the *worst* (largest) distance over the probe embeddings."""
    score = max(template.distance(e) for e in embeddings)
    accepted = score <= policy.match_threshold
    return Verdict(
        accepted,
        Reason.ACCEPTED if accepted else Reason.FACE_MISMATCH,
        round(score, 6),
        policy.match_threshold,
        frames,
        actions,
    )


def _template_from(embeddings: Sequence[Vector], policy: BiometricsPolicy) -> FaceTemplate:
    for a, b in itertools.combinations(range(len(embeddings)), 2):
        if float(np.linalg.norm(embeddings[a] - embeddings[b])) > policy.match_threshold:
            raise EnrolmentRefusedError(
                f"enrolment images {a} and {b} do not show the same person",
                code=Reason.INCONSISTENT_IMAGES.value,
                image_index=None,
            )
    return FaceTemplate(np.mean(np.stack(embeddings), axis=0), len(embeddings))


def enrol(images: Sequence[bytes], policy: BiometricsPolicy = DEFAULT_POLICY) -> FaceTemplate:
    """Build a template from 1..``max_enrol_images`` JPEG/PNG images of one person.

    The template is the mean of the images' 128-d embeddings. Raises
    :class:`EnrolmentRefusedError` (``code`` = a :class:`Reason` value, ``image_index``)
    when an image fails the quality gate or the images show different people, and the
    image errors of :func:`biometrics.imaging.decode_image`.
    """
    try:
        _check_policy(policy)
        blobs = _as_bytes_list(images, "enrolment images", 1, policy.max_enrol_images)
        decoded = [decode_image(b, policy) for b in blobs]  # all caps before any dlib work
        embeddings: list[Vector] = []
        for index, image in enumerate(decoded):
            probe = probe_image(image, policy, min_face_px=policy.min_enrol_face_px)
            if probe.reason is not None or probe.embedding is None:
                reason = probe.reason or Reason.NO_FACE
                raise EnrolmentRefusedError(
                    f"enrolment image {index} refused: {reason.value}",
                    code=reason.value,
                    image_index=index,
                )
            embeddings.append(probe.embedding)
        template = _template_from(embeddings, policy)
        log.info("enrolled template from %d image(s)", len(embeddings))
        return template
    except BiometricsError:
        raise
    except Exception as e:  # builtin exceptions never escape; see _guard
        raise _guard("enrol", e) from e


def enrol_frames(
    frames: Sequence[bytes], policy: BiometricsPolicy = DEFAULT_POLICY
) -> FaceTemplate:
    """Build a template from a short frame sequence: the sharpest passing frames.

    Up to ``max_enrol_images`` frames that pass the quality gate are used; if none
    pass, the most frequent refusal reason is raised.
    """
    try:
        _check_policy(policy)
        blobs = _as_bytes_list(frames, "frames", 1, policy.max_frames)
        decoded = [decode_image(b, policy) for b in blobs]
        passing: list[tuple[float, Vector]] = []
        reasons: Counter[Reason] = Counter()
        for image in decoded:
            obs = detection.observe(image, policy)
            issue = detection.quality_issue(
                image, obs, policy, min_face_px=policy.min_enrol_face_px
            )
            if issue is not None or obs is None:
                reasons[issue or Reason.NO_FACE] += 1
                continue
            passing.append((detection.sharpness(image, obs.box), detection.embed(image, obs.box)))
        if not passing:
            reason = reasons.most_common(1)[0][0]
            raise EnrolmentRefusedError(
                f"no usable frame: {reason.value}", code=reason.value, image_index=None
            )
        passing.sort(key=lambda p: p[0], reverse=True)
        return _template_from([e for _, e in passing[: policy.max_enrol_images]], policy)
    except BiometricsError:
        raise
    except Exception as e:  # builtin exceptions never escape; see _guard
        raise _guard("enrol_frames", e) from e


def match(
    template: FaceTemplate, image: bytes, policy: BiometricsPolicy = DEFAULT_POLICY
) -> Verdict:
    """Face match of one still image against a template, *without* liveness.

    For evaluation and for flows where liveness is established otherwise; signing uses
    :func:`verify`.
    """
    try:
        _check_policy(policy)
        if not isinstance(template, FaceTemplate):
            raise InvalidInputError("template must be a FaceTemplate")
        (blob,) = _as_bytes_list([image], "images", 1, 1)
        probe = probe_image(
            decode_image(blob, policy), policy, min_face_px=policy.min_probe_face_px
        )
        if probe.reason is not None or probe.embedding is None:
            return Verdict.refused(probe.reason or Reason.NO_FACE, policy.match_threshold)
        return decide(template, [probe.embedding], policy)
    except BiometricsError:
        raise
    except Exception as e:  # builtin exceptions never escape; see _guard
        raise _guard("match", e) from e


@dataclass(frozen=True, slots=True)
class _Frame:
    image: RGBImage
    obs: FaceObservation


def _live_burst(
    frames: Sequence[bytes],
    challenge: Challenge,
    now: datetime | None,
    policy: BiometricsPolicy,
) -> Verdict | tuple[list[_Frame], list[liveness.FrameSignals], tuple[str, ...]]:
    """The liveness half of a burst: a refusal, or the frames that passed it
    with their signals and the actions seen."""
    if not isinstance(challenge, Challenge):
        raise InvalidInputError("challenge must be a Challenge")
    blobs = _as_bytes_list(frames, "frames", policy.min_frames, policy.max_frames)
    moment = now if now is not None else datetime.now(UTC)
    threshold = policy.match_threshold
    if not challenge.is_live(moment, skew_s=policy.clock_skew_s):
        # Decided before any decoding: an expired attempt costs no CPU.
        return Verdict.refused(Reason.CHALLENGE_EXPIRED, threshold, frames=len(blobs))
    images = [decode_image(b, policy) for b in blobs]
    n = len(images)

    burst: list[_Frame] = []
    for image in images:
        obs = detection.observe(image, policy)
        if obs is None:
            return Verdict.refused(Reason.NO_FACE, threshold, frames=n)
        if obs.others:
            return Verdict.refused(Reason.MULTIPLE_FACES, threshold, frames=n)
        burst.append(_Frame(image, obs))

    crops = [detection.face_crop(f.image, f.obs.box, _STATIC_CROP) for f in burst]
    if liveness.is_static(crops, policy):
        return Verdict.refused(Reason.STATIC_REPLAY, threshold, frames=n)

    signals = _signals(burst, policy)
    actions = liveness.detect_actions(signals, policy)
    names = tuple(a.value for a in actions)
    problem = liveness.compare_actions(actions, challenge.actions)
    if problem is not None:
        return Verdict.refused(problem, threshold, frames=n, actions=names)
    return burst, signals, names


def verify(
    template: FaceTemplate,
    frames: Sequence[bytes],
    challenge: Challenge,
    *,
    now: datetime | None = None,
    policy: BiometricsPolicy = DEFAULT_POLICY,
) -> Verdict:
    """Liveness (the challenge's actions, in order) then face match, on a frame burst.

    Decision order: challenge live at ``now`` -> every frame has exactly one face ->
    not a static replay -> actions follow the challenge -> match (the worst of the
    open-eyed frames) -> every other frame is the same face (continuity, so the
    actions cannot be another person's). Liveness refusals carry no score. Raises
    only for unusable input (image errors, wrong frame count).
    """
    try:
        _check_policy(policy)
        if not isinstance(template, FaceTemplate):
            raise InvalidInputError("template must be a FaceTemplate")
        live = _live_burst(frames, challenge, now, policy)
        if isinstance(live, Verdict):
            return live
        burst, signals, names = live
        n = len(burst)
        chosen, issue = _match_frames(burst, signals, policy)
        if not chosen:
            return Verdict.refused(
                issue or Reason.NO_USABLE_FRAME, policy.match_threshold, frames=n, actions=names
            )
        embeddings = [detection.embed(f.image, f.obs.box) for f in chosen]
        verdict = decide(template, embeddings, policy, frames=n, actions=names)
        if verdict.accepted and not _one_face_throughout(burst, chosen, template, policy):
            verdict = Verdict(
                False, Reason.FACE_MISMATCH, verdict.score, policy.match_threshold, n, names
            )
        log.info("verify: %s (%d frames)", verdict.reason.value, n)
        return verdict
    except BiometricsError:
        raise
    except Exception as e:  # builtin exceptions never escape; see _guard
        raise _guard("verify", e) from e


def enrol_live(
    frames: Sequence[bytes],
    challenge: Challenge,
    *,
    now: datetime | None = None,
    policy: BiometricsPolicy = DEFAULT_POLICY,
) -> tuple[Verdict, FaceTemplate | None]:
    """Liveness, then a template from the burst's best frames: the face a
    registration officer captures at the desk. The template is None unless
    the verdict is accepted (it then carries no score: nothing was matched)."""
    try:
        _check_policy(policy)
        live = _live_burst(frames, challenge, now, policy)
        if isinstance(live, Verdict):
            return live, None
        burst, signals, names = live
        n = len(burst)
        chosen, issue = _match_frames(burst, signals, policy)
        if not chosen:
            refused = Verdict.refused(
                issue or Reason.NO_USABLE_FRAME, policy.match_threshold, frames=n, actions=names
            )
            return refused, None
        best = sorted(chosen, key=lambda f: detection.sharpness(f.image, f.obs.box), reverse=True)
        embeddings = [detection.embed(f.image, f.obs.box) for f in best[: policy.max_enrol_images]]
        template = _template_from(embeddings, policy)
        if not _one_face_throughout(burst, best[: policy.max_enrol_images], template, policy):
            refused = Verdict.refused(
                Reason.INCONSISTENT_IMAGES, policy.match_threshold, frames=n, actions=names
            )
            return refused, None
        accepted = Verdict(True, Reason.ACCEPTED, None, policy.match_threshold, n, names)
        log.info("enrol_live: accepted (%d frames)", n)
        return accepted, template
    except BiometricsError:
        raise
    except Exception as e:  # builtin exceptions never escape; see _guard
        raise _guard("enrol_live", e) from e


def _one_face_throughout(
    burst: Sequence[_Frame],
    matched: Sequence[_Frame],
    reference: FaceTemplate,
    policy: BiometricsPolicy,
) -> bool:
    """Every frame the match did not use (eyes shut, head turned, the rest)
    shows the same person as the reference, within the continuity threshold:
    the actions that prove liveness must be this face's, not a spliced-in
    stranger's."""
    used = {id(f) for f in matched}
    return all(
        reference.distance(detection.embed(f.image, f.obs.box)) <= policy.continuity_threshold
        for f in burst
        if id(f) not in used
    )


def _signals(burst: Sequence[_Frame], policy: BiometricsPolicy) -> list[liveness.FrameSignals]:
    base = [liveness.signals_from_landmarks(f.obs.landmarks) for f in burst]
    ref = liveness.reference_shape([f.obs.landmarks for f in burst])
    return [
        liveness.FrameSignals(
            s.ear, s.yaw, liveness.eye_openness(detection.grey(f.image), f.obs.landmarks, ref)
        )
        for f, s in zip(burst, base, strict=True)
    ]


def _match_frames(
    burst: Sequence[_Frame], signals: Sequence[liveness.FrameSignals], policy: BiometricsPolicy
) -> tuple[list[_Frame], Reason | None]:
    """Near-frontal, open-eyed frames passing the probe gate, spread over the burst.

    Spreading them (and taking the worst distance) means a burst spliced from another
    person's clip fails the match rather than passing on its best frame.
    """
    closed = liveness.closed_frames(signals, policy)
    yaw = liveness.relative_yaw(signals, policy)
    candidates: list[_Frame] = []
    first_issue: Reason | None = None
    for f, y, shut in zip(burst, yaw, closed, strict=True):
        if abs(y) >= policy.neutral_yaw or shut:
            continue
        issue = detection.quality_issue(
            f.image, f.obs, policy, min_face_px=policy.min_probe_face_px
        )
        if issue is None:
            candidates.append(f)
        elif first_issue is None:
            first_issue = issue
    if len(candidates) <= policy.max_match_frames:
        return candidates, first_issue
    picks = np.linspace(0, len(candidates) - 1, policy.max_match_frames).round().astype(int)
    return [candidates[i] for i in dict.fromkeys(picks.tolist())], first_issue
