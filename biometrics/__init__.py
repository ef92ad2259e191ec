"""Face biometrics for cloudsign: images in, verdicts out.

A pure library (never imports the service). Public surface:

* :func:`enrol` / :func:`enrol_frames` -> :class:`FaceTemplate` (serialise with
  ``to_bytes``; the server encrypts it).
* :class:`Challenge` (``Challenge.new``, ``to_dict``/``from_dict``) and :func:`verify`
  (liveness + match on a frame burst) -> :class:`Verdict`; :func:`match` (no liveness);
  :func:`enrol_live` (liveness, then a template from the burst: a face captured live).
* :class:`FaceWorkerPool`: the same calls from asyncio, run in warmed worker processes.
* :class:`BiometricsPolicy` for thresholds; :class:`BiometricsError` (``code``) for
  every failure.
"""

from biometrics.challenge import BLINK_ONLY, DEFAULT_VOCABULARY, Action, Challenge
from biometrics.engine import enrol, enrol_frames, enrol_live, match, verify
from biometrics.errors import (
    BiometricsError,
    ChallengeError,
    ChallengeExpiredError,
    EnrolmentRefusedError,
    ImageTooLargeError,
    InvalidInputError,
    MalformedImageError,
    PolicyError,
    TemplateError,
    TemplateVersionError,
    UnsupportedImageFormatError,
    WorkerBusyError,
    WorkerError,
)
from biometrics.policy import DEFAULT_MATCH_THRESHOLD, DEFAULT_POLICY, BiometricsPolicy
from biometrics.pool import FaceWorkerPool
from biometrics.template import FaceTemplate
from biometrics.verdict import Reason, Verdict

__all__ = [
    "BLINK_ONLY",
    "DEFAULT_MATCH_THRESHOLD",
    "DEFAULT_POLICY",
    "DEFAULT_VOCABULARY",
    "Action",
    "BiometricsError",
    "BiometricsPolicy",
    "Challenge",
    "ChallengeError",
    "ChallengeExpiredError",
    "EnrolmentRefusedError",
    "FaceTemplate",
    "FaceWorkerPool",
    "ImageTooLargeError",
    "InvalidInputError",
    "MalformedImageError",
    "PolicyError",
    "Reason",
    "TemplateError",
    "TemplateVersionError",
    "UnsupportedImageFormatError",
    "Verdict",
    "WorkerBusyError",
    "WorkerError",
    "enrol",
    "enrol_frames",
    "enrol_live",
    "match",
    "verify",
]
