"""Tunable thresholds of the biometrics library.

Owns :class:`BiometricsPolicy`, the one frozen configuration value passed to every
entry point. Each default is a named module constant so the docs and the evaluation
can quote it; the figures behind them are in ``docs/biometrics.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from biometrics.errors import PolicyError

# Face match: Euclidean distance between 128-d dlib embeddings. dlib's 0.6 is tuned
# for "same person?" on LFW; for signing we want false matches first to go, so the
# default sits inside the gap measured by ``python -m biometrics.evaluate`` (max genuine
# 0.453, min impostor 0.658 over the test data and augmentations), nearer the genuine
# side because a false accept costs more than a retry.
DEFAULT_MATCH_THRESHOLD = 0.53

# Every other face of a burst (eyes shut, head turned: frames the match does not use)
# must stay this close to the reference, so a blink or a turn cannot be borrowed from
# another person. Looser than the match: a painted blink moves a genuine face by
# 0.43..0.54 over the test data, an impostor's stays at 0.79..0.87.
DEFAULT_CONTINUITY_THRESHOLD = 0.65

# Image input caps. Pixels are checked on the header *before* decoding.
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
# Images are downscaled to this longest side before detection (speed; webcam frames
# are already smaller).
WORKING_MAX_SIDE = 800
DETECT_UPSAMPLE = 1

# A second detection counts as another person only when the HOG detector is confident
# about it and it is not tiny next to the main face (filters e.g. the mission patch
# that the detector scores at 0.12 on skimage's astronaut).
SECOND_FACE_MIN_SCORE = 0.5
SECOND_FACE_MIN_SIZE_RATIO = 0.4

# Quality gate. Face sizes are box sides in the working (downscaled) image.
MIN_ENROL_FACE_PX = 80
MIN_PROBE_FACE_PX = 64
MIN_FACE_LUMA = 40.0
MAX_FACE_LUMA = 230.0
# Variance of the Laplacian of the contrast-normalised 128x128 grey face crop: sharp
# test faces score 76..1300, a Gaussian blur of sigma 2 px brings most under 30.
MIN_SHARPNESS = 40.0
# Share of the detector box inside the image (obama_partial_face.jpg: 0.77, with 6 of
# its 68 landmarks outside). Together with "every landmark inside the frame" this
# accepts a face whose jaw touches the border and refuses one cut 5% of its width.
MIN_VISIBLE_FRACTION = 0.85

MAX_ENROL_IMAGES = 3
MAX_FRAMES = 30
MIN_FRAMES = 3
MAX_MATCH_FRAMES = 3

# Liveness. Ratios are relative to the burst's own open-eye baseline because EAR
# varies a lot between people (0.18 for a smiling Biden, 0.39 for the astronaut).
BLINK_EAR_RATIO = 0.75
BLINK_OPENNESS_RATIO = 0.5
TURN_YAW = 0.3
NEUTRAL_YAW = 0.15
STATIC_PIXEL_DELTA = 20
STATIC_MIN_CHANGED_FRACTION = 0.01

CHALLENGE_LIFETIME_S = 60
MAX_CHALLENGE_LIFETIME_S = 300
CLOCK_SKEW_S = 5


@dataclass(frozen=True, slots=True)
class BiometricsPolicy:
    """Every threshold of enrolment and verification; validated on construction."""

    match_threshold: float = DEFAULT_MATCH_THRESHOLD
    continuity_threshold: float = DEFAULT_CONTINUITY_THRESHOLD
    max_image_bytes: int = MAX_IMAGE_BYTES
    max_image_pixels: int = MAX_IMAGE_PIXELS
    working_max_side: int = WORKING_MAX_SIDE
    detect_upsample: int = DETECT_UPSAMPLE
    second_face_min_score: float = SECOND_FACE_MIN_SCORE
    second_face_min_size_ratio: float = SECOND_FACE_MIN_SIZE_RATIO
    min_enrol_face_px: int = MIN_ENROL_FACE_PX
    min_probe_face_px: int = MIN_PROBE_FACE_PX
    min_face_luma: float = MIN_FACE_LUMA
    max_face_luma: float = MAX_FACE_LUMA
    min_sharpness: float = MIN_SHARPNESS
    min_visible_fraction: float = MIN_VISIBLE_FRACTION
    max_enrol_images: int = MAX_ENROL_IMAGES
    max_frames: int = MAX_FRAMES
    min_frames: int = MIN_FRAMES
    max_match_frames: int = MAX_MATCH_FRAMES
    blink_ear_ratio: float = BLINK_EAR_RATIO
    blink_openness_ratio: float = BLINK_OPENNESS_RATIO
    turn_yaw: float = TURN_YAW
    neutral_yaw: float = NEUTRAL_YAW
    mirrored_frames: bool = False
    static_pixel_delta: int = STATIC_PIXEL_DELTA
    static_min_changed_fraction: float = STATIC_MIN_CHANGED_FRACTION
    clock_skew_s: float = CLOCK_SKEW_S

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not 0.0 < self.match_threshold < 2.0:
            problems.append("match_threshold must be in (0, 2)")
        if not self.match_threshold <= self.continuity_threshold < 2.0:
            problems.append("need match_threshold <= continuity_threshold < 2")
        if self.max_image_bytes < 1024 or self.max_image_pixels < 64 * 64:
            problems.append("image caps are too small")
        if not 64 <= self.working_max_side <= 4096:
            problems.append("working_max_side must be in [64, 4096]")
        if not 0 <= self.detect_upsample <= 2:
            problems.append("detect_upsample must be 0, 1 or 2")
        if not 0.0 < self.second_face_min_size_ratio <= 1.0:
            problems.append("second_face_min_size_ratio must be in (0, 1]")
        if not 20 <= self.min_probe_face_px <= self.min_enrol_face_px:
            problems.append("need 20 <= min_probe_face_px <= min_enrol_face_px")
        if not 0.0 <= self.min_face_luma < self.max_face_luma <= 255.0:
            problems.append("need 0 <= min_face_luma < max_face_luma <= 255")
        if self.min_sharpness < 0.0:
            problems.append("min_sharpness must be >= 0")
        if not 0.0 < self.min_visible_fraction <= 1.0:
            problems.append("min_visible_fraction must be in (0, 1]")
        if not 1 <= self.max_enrol_images <= 10:
            problems.append("max_enrol_images must be in [1, 10]")
        if not 3 <= self.min_frames <= self.max_frames <= 120:
            problems.append("need 3 <= min_frames <= max_frames <= 120")
        if not 1 <= self.max_match_frames <= self.max_frames:
            problems.append("max_match_frames must be in [1, max_frames]")
        if not 0.0 < self.blink_ear_ratio < 1.0 or not 0.0 < self.blink_openness_ratio < 1.0:
            problems.append("blink ratios must be in (0, 1)")
        if not 0.0 < self.neutral_yaw < self.turn_yaw < 1.0:
            problems.append("need 0 < neutral_yaw < turn_yaw < 1")
        if not 0 < self.static_pixel_delta < 255 or not 0.0 < self.static_min_changed_fraction < 1:
            problems.append("static-replay thresholds out of range")
        if not 0.0 <= self.clock_skew_s <= 60.0:
            problems.append("clock_skew_s must be in [0, 60]")
        if problems:
            raise PolicyError("invalid BiometricsPolicy: " + "; ".join(problems))


DEFAULT_POLICY = BiometricsPolicy()
