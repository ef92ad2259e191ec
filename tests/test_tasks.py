"""Stopping background tasks: one that had already failed must not take the
caller (a leader stepping down, a cleanup context) down with it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cloudsign.tasks import stop_tasks


async def test_a_task_that_had_failed_is_logged_and_the_others_are_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails() -> None:
        raise RuntimeError("the database went away mid-query")

    failed = asyncio.create_task(fails(), name="anchoring")
    forever = asyncio.create_task(asyncio.Event().wait(), name="sequencer")
    await asyncio.wait([failed], timeout=5)
    assert failed.done()
    with caplog.at_level(logging.ERROR, logger="cloudsign.tasks"):
        await stop_tasks([failed, forever])  # raises nothing
    assert forever.cancelled()
    assert any("anchoring" in r.getMessage() for r in caplog.records)
