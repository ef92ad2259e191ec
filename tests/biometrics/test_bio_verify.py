"""Verification end to end: challenge, liveness refusals, synthetic blink, match."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from bio_helpers import encode
from PIL import Image

from biometrics import (
    BLINK_ONLY,
    Action,
    Challenge,
    FaceTemplate,
    InvalidInputError,
    Reason,
    UnsupportedImageFormatError,
    enrol_live,
    verify,
)
from biometrics.policy import DEFAULT_POLICY
from biometrics.synthetic import blink_burst

Load = Callable[[str], bytes]
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(seconds=5)


def blink_challenge() -> Challenge:
    return Challenge.new(vocabulary=BLINK_ONLY, length=1, now=T0)


def shifted_frames(data: bytes, n: int = 5, step: int = 8) -> list[bytes]:
    """The same photo panned by a few pixels per frame: not static, no action."""
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
    w, h = rgb.size
    return [
        encode(rgb.crop((i * step, 0, w - (n - i) * step, h)), "JPEG", quality=92) for i in range(n)
    ]


@pytest.fixture(scope="module")
def obama_blink(face_bytes: Load) -> list[bytes]:
    return blink_burst(face_bytes("obama_2.jpg"), "oocoo", fmt="JPEG")


def test_synthetic_blink_burst_accepted(
    obama_template: FaceTemplate, obama_blink: list[bytes]
) -> None:
    verdict = verify(obama_template, obama_blink, blink_challenge(), now=NOW)
    assert verdict.accepted, verdict
    assert verdict.reason is Reason.ACCEPTED
    assert verdict.actions == ("blink",)
    assert verdict.score is not None
    assert verdict.score <= verdict.threshold
    assert {f.name for f in dataclasses.fields(verdict)} == {
        "accepted",
        "reason",
        "score",
        "threshold",
        "frames",
        "actions",
    }


def test_two_blinks_for_a_two_blink_challenge(
    obama_template: FaceTemplate, face_bytes: Load
) -> None:
    frames = blink_burst(face_bytes("obama_1.jpg"), "ooocoocoo")
    ch = Challenge.new(vocabulary=BLINK_ONLY, length=2, now=T0)
    assert verify(obama_template, frames, ch, now=NOW).accepted
    one = blink_burst(face_bytes("obama_1.jpg"), "ooocooo")
    assert verify(obama_template, one, ch, now=NOW).reason is Reason.ACTIONS_MISSING


def test_expired_challenge(obama_template: FaceTemplate, obama_blink: list[bytes]) -> None:
    late = T0 + timedelta(seconds=61)
    verdict = verify(obama_template, obama_blink, blink_challenge(), now=late)
    assert verdict.reason is Reason.CHALLENGE_EXPIRED
    assert not verdict.accepted


def test_static_image_repeated(obama_template: FaceTemplate, face_bytes: Load) -> None:
    photo = face_bytes("obama_2.jpg")
    verdict = verify(obama_template, [photo] * 5, blink_challenge(), now=NOW)
    assert verdict.reason is Reason.STATIC_REPLAY
    assert verdict.score is None
    # near-identical: the same photo re-encoded at different qualities
    with Image.open(io.BytesIO(photo)) as im:
        rgb = im.convert("RGB")
    recoded = [encode(rgb, "JPEG", quality=q) for q in (95, 90, 85, 80, 75)]
    assert (
        verify(obama_template, recoded, blink_challenge(), now=NOW).reason is Reason.STATIC_REPLAY
    )


def test_burst_ignoring_the_challenge(
    obama_template: FaceTemplate, face_bytes: Load, obama_blink: list[bytes]
) -> None:
    panned = shifted_frames(face_bytes("obama_2.jpg"))
    verdict = verify(obama_template, panned, blink_challenge(), now=NOW)
    assert verdict.reason is Reason.ACTIONS_MISSING
    assert verdict.actions == ()
    assert verdict.score is None
    # a blink where a head turn was asked
    turn = Challenge(
        nonce="n" * 32,
        issued_at=T0,
        expires_at=T0 + timedelta(seconds=60),
        actions=(Action.TURN_LEFT,),
    )
    assert verify(obama_template, obama_blink, turn, now=NOW).reason is Reason.ACTIONS_MISSING


def test_two_faces_in_a_frame(
    obama_template: FaceTemplate, face_bytes: Load, obama_blink: list[bytes]
) -> None:
    frames = [*obama_blink[:2], face_bytes("two_people.jpg"), *obama_blink[2:]]
    verdict = verify(obama_template, frames, blink_challenge(), now=NOW)
    assert verdict.reason is Reason.MULTIPLE_FACES


def test_no_face(obama_template: FaceTemplate, obama_blink: list[bytes]) -> None:
    blank = encode(Image.new("RGB", (640, 480), (40, 60, 80)))
    verdict = verify(
        obama_template, [*obama_blink[:3], blank, obama_blink[4]], blink_challenge(), now=NOW
    )
    assert verdict.reason is Reason.NO_FACE
    assert verify(obama_template, [blank] * 4, blink_challenge(), now=NOW).reason is Reason.NO_FACE


def test_live_impostor_refused_with_score(obama_template: FaceTemplate, face_bytes: Load) -> None:
    frames = blink_burst(face_bytes("biden_2.jpg"), "oocoo")
    verdict = verify(obama_template, frames, blink_challenge(), now=NOW)
    assert verdict.reason is Reason.FACE_MISMATCH
    assert verdict.score is not None
    assert verdict.score > verdict.threshold
    assert not verdict.accepted


def test_frame_count_and_input_errors(
    obama_template: FaceTemplate, obama_blink: list[bytes]
) -> None:
    with pytest.raises(InvalidInputError):
        verify(obama_template, obama_blink[:2], blink_challenge(), now=NOW)
    with pytest.raises(InvalidInputError):
        verify(obama_template, obama_blink * 7, blink_challenge(), now=NOW)
    gif = encode(Image.new("RGB", (32, 32)), "GIF")
    with pytest.raises(UnsupportedImageFormatError):
        verify(obama_template, [*obama_blink, gif], blink_challenge(), now=NOW)
    with pytest.raises(InvalidInputError):
        verify(obama_template.to_bytes(), obama_blink, blink_challenge(), now=NOW)  # type: ignore[arg-type]


def test_enrol_live_takes_a_live_burst_and_refuses_a_still(
    face_bytes: Callable[[str], bytes],
) -> None:
    """The desk's capture: liveness first, then a template that matches the person."""
    blink = Challenge.new(vocabulary=("blink",), length=1)
    verdict, template = enrol_live(blink_burst(face_bytes("obama_1.jpg"), "oocoo"), blink)
    assert verdict.accepted and verdict.score is None and template is not None
    again = Challenge.new(vocabulary=("blink",), length=1)
    assert verify(template, blink_burst(face_bytes("obama_2.jpg"), "oocoo"), again).accepted
    other = Challenge.new(vocabulary=("blink",), length=1)
    assert not verify(template, blink_burst(face_bytes("biden_1.jpg"), "oocoo"), other).accepted
    still = [blink_burst(face_bytes("obama_1.jpg"), "oocoo")[0]] * 5
    refused, none = enrol_live(still, Challenge.new(vocabulary=("blink",), length=1))
    assert not refused.accepted and none is None


