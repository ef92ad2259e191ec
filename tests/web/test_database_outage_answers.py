"""A database that is away answers 503 with Retry-After; a database error
that is a bug (a missing table, a broken statement) stays a 500."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from cloudsign.web.problems import problem_middleware


def _invalidated() -> DBAPIError:
    e = DBAPIError("SELECT 1", None, Exception("whatever the driver said"))
    e.connection_invalidated = True
    return e


CASES: list[tuple[str, Callable[[], BaseException], int]] = [
    ("refused", lambda: ConnectionRefusedError(111, "Connect call failed"), 503),
    ("cut off mid-query", _invalidated, 503),
    (
        "sqlite locked",
        lambda: OperationalError("INSERT", None, Exception("database is locked")),
        503,
    ),
    (
        "postgresql restarting",
        lambda: DBAPIError("SELECT", None, Exception("the database system is starting up")),
        503,
    ),
    (
        # Seen in the clean-clone run of the PostgreSQL kill test: the
        # restarted server is still replaying its WAL.
        "postgresql recovering",
        lambda: DBAPIError(
            "connect",
            None,
            Exception("the database system is not yet accepting connections"),
        ),
        503,
    ),
    ("pool exhausted", lambda: PoolTimeoutError("QueuePool limit reached"), 503),
    ("missing table", lambda: OperationalError("SELECT", None, Exception("no such table: x")), 500),
    ("broken statement", lambda: ProgrammingError("SELEC", None, Exception("syntax error")), 500),
]


@pytest.mark.parametrize(("name", "make", "status"), CASES, ids=[c[0] for c in CASES])
async def test_database_errors_answer_by_kind(
    name: str, make: Callable[[], BaseException], status: int
) -> None:
    async def handler(_request: web.Request) -> web.Response:
        raise make()

    app = web.Application(middlewares=[problem_middleware])
    app.router.add_get("/x", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http, http.get(server.make_url("/x")) as r:
            body = await r.json(content_type=None)
            assert r.status == status, body
            if status == 503:
                assert body["code"] == "database_unavailable"
                assert r.headers["Retry-After"] == "2"
            else:
                assert body["code"] == "internal"
                assert "Retry-After" not in r.headers
    finally:
        await server.close()
