"""The process pool from asyncio: warmed workers, same verdicts as the sync functions."""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from biometrics import (
    BLINK_ONLY,
    Challenge,
    EnrolmentRefusedError,
    FaceTemplate,
    FaceWorkerPool,
    ImageTooLargeError,
    WorkerError,
    enrol,
    verify,
)
from biometrics.errors import BiometricsError
from biometrics.synthetic import blink_burst

Load = Callable[[str], bytes]
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool() -> AsyncIterator[FaceWorkerPool]:
    async with FaceWorkerPool(workers=2) as p:
        yield p


@pytest.mark.asyncio(loop_scope="session")
async def test_pool_enrol_and_verify_match_sync(pool: FaceWorkerPool, face_bytes: Load) -> None:
    images = [face_bytes("obama_1.jpg"), face_bytes("obama_3.jpg")]
    template = await pool.enrol(images)
    assert template == enrol(images)

    frames = blink_burst(face_bytes("obama_2.jpg"), "oocoo")
    ch = Challenge.new(vocabulary=BLINK_ONLY, length=1, now=T0)
    now = T0 + timedelta(seconds=3)
    remote = await pool.verify(template, frames, ch, now=now)
    assert remote == verify(template, frames, ch, now=now)
    assert remote.accepted

    static = await pool.verify(template, [frames[0]] * 4, ch, now=now)
    assert static == verify(template, [frames[0]] * 4, ch, now=now)
    assert not static.accepted


@pytest.mark.asyncio(loop_scope="session")
async def test_pool_runs_requests_concurrently(pool: FaceWorkerPool, face_bytes: Load) -> None:
    import asyncio

    template = enrol([face_bytes("biden_1.jpg")])
    verdicts = await asyncio.gather(
        *(
            pool.match(template, face_bytes(name))
            for name in ("biden_2.jpg", "obama_2.jpg", "biden_3.jpg")
        )
    )
    assert [v.accepted for v in verdicts] == [True, False, True]


@pytest.mark.asyncio(loop_scope="session")
async def test_errors_cross_the_process_boundary(pool: FaceWorkerPool, face_bytes: Load) -> None:
    with pytest.raises(EnrolmentRefusedError) as exc:
        await pool.enrol([face_bytes("obama_1.jpg"), face_bytes("two_people.jpg")])
    assert exc.value.code == "multiple_faces"
    assert exc.value.image_index == 1
    bomb = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\xc3P\x00\x00\xc3P\x08\x02\x00\x00\x00"
    with pytest.raises(ImageTooLargeError):
        await pool.enrol([bomb + b"\x00" * 16])


@pytest.mark.asyncio(loop_scope="session")
async def test_not_started_pool_refuses() -> None:
    idle = FaceWorkerPool(workers=1)
    with pytest.raises(WorkerError):
        await idle.match(FaceTemplate([0.0] * 128, 1), b"")


def test_errors_pickle_with_their_code() -> None:
    err = EnrolmentRefusedError("x", code="too_dark", image_index=2)
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is EnrolmentRefusedError
    assert again.code == "too_dark"
    assert again.image_index == 2
    assert str(again) == "x"
    plain = pickle.loads(pickle.dumps(BiometricsError("y", code="internal_error")))
    assert plain.code == "internal_error"
