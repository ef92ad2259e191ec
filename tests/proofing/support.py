"""What the proofing tests share: reading events and rows back, the
certificate's subject as openssl prints it, raw HTTP for answers whose
headers matter, bursts that should not pass."""

from __future__ import annotations

import io
import json
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from multidict import CIMultiDictProxy
from PIL import Image
from sqlalchemy import func, select

from biometrics.synthetic import blink_burst
from cloudsign.accounts.tables import owners
from cloudsign.appkeys import DATABASE
from cloudsign.proofing.tables import face_captures, proofings
from cloudsign.storage.schema import events
from tests.face_images import camera_still


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: CIMultiDictProxy[str]


async def post(
    http: aiohttp.ClientSession, url: str, *, json_body: Any = None, data: Any = None
) -> Answer:
    async with http.post(url, json=json_body, data=data) as resp:
        return Answer(resp.status, await resp.json(content_type=None), resp.headers)


def frames_form(frames: list[bytes]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for i, frame in enumerate(frames):
        form.add_field("frame", frame, filename=f"f{i}.jpg", content_type="image/jpeg")
    return form


def subject(tmp_path: Path, certificate_pem: str) -> str:
    """`openssl x509 -noout -subject -nameopt RFC2253`, without `subject=`."""
    leaf = tmp_path / "leaf.pem"
    leaf.write_text(certificate_pem)
    out = subprocess.run(
        ["openssl", "x509", "-in", str(leaf), "-noout", "-subject", "-nameopt", "RFC2253"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out.startswith("subject="), out
    return out.removeprefix("subject=")


async def last_seq(app: Any) -> int:
    async with app[DATABASE].read() as conn:
        return int((await conn.execute(select(func.max(events.c.seq)))).scalar() or 0)


async def events_since(app: Any, seq: int, *types: str) -> list[dict[str, Any]]:
    """Events after `seq` (of these types), oldest first, `data` decoded."""
    query = select(events.c.event_type, events.c.owner_id, events.c.data).where(events.c.seq > seq)
    if types:
        query = query.where(events.c.event_type.in_(types))
    async with app[DATABASE].read() as conn:
        rows = (await conn.execute(query.order_by(events.c.seq))).all()
    return [
        {
            "type": t,
            "owner_id": owner,
            "data": json.loads(data) if isinstance(data, str) else data,
        }
        for t, owner, data in rows
    ]


async def proofings_of(app: Any, iin: str) -> list[Any]:
    async with app[DATABASE].read() as conn:
        query = select(proofings).where(proofings.c.iin == iin).order_by(proofings.c.created_at)
        return list((await conn.execute(query)).all())


async def owner_statuses(app: Any, iin: str) -> list[str]:
    """The statuses of the accounts of this IIN, oldest first."""
    async with app[DATABASE].read() as conn:
        query = select(owners.c.status).where(owners.c.iin == iin).order_by(owners.c.created_at)
        return [str(s) for (s,) in await conn.execute(query)]


async def capture_status(app: Any, capture_id: str) -> str:
    async with app[DATABASE].read() as conn:
        query = select(face_captures.c.status).where(face_captures.c.id == capture_id)
        return str((await conn.execute(query)).scalar_one())


def burst(name: str, pattern: str) -> list[bytes]:
    """Frames of the photo `name` following `pattern` ('o' eyes open, 'c'
    closed), each with its own sensor noise (the service refuses a frame it
    has seen): "ooooo" is a photo held up to the camera, "oocoo" a blink."""
    rng = np.random.default_rng(secrets.randbits(64))
    frames = []
    for raw in blink_burst(camera_still(name), pattern, fmt="PNG"):
        pixels = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), dtype=np.int16)
        noisy = np.clip(pixels + rng.integers(-2, 3, pixels.shape), 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(noisy).save(out, "JPEG", quality=92)
        frames.append(out.getvalue())
    return frames
