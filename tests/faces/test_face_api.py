"""The face factor over HTTP: replacement of the template (images checked
first, the same face only, every factor), caps, challenges and refusals,
and the lock after refused bursts."""

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
from cloudsign.appkeys import DATABASE, GUARD, LIMITS
from cloudsign.faces.tables import face_challenges, face_templates
from cloudsign.storage.schema import events
from device_client.client import ApiError, CloudsignClient, frames_form
from tests.face_images import live_burst, photo
from tests.helpers import activated, enrolled, new_client, passed_face_check

PASSWORD = "correct horse battery"


async def _replace(
    client: CloudsignClient, totp: Any, images: list[bytes], *, face: str = "obama_2.jpg"
) -> dict[str, Any]:
    return await client.replace_face(
        images,
        password=PASSWORD,
        face_challenge_id=await passed_face_check(client, face),
        otp=await totp.fresh_code(),
    )


async def _face_enrolled(client: CloudsignClient) -> bool:
    return bool((await client.request("GET", "/api/v1/me"))["face_enrolled"])


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
async def test_replacement_refusals_spend_no_factor(
    client: CloudsignClient, image: str | bytes, status: int, code: str, base_url: str, app: Any
) -> None:
    totp, _ = await enrolled(client)
    before = await _template(app, client)
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
    face = await passed_face_check(client)
    otp = await totp.fresh_code()
    with pytest.raises(ApiError) as err:
        await client.replace_face([data], password=PASSWORD, otp=otp, face_challenge_id=face)
    assert err.value.status == status, err.value.body
    assert err.value.code == code or err.value.body.get("reason") == code
    assert await _template(app, client) == before
    async with client.session.get(f"{base_url}/healthz") as resp:
        assert resp.status == 200
    # The images were refused before any factor was checked: both still work.
    await client.replace_face(
        [photo("obama_2.jpg")], password=PASSWORD, otp=otp, face_challenge_id=face
    )
    assert await _template(app, client) != before


async def test_upload_caps(client: CloudsignClient, base_url: str) -> None:
    await enrolled(client)
    with pytest.raises(ApiError) as err:
        await client.replace_face(
            [photo("obama_1.jpg")] * 4, password=None, otp=None, face_challenge_id=None
        )
    assert err.value.status == 400
    big = b"\xff\xd8" + b"\0" * (9 << 20)  # over the 8 MiB an image may have
    with pytest.raises(ApiError) as err:
        await client.replace_face([big], password=None, otp=None, face_challenge_id=None)
    assert err.value.status == 400 and err.value.body["field"] == "images"
    huge = b"\xff\xd8" + b"\0" * (25 << 20)  # over what the whole body may have
    with pytest.raises(ApiError) as err:
        await client.replace_face([huge], password=None, otp=None, face_challenge_id=None)
    assert err.value.status == 413
    async with client.session.get(f"{base_url}/healthz") as resp:
        assert resp.status == 200


async def _template(app: Any, client: CloudsignClient) -> bytes:
    async with app[DATABASE].read() as conn:
        return bytes(
            (
                await conn.execute(
                    select(face_templates.c.template_sealed).where(
                        face_templates.c.owner_id == client.owner_id
                    )
                )
            ).scalar_one()
        )


async def test_template_is_sealed_and_replaced_only_with_every_factor(
    client: CloudsignClient, app: Any
) -> None:
    totp, _ = await enrolled(client, face="obama_1.jpg")
    sealed = await _template(app, client)
    plain = library_enrol([photo("obama_1.jpg")]).to_bytes()
    assert plain not in sealed and plain[16:48] not in sealed
    # One factor, or two, change nothing.
    attempts: list[dict[str, Any]] = [
        {"password": None, "otp": await totp.fresh_code(), "face_challenge_id": None},
        {"password": PASSWORD, "otp": await totp.fresh_code(), "face_challenge_id": None},
        {"password": None, "otp": await totp.fresh_code(), "face_challenge_id": "x"},
        {
            "password": None,
            "face_challenge_id": await passed_face_check(client),
            "otp": await totp.fresh_code(),
        },
        {
            "password": "wrong password",
            "face_challenge_id": await passed_face_check(client),
            "otp": await totp.fresh_code(),
        },
    ]
    for factors in attempts:
        with pytest.raises(ApiError) as err:
            await client.replace_face([photo("obama_2.jpg")], **factors)
        assert err.value.status in (400, 403), err.value.body
    assert await _template(app, client) == sealed
    # Another person's photos are no replacement, even with every factor.
    with pytest.raises(ApiError) as err:
        await _replace(client, totp, [photo("biden_1.jpg")])
    assert err.value.status == 422 and err.value.body["reason"] == "face_mismatch"
    assert await _template(app, client) == sealed
    # All three, and the same face: replaced, and an event says so.
    done = await _replace(client, totp, [photo("obama_2.jpg")])
    assert done["replaced"] and done["images"] == 1
    assert await _template(app, client) != sealed
    async with app[DATABASE].read() as conn:
        sources = [
            r[0]["source"]
            for r in (
                await conn.execute(
                    select(events.c.data)
                    .where(
                        events.c.owner_id == client.owner_id, events.c.event_type == "face.enrol"
                    )
                    .order_by(events.c.seq)
                )
            ).all()
        ]
    assert sources == ["desk", "replacement"]


async def test_an_enrolment_session_cannot_replace_the_face(client: CloudsignClient) -> None:
    await activated(client)
    with pytest.raises(ApiError) as err:
        await client.replace_face(
            [photo("obama_2.jpg")], password=PASSWORD, otp="123456", face_challenge_id="x"
        )
    assert err.value.status == 403


async def test_challenge_refusals_each_with_its_reason(client: CloudsignClient, app: Any) -> None:
    await activated(client, face="obama_1.jpg")

    async def unlock() -> None:
        # Six refusals follow; the lock after five has its own test.
        await app[GUARD].clear(app[LIMITS].face, str(client.owner_id))

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
    await unlock()
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
    await activated(other, face="biden_1.jpg")
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


async def test_refused_bursts_lock_the_face_factor(client: CloudsignClient, app: Any) -> None:
    """Five refused bursts in a row lock face checks for the account (423,
    `Retry-After`), with an `auth.failure` per refusal and a `lock` event;
    answers carry no distance or threshold."""
    await activated(client, face="obama_1.jpg")
    for _ in range(5):
        ch = await client.face_challenge()
        with pytest.raises(ApiError) as err:
            await client.send_burst(ch["challenge_id"], live_burst("biden_2.jpg", ch["actions"]))
        assert err.value.status == 403
        assert set(err.value.body) >= {"passed", "reason"}
        assert not {"score", "distance", "threshold"} & set(err.value.body)
    ch = await client.face_challenge()
    async with client.session.post(
        f"{client.base_url}/api/v1/me/face-challenges/{ch['challenge_id']}/burst",
        data=frames_form(live_burst("obama_2.jpg", ch["actions"])),
        headers={"Authorization": f"Bearer {client.access_token}"},
    ) as resp:
        assert resp.status == 423
        assert int(resp.headers["Retry-After"]) > 0
    async with app[DATABASE].read() as conn:
        kinds = (
            (
                await conn.execute(
                    select(events.c.event_type).where(events.c.owner_id == client.owner_id)
                )
            )
            .scalars()
            .all()
        )
    assert kinds.count("auth.failure") == 5 and kinds.count("lock") == 1
