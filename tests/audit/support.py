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
from tests.staff import Staff, bootstrap_staff

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


async def staffed(server: TestServer, http: aiohttp.ClientSession) -> Staff:
    """The staff of a full server (`audit_server(full=True)`), on the test's
    `http` session: its auditor reads the full exports, its desk proofs
    citizens. (Their own events are logged from now on: call it once the
    days a test inspects are closed, or count them in.)"""
    return await bootstrap_staff(server.app, http, str(server.make_url("")).rstrip("/"))


async def auditor_get(
    staff: Staff, path: str, *, as_role: str = "auditor"
) -> tuple[int, bytes, Any]:
    """GET `path` on the operator listener as the staff member with `as_role`,
    signed in just now (the test's clock may have moved past a session)."""
    member = getattr(staff, as_role)
    await member.sign_in()
    async with member.http.get(
        staff.url + path, headers={"Authorization": f"Bearer {member.token}"}
    ) as r:
        return r.status, await r.read(), r.headers


def auditor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audit_chain", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=120,
    )
