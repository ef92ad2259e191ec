"""The face factor over HTTP: enrolment gate, caps, challenges and refusals."""

from __future__ import annotations

import io
import struct
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from PIL import Image
from sqlalchemy import select, update

from biometrics import enrol as library_enrol
from cloudsign.appkeys import DATABASE
from cloudsign.faces.tables import face_challenges, face_templates
from device_client.client import ApiError, CloudsignClient
from tests.face_images import live_burst, photo
from tests.helpers import enrolled, new_client, passed_face_check, person


async def _account(client: CloudsignClient) -> Any:
    await client.create_account(person())
    await client.accept_consents()
    return await client.setup_totp()


def _png_header_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(out, "GIF")
    return out.getvalue()


@pytest.mark.parametrize(
    ("image", "status", "code"),
    [
        ("two_people.jpg", 422, "multiple_faces"),
        ("obama_partial_face.jpg", 422, "face_truncated"),
        (b"GIF", 415, "unsupported_media_type"),
        (b"not an image at all", 415, "unsupported_media_type"),
        (b"TRUNCATED", 400, "invalid_field"),
        (b"PNGBOMB", 413, "image_too_large"),
    ],
)
async def test_enrolment_refusals(
    client: CloudsignClient, image: str | bytes, status: int, code: str, base_url: str
) -> None:
    await _account(client)
    if image == b"GIF":
        data = _gif()
    elif image == b"PNGBOMB":
        data = _png_header_bomb()
    elif image == b"TRUNCATED":
        data = photo("obama_1.jpg")[:3000]
    elif isinstance(image, str):
        data = photo(image)
    else:
        data = image
    with pytest.raises(ApiError) as err:
        await client.enrol_face([data])
    assert err.value.status == status, err.value.body
    assert err.value.code == code or err.value.body.get("reason") == code
    assert not (await client.request("GET", "/api/v1/me"))["face_enrolled"]
    async with client.session.get(f"{base_url}/healthz") as resp:
        assert resp.status == 200


async def test_upload_caps(client: CloudsignClient, base_url: str) -> None:
    await _account(client)
    with pytest.raises(ApiError) as err:
        await client.enrol_face([photo("obama_1.jpg")] * 4)
    assert err.value.status == 400
    big = b"\xff\xd8" + b"\0" * (17 << 20)
    with pytest.raises(ApiError) as err:
        await client.enrol_face([big])
    assert err.value.status == 413
    async with client.session.get(f"{base_url}/healthz") as resp:
        assert resp.status == 200


async def test_template_is_sealed_and_reenrolment_needs_otp(
    client: CloudsignClient, app: Any
) -> None:
    totp = await _account(client)
    await client.enrol_face([photo("obama_1.jpg")])
    plain = library_enrol([photo("obama_1.jpg")]).to_bytes()
    async with app[DATABASE].read() as conn:
        sealed = (
            await conn.execute(
                select(face_templates.c.template_sealed).where(
                    face_templates.c.owner_id == client.owner_id
                )
            )
        ).scalar_one()
    assert sealed and plain not in sealed and plain[16:48] not in sealed
    with pytest.raises(ApiError) as err:
        await client.enrol_face([photo("biden_1.jpg")])
    assert err.value.status == 403
    await client.enrol_face([photo("biden_1.jpg")], otp=await totp.fresh_code())
    # Re-enrolment replaced the template: Obama no longer matches.
    challenge = await client.face_challenge()
    with pytest.raises(ApiError) as err:
        await client.send_burst(
            challenge["challenge_id"], live_burst("obama_2.jpg", challenge["actions"])
        )
    assert err.value.status == 403
    assert err.value.body["passed"] is False and err.value.body["reason"] == "face_mismatch"


async def test_challenge_refusals_each_with_its_reason(client: CloudsignClient, app: Any) -> None:
    await _account(client)
    await client.enrol_face([photo("obama_1.jpg")])

    # Another person.
    ch = await client.face_challenge()
    with pytest.raises(ApiError) as err:
        await client.send_burst(ch["challenge_id"], live_burst("biden_2.jpg", ch["actions"]))
    assert err.value.status == 403 and err.value.body["reason"] == "face_mismatch"

    # A burst that passes, then replays of it.
    ch = await client.face_challenge()
    frames = live_burst("obama_2.jpg", ch["actions"])
    assert (await client.send_burst(ch["challenge_id"], frames))["passed"]
    with pytest.raises(ApiError) as err:
        await client.send_burst(ch["challenge_id"], frames)
    assert err.value.status == 409  # the challenge is spent
    ch2 = await client.face_challenge()
    with pytest.raises(ApiError) as err:
        await client.send_burst(ch2["challenge_id"], frames)
    assert err.value.body["reason"] == "burst_replayed"

    # A still image repeated: no blink, no life.
    ch = await client.face_challenge()
    still = live_burst("obama_2.jpg", ["blink"])[0]
    with pytest.raises(ApiError) as err:
        await client.send_burst(ch["challenge_id"], [still] * 5)
    assert err.value.body["reason"] in ("static_replay", "burst_replayed")
    ch = await client.face_challenge()
    burst = live_burst("obama_2.jpg", ["blink"])
    with pytest.raises(ApiError) as err:
        await client.send_burst(ch["challenge_id"], [burst[0], burst[1], burst[3], burst[4]])
    assert err.value.body["reason"] in ("actions_missing", "static_replay")

    # Two faces, no face.
    ch = await client.face_challenge()
    with pytest.raises(ApiError) as err:
        await client.send_burst(ch["challenge_id"], [photo("two_people.jpg")] * 3)
    assert err.value.body["reason"] == "multiple_faces"
    blank = io.BytesIO()
    Image.new("RGB", (640, 480), (120, 110, 100)).save(blank, "JPEG")
    ch = await client.face_challenge()
    with pytest.raises(ApiError) as err:
        await client.send_burst(ch["challenge_id"], [blank.getvalue()] * 3)
    assert err.value.body["reason"] in ("no_face", "static_replay")

    # Expired.
    ch = await client.face_challenge()
    async with app[DATABASE].transaction() as conn:
        await conn.execute(
            update(face_challenges)
            .where(face_challenges.c.id == ch["challenge_id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with pytest.raises(ApiError) as err:
        await client.send_burst(ch["challenge_id"], live_burst("obama_2.jpg", ch["actions"]))
    assert err.value.status == 409

    # Someone else's challenge does not exist for us.
    other = new_client(client.base_url, client.session)
    await _account(other)
    await other.enrol_face([photo("biden_1.jpg")])
    theirs = await other.face_challenge()
    with pytest.raises(ApiError) as err:
        await client.send_burst(theirs["challenge_id"], live_burst("obama_2.jpg", ["blink"]))
    assert err.value.status == 404


async def test_a_passed_check_backs_one_authorisation(
    client: CloudsignClient, http: aiohttp.ClientSession
) -> None:
    import os

    totp, cred = await enrolled(client)
    face = await passed_face_check(client)
    await client.authorize(
        cred["credential_id"],
        [os.urandom(32)],
        password="correct horse battery",
        otp=await totp.fresh_code(),
        face_challenge_id=face,
    )
    with pytest.raises(ApiError) as err:
        await client.authorize(
            cred["credential_id"],
            [os.urandom(32)],
            password="correct horse battery",
            otp=await totp.fresh_code(),
            face_challenge_id=face,
        )
    assert err.value.status == 403 and "face" in err.value.body["detail"]
