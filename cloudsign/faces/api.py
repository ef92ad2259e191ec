"""The face factor over HTTP: enrol the reference face, get a liveness
challenge, submit the burst captured for it."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from cloudsign.accounts import current_owner
from cloudsign.appkeys import ACCOUNTS, FACES, SETTINGS
from cloudsign.faces.service import BurstVerdict
from cloudsign.web.body import read_images
from cloudsign.web.params import header_digits, path_id
from cloudsign.web.problems import problem

routes = web.RouteTableDef()

MAX_ENROL_IMAGES: Final = 3
MAX_BURST_FRAMES: Final = 16


def verdict_json(v: BurstVerdict) -> dict[str, object]:
    return {
        "challenge_id": v.challenge_id,
        "passed": v.passed,
        "reason": v.reason,
        "score": v.score,
        "threshold": v.threshold,
    }


@routes.post("/api/v1/me/face")
async def enrol_face(request: web.Request) -> web.Response:
    """1..3 photos. Replacing an enrolled face needs a fresh TOTP code
    (`X-OTP` header), so a stolen access token cannot swap the face."""
    owner = await current_owner(request)
    faces = request.app[FACES]
    if owner.totp_confirmed and await faces.enrolled(owner.id):
        otp = header_digits(request, "X-OTP", min_len=6, max_len=8)
        await request.app[ACCOUNTS].verify_otp(owner.id, otp)
    images = await read_images(
        request,
        field_name="image",
        max_count=MAX_ENROL_IMAGES,
        limit=request.app[SETTINGS].max_upload_bytes,
    )
    done = await faces.enrol(owner.id, images)
    return web.json_response(
        {"enrolled": True, "images": done.images, "enrolled_at": done.enrolled_at.isoformat()},
        status=201,
    )


@routes.post("/api/v1/me/face-challenges")
async def new_face_challenge(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    challenge = await request.app[FACES].new_challenge(owner.id)
    return web.json_response(
        {
            "challenge_id": challenge.id,
            "nonce": challenge.nonce,
            "actions": list(challenge.actions),
            "expires_at": challenge.expires_at.isoformat(),
        },
        status=201,
    )


@routes.post("/api/v1/me/face-challenges/{challenge_id}/burst")
async def face_burst(request: web.Request) -> web.Response:
    owner = await current_owner(request)
    challenge_id = path_id(request, "challenge_id")
    frames = await read_images(
        request,
        field_name="frame",
        max_count=MAX_BURST_FRAMES,
        limit=request.app[SETTINGS].max_upload_bytes,
    )
    verdict = await request.app[FACES].submit_burst(owner.id, challenge_id, frames)
    body = verdict_json(verdict)
    if verdict.passed:
        return web.json_response(body)
    return problem(
        403,
        "Face check failed",
        f"the face check was refused: {verdict.reason}",
        "face_check_failed",
        **body,
    )
