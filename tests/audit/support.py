"""Helpers shared by the audit service tests."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from cloudsign.appkeys import DATABASE
from cloudsign.events import EventType, append_event

REPO = Path(__file__).resolve().parents[2]


async def get_json(server: TestServer, path: str) -> Any:
    async with (
        aiohttp.ClientSession() as s,
        s.get(str(server.make_url(path))) as r,
    ):
        assert r.status == 200, await r.text()
        return await r.json()


async def get_raw(server: TestServer, path: str) -> tuple[int, bytes, str]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(str(server.make_url(path))) as r,
    ):
        return r.status, await r.read(), r.content_type


async def append_many(server: TestServer, count: int, owner: str = "owner", **data: Any) -> None:
    async with server.app[DATABASE].transaction() as conn:
        for i in range(count):
            await append_event(
                conn,
                EventType.KEY_CREATE,
                owner_id=f"{owner}-{i % 7}",
                data={"n": i, **data},
                at=datetime.now(UTC),
            )


def auditor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audit_chain", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=120,
    )