def _spliced(face_bytes: Load, face: str, blinker: str) -> list[bytes]:
    """Open-eyed stills of `face` around `blinker`'s closed-eyes frame: the
    blink (the liveness) borrowed from another person."""
    own = blink_burst(face_bytes(face), "oocoo", fmt="PNG")
    borrowed = blink_burst(face_bytes(blinker), "oocoo", fmt="PNG")
    return [own[0], own[1], borrowed[2], own[3], own[4]]


def test_a_blink_borrowed_from_someone_else_is_refused(
    obama_template: FaceTemplate, face_bytes: Load
) -> None:
    """Every frame of the burst is the matched face, closed eyes included."""
    spliced = _spliced(face_bytes, "obama_1.jpg", "biden_1.jpg")
    verdict = verify(obama_template, spliced, blink_challenge(), now=NOW)
    assert not verdict.accepted and verdict.reason is Reason.FACE_MISMATCH
    # Without the continuity check the splice passes: liveness and the match of
    # the open-eyed frames are both fine, so this test is about that check.
    lax = dataclasses.replace(DEFAULT_POLICY, continuity_threshold=1.99)
    assert verify(obama_template, spliced, blink_challenge(), now=NOW, policy=lax).accepted
    # The person's own blink passes.
    own = _spliced(face_bytes, "obama_1.jpg", "obama_1.jpg")
    assert verify(obama_template, own, blink_challenge(), now=NOW).accepted


def test_a_desk_capture_with_a_borrowed_blink_is_refused(face_bytes: Load) -> None:
    spliced = _spliced(face_bytes, "obama_1.jpg", "biden_1.jpg")
    verdict, template = enrol_live(spliced, blink_challenge(), now=NOW)
    assert not verdict.accepted and template is None
    assert verdict.reason is Reason.INCONSISTENT_IMAGES
    lax = dataclasses.replace(DEFAULT_POLICY, continuity_threshold=1.99)
    assert enrol_live(spliced, blink_challenge(), now=NOW, policy=lax)[0].accepted
