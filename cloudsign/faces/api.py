"""The face factor over HTTP: get a liveness challenge, submit the burst
captured for it. The reference face comes from identity proofing
(cloudsign/proofing); replacing it needs every factor (cloudsign/lifecycle)."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from cloudsign.accounts import current_owner
from cloudsign.appkeys import FACES, SETTINGS
from cloudsign.faces.service import BurstVerdict
from cloudsign.web.body import read_images
from cloudsign.web.params import path_id
from cloudsign.web.problems import problem

routes = web.RouteTableDef()

MAX_BURST_FRAMES: Final = 16


def verdict_json(v: BurstVerdict) -> dict[str, object]:
    # No distance, no threshold: they would tell an impostor how close it came.
    return {"challenge_id": v.challenge_id, "passed": v.passed, "reason": v.reason}


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
