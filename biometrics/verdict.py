"""Outcome values of enrolment and verification.

Owns :class:`Reason`, the stable reason codes, and :class:`Verdict`, the only thing a
verification returns: an accepted flag, a reason, and the distance score. A verdict
never carries the template, an embedding or an image.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Stable reason codes (quality-gate refusals and verification verdicts)."""

    ACCEPTED = "accepted"
    # quality gate (enrolment and probe frames)
    NO_FACE = "no_face"
    MULTIPLE_FACES = "multiple_faces"
    FACE_TOO_SMALL = "face_too_small"
    TOO_DARK = "too_dark"
    TOO_BRIGHT = "too_bright"
    TOO_BLURRED = "too_blurred"
    FACE_TRUNCATED = "face_truncated"
    INCONSISTENT_IMAGES = "inconsistent_images"
    # verification
    CHALLENGE_EXPIRED = "challenge_expired"
    STATIC_REPLAY = "static_replay"
    ACTIONS_MISSING = "actions_missing"
    ACTIONS_WRONG_ORDER = "actions_wrong_order"
    NO_USABLE_FRAME = "no_usable_frame"  # no frontal, open-eyed frame to match on
    FACE_MISMATCH = "face_mismatch"


@dataclass(frozen=True, slots=True)
class Verdict:
    """Result of :func:`biometrics.verify` or :func:`biometrics.match`.

    ``score`` is the embedding distance to the template (lower is closer), or ``None``
    when the check stopped before matching (liveness failures are decided first so a
    non-live burst never learns how close it came).
    """

    accepted: bool
    reason: Reason
    score: float | None
    threshold: float
    frames: int = 1
    actions: tuple[str, ...] = ()

    @classmethod
    def refused(
        cls,
        reason: Reason,
        threshold: float,
        *,
        frames: int = 1,
        actions: tuple[str, ...] = (),
        score: float | None = None,
    ) -> Verdict:
        return cls(False, reason, score, threshold, frames, actions)
