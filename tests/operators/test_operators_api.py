"""The operator API over HTTP, on both databases: sign-in counted and locked,
every route behind a session and off the public listener, roles, one-time
setup codes, the two-person rule, and an audit trail that names the
authenticated operator only. Then the server CLI's bootstrap of the first
two security officers, on a fresh data dir.

Events are read from `cloudsign.storage.schema.events` after a baseline
`seq`: tests run one at a time, so what follows the baseline is the test's.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pyotp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from cloudsign.app import OPERATOR_ROUTES
from cloudsign.appkeys import DATABASE, SETTINGS, STATUS_OPERATIONS
from cloudsign.ca import certificates
from cloudsign.storage.schema import events
from tests.face_images import photo
from tests.helpers import REPO, enrolled, new_client, person
from tests.serving import CLI, clean_env
from tests.staff import OperatorClient, Staff, set_up

OPERATOR_API = "/operator/api/"
#: The routes that take credentials in the body instead of a session.
PRE_SESSION = {
    ("POST", "/operator/api/v1/sessions"),
    ("POST", "/operator/api/v1/setup"),
    ("POST", "/operator/api/v1/setup/confirm"),
}
BOGUS = "mallory"


# -- helpers ---------------------------------------------------------------------------


async def _last_seq(app: Any) -> int:
    async with app[DATABASE].read() as conn:
        return int((await conn.execute(select(func.max(events.c.seq)))).scalar_one() or 0)


async def _events_since(app: Any, seq: int, *types: str) -> list[tuple[str, dict[str, Any]]]:
    stmt = select(events.c.event_type, events.c.data).where(events.c.seq > seq)
    if types:
        stmt = stmt.where(events.c.event_type.in_(types))
    async with app[DATABASE].read() as conn:
        rows = (await conn.execute(stmt.order_by(events.c.seq))).all()
    return [(kind, dict(data)) for kind, data in rows]


async def _actions_since(app: Any, seq: int) -> list[dict[str, Any]]:
    """The `operator.action` events after `seq`, their data."""
    return [data for _, data in await _events_since(app, seq, "operator.action")]


async def _cert_status(app: Any, serial: str) -> tuple[str, str | None]:
    async with app[DATABASE].read() as conn:
        row = (
            await conn.execute(
                select(certificates.c.status, certificates.c.revocation_reason).where(
                    certificates.c.serial == serial
                )
            )
        ).one()
    return row.status, row.revocation_reason


async def _certificate(base_url: str, http: aiohttp.ClientSession) -> str:
    """A citizen enrolled through the desk and the device: their certificate serial."""
    _, cred = await enrolled(new_client(base_url, http))
    return str(cred["certificate_serial"])


async def _pending_ids(op: OperatorClient) -> set[str]:
    return {a["approval_id"] for a in await op.request("GET", "/operator/api/v1/approvals")}


async def _public_notices(http: aiohttp.ClientSession, base_url: str) -> list[str]:
    async with http.get(f"{base_url}/pki/notices.json") as resp:
        assert resp.status == 200
        return [n["title"] for n in (await resp.json())["notices"]]


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def _path(template: str) -> str:
    """A route's path with every {param} filled with a fresh id."""
    out, _, rest = template.partition("{")
    while rest:
        _, _, rest = rest.partition("}")
        out += str(uuid.uuid4())
        more, _, rest = rest.partition("{")
        out += more
    return out


def _routes() -> list[tuple[str, str]]:
    found = []
    for table in OPERATOR_ROUTES:
        for route in table:
            if isinstance(route, web.RouteDef):
                found.append((route.method, route.path))
    return found


async def _status(
    http: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, dict[str, Any]]:
    async with http.request(method, url, **kw) as resp:
        try:
            body = await resp.json(content_type=None)
        except (json.JSONDecodeError, aiohttp.ContentTypeError, UnicodeDecodeError):
            body = {}
        return resp.status, body if isinstance(body, dict) else {"items": body}


# -- sign-in -----------------------------------------------------------------------------


async def test_wrong_passwords_and_codes_are_counted_then_the_operator_is_locked(
    app: Any, staff: Staff, http: aiohttp.ClientSession
) -> None:
    # A throwaway operator: the staff stay usable for the other tests.
    victim = await staff.security.new_operator(["auditor"])
    url = f"{staff.url}/operator/api/v1/sessions"
    before = await _last_seq(app)
    attempts = [
        {"password": "not the password at all", "otp": await victim.totp.fresh_code()},
        {"password": victim.password + "x", "otp": await victim.totp.fresh_code()},
        {"password": "wrong again, twelve+", "otp": await victim.totp.fresh_code()},
        {"password": victim.password, "otp": _wrong(await victim.totp.fresh_code())},
        {"password": victim.password, "otp": _wrong(await victim.totp.fresh_code())},
    ]
    assert app[SETTINGS].max_failed_attempts == len(attempts)
    for attempt in attempts:
        status, body = await _status(
            http, "POST", url, json={"username": victim.username, **attempt}
        )
        assert (status, body["code"]) == (401, "unauthorized"), body
    # The sixth, right this time, finds the account locked.
    async with http.post(
        url,
        json={
            "username": victim.username,
            "password": victim.password,
            "otp": await victim.totp.fresh_code(),
        },
    ) as resp:
        assert resp.status == 423
        assert (await resp.json())["code"] == "locked"
        retry = int(resp.headers["Retry-After"])
    assert 0 < retry <= app[SETTINGS].lockout_seconds
    # The console's sign-in shares the counter.
    status, _ = await _status(
        http,
        "POST",
        f"{staff.url}/console/session",
        json={
            "username": victim.username,
            "password": victim.password,
            "otp": await victim.totp.fresh_code(),
        },
    )
    assert status == 423

    happened = await _events_since(app, before, "auth.failure", "lock", "operator.signin")
    failures = [d for kind, d in happened if kind == "auth.failure"]
    assert len(failures) == 5
    assert all(d["factor"] == "operator-signin" for d in failures)
    locks = [d for kind, d in happened if kind == "lock"]
    assert len(locks) == 1 and locks[0]["limit"] == "signin.operator"
    assert not [d for kind, d in happened if kind == "operator.signin"]
    # Nothing secret in what was logged.
    assert victim.password not in json.dumps([d for _, d in happened])
    # The others sign in as before.
    await staff.auditor.sign_in()
    assert (await staff.auditor.request("GET", "/operator/api/v1/me"))["username"] == (
        staff.auditor.username
    )


# -- sessions and listeners -------------------------------------------------------------


async def test_every_operator_route_needs_a_session_and_is_absent_from_the_public_listener(
    staff: Staff, http: aiohttp.ClientSession, base_url: str
) -> None:
    routes = _routes()
    api_routes = [(m, p) for m, p in routes if p.startswith(OPERATOR_API)]
    assert len(api_routes) >= 18, api_routes
    assert PRE_SESSION.issubset(api_routes)
    for method, template in api_routes:
        url = staff.url + _path(template)
        if (method, template) in PRE_SESSION:
            continue
        for headers in ({}, {"Authorization": "Bearer not-a-session-token"}):
            status, body = await _status(http, method, url, headers=headers)
            assert (status, body.get("code")) == (401, "unauthorized"), (method, template)
    # The three pre-session routes refuse wrong credentials the same way.
    refusals = {
        "/operator/api/v1/sessions": {
            "username": f"nobody.{secrets.token_hex(3)}",
            "password": "twelve chars or more",
            "otp": "123456",
        },
        "/operator/api/v1/setup": {
            "setup_code": secrets.token_urlsafe(15),
            "password": "twelve chars or more",
        },
        "/operator/api/v1/setup/confirm": {
            "setup_code": secrets.token_urlsafe(15),
            "otp": "123456",
        },
    }
    for path, body in refusals.items():
        status, answer = await _status(http, "POST", staff.url + path, json=body)
        assert status == 401, (path, answer)
    # The public listener has none of them, nor the console.
    for method, template in routes:
        if template in ("/healthz", "/readyz", "/metrics"):  # both listeners answer these
            continue
        status, _ = await _status(http, method, base_url + _path(template))
        assert status == 404, (method, template)
    # And a session token of the operator listener means nothing on the public one.
    status, _ = await _status(
        http,
        "GET",
        f"{base_url}/operator/api/v1/me",
        headers={"Authorization": f"Bearer {staff.security.token}"},
    )
    assert status == 404


async def test_roles_are_enforced(staff: Staff) -> None:
    some_id = str(uuid.uuid4())
    refused: list[tuple[OperatorClient, str, str, Any]] = [
        (staff.registration, "POST", "/operator/api/v1/revocations",
         {"serial": "01", "reason": "superseded"}),
        (staff.auditor, "POST", "/operator/api/v1/revocations/bulk",
         {"serials": ["01"], "reason": "superseded"}),
        (staff.security, "POST", "/operator/api/v1/revocations",
         {"serial": "01", "reason": "superseded"}),
        (staff.revocation, "POST", "/operator/api/v1/desk/captures", None),
        (staff.auditor, "POST", f"/operator/api/v1/desk/captures/{some_id}/burst", None),
        (staff.security, "POST", "/operator/api/v1/proofings", {}),
        (staff.auditor, "POST", "/operator/api/v1/notices",
         {"title": "t", "summary": "s", "measures": "m", "serials": []}),
        (staff.registration, "POST", "/operator/api/v1/notices",
         {"title": "t", "summary": "s", "measures": "m", "serials": []}),
        (staff.auditor, "POST", "/operator/api/v1/operators",
         {"username": "never.made", "display_name": "N", "roles": ["auditor"]}),
        (staff.revocation, "POST", "/operator/api/v1/operators",
         {"username": "never.made", "display_name": "N", "roles": ["auditor"]}),
        (staff.auditor, "POST", f"/operator/api/v1/operators/{some_id}/disable", None),
        (staff.registration, "GET", "/operator/api/v1/operators", None),
        (staff.revocation, "GET", "/operator/api/v1/audit/operator-actions", None),
        (staff.registration, "GET", f"/operator/api/v1/audit/documents?owner_id={some_id}", None),
        (staff.security, "GET", f"/operator/api/v1/audit/documents?owner_id={some_id}", None),
    ]  # fmt: skip
    for op, method, path, body in refused:
        status, answer = await op.request_status(method, path, body)
        assert (status, answer.get("code")) == (403, "forbidden"), (op.username, path, answer)
    # What each role may do, it can.
    assert await staff.auditor.request("GET", "/operator/api/v1/operators")
    assert await staff.auditor.request("GET", "/operator/api/v1/audit/operator-actions")
    assert await staff.security.request("GET", "/operator/api/v1/operators")
    for op in (staff.registration, staff.revocation, staff.auditor, staff.security):
        await op.request("GET", "/operator/api/v1/approvals")


async def test_a_setup_code_works_once(app: Any, staff: Staff, http: aiohttp.ClientSession) -> None:
    name = f"audit.{secrets.token_hex(3)}"
    before = await _last_seq(app)
    created = await staff.security.request(
        "POST",
        "/operator/api/v1/operators",
        {"username": name, "display_name": "New Auditor", "roles": ["auditor"]},
    )
    assert created["operator"]["status"] == "setup"
    code = created["setup_code"]
    newcomer = await set_up(staff.url, http, name, code)
    assert (await newcomer.request("GET", "/operator/api/v1/me"))["status"] == "active"
    again = await _status(
        http,
        "POST",
        f"{staff.url}/operator/api/v1/setup",
        json={"setup_code": code, "password": "a different password"},
    )
    assert again[0] == 401
    confirm = await _status(
        http,
        "POST",
        f"{staff.url}/operator/api/v1/setup/confirm",
        json={"setup_code": code, "otp": await newcomer.totp.fresh_code()},
    )
    assert confirm[0] == 401
    # The old password still signs in: the spent code changed nothing.
    await newcomer.sign_in()
    happened = await _events_since(app, before, "operator.create", "operator.action")
    assert (
        "operator.create",
        {"operator": name, "roles": ["auditor"], "by": staff.security.username},
    ) in happened
    assert ("operator.action", {"action": "operator.setup", "operator": name}) in happened


# -- the two-person rule ------------------------------------------------------------------


async def test_a_ca_compromise_revocation_waits_for_a_second_revocation_officer(
    app: Any, staff: Staff, http: aiohttp.ClientSession, base_url: str
) -> None:
    serial = await _certificate(base_url, http)
    second = await staff.security.new_operator(["revocation_officer"])
    requester = staff.revocation
    before = await _last_seq(app)
    ask = {"serial": serial, "reason": "ca-compromise", "reference": "incident 7"}

    status, pending = await requester.request_status("POST", "/operator/api/v1/revocations", ask)
    assert status == 202 and pending["status"] == "pending", pending
    assert pending["action"] == "revocation.ca_compromise"
    first_id = pending["approval_id"]
    assert await _cert_status(app, serial) == ("good", None)
    # Not the requester; not an operator without the revocation role.
    for op in (requester, staff.security, staff.auditor):
        status, body = await op.request_status(
            "POST", f"/operator/api/v1/approvals/{first_id}/approve"
        )
        assert (status, body["code"]) == (403, "forbidden"), op.username
    assert first_id in await _pending_ids(second)
    # A rejection: nothing revoked, and the request is spent.
    rejected = await second.request("POST", f"/operator/api/v1/approvals/{first_id}/reject")
    assert rejected["status"] == "rejected" and rejected["result"] is None
    assert await _cert_status(app, serial) == ("good", None)
    status, _ = await second.request_status(
        "POST", f"/operator/api/v1/approvals/{first_id}/approve"
    )
    assert status == 409
    assert first_id not in await _pending_ids(second)

    status, pending = await requester.request_status("POST", "/operator/api/v1/revocations", ask)
    assert status == 202
    done = await second.request(
        "POST", f"/operator/api/v1/approvals/{pending['approval_id']}/approve"
    )
    assert done["status"] == "done" and done["decided_by"] != done["requested_by"]
    assert done["result"]["serial"] == serial and done["result"]["reason"] == "cACompromise"
    assert await _cert_status(app, serial) == ("revoked", "ca_compromise")

    revokes = [d for kind, d in await _events_since(app, before, "cert.revoke")]
    assert revokes == [
        {
            "serial": serial,
            "reason": "ca_compromise",
            "actor": f"operator:{requester.username}+{second.username}",
            "reference": "incident 7",
        }
    ]
    steps = [(d["action"], d["operator"]) for d in await _actions_since(app, before)]
    assert steps == [
        ("approval.request", requester.username),
        ("approval.reject", second.username),
        ("approval.request", requester.username),
        ("approval.approve", second.username),
    ]


async def test_a_bulk_revocation_above_the_threshold_waits_for_a_second_operator(
    app: Any,
    staff: Staff,
    http: aiohttp.ClientSession,
    base_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    requester = staff.revocation
    second = await staff.security.new_operator(["revocation_officer"])
    threshold = app[SETTINGS].bulk_revocation_threshold
    # At the configured threshold: one more serial than it allows waits.
    many = [secrets.token_hex(8) for _ in range(threshold + 1)]
    status, pending = await requester.request_status(
        "POST", "/operator/api/v1/revocations/bulk", {"serials": many, "reason": "superseded"}
    )
    assert status == 202 and pending["action"] == "revocation.bulk"
    assert pending["payload"]["serials"] == [s.lstrip("0") for s in many]
    await second.request("POST", f"/operator/api/v1/approvals/{pending['approval_id']}/reject")

    # Two real certificates over a threshold of one (set on the live service,
    # restored after the test): enrolling eleven citizens would say no more.
    monkeypatch.setattr(app[STATUS_OPERATIONS], "bulk_threshold", 1)
    serials = [await _certificate(base_url, http), await _certificate(base_url, http)]
    before = await _last_seq(app)
    ask = {"serials": serials, "reason": "superseded"}
    status, pending = await requester.request_status(
        "POST", "/operator/api/v1/revocations/bulk", ask
    )
    assert status == 202
    status, _ = await requester.request_status(
        "POST", f"/operator/api/v1/approvals/{pending['approval_id']}/approve"
    )
    assert status == 403
    await second.request("POST", f"/operator/api/v1/approvals/{pending['approval_id']}/reject")
    assert [await _cert_status(app, s) for s in serials] == [("good", None)] * 2

    status, pending = await requester.request_status(
        "POST", "/operator/api/v1/revocations/bulk", ask
    )
    assert status == 202
    done = await second.request(
        "POST", f"/operator/api/v1/approvals/{pending['approval_id']}/approve"
    )
    assert done["status"] == "done"
    assert [r["serial"] for r in done["result"]["revoked"]] == serials
    assert [await _cert_status(app, s) for s in serials] == [("revoked", "superseded")] * 2
    actors = {d["actor"] for _, d in await _events_since(app, before, "cert.revoke")}
    assert actors == {f"operator:{requester.username}+{second.username}"}


async def test_a_ca_compromise_notice_waits_for_a_security_officer(
    app: Any, staff: Staff, http: aiohttp.ClientSession, base_url: str
) -> None:
    requester = staff.revocation
    title = f"CA key compromise {secrets.token_hex(4)}"
    notice = {
        "title": title,
        "summary": "The issuing CA key may be known to others.",
        "measures": "Every certificate it issued is being revoked.",
        "serials": [],
        "ca_compromise": True,
    }
    before = await _last_seq(app)
    status, pending = await requester.request_status("POST", "/operator/api/v1/notices", notice)
    assert status == 202 and pending["action"] == "notice.ca_compromise"
    assert title not in await _public_notices(http, base_url)
    # Not the requester, not another revocation officer or an auditor: a security officer.
    other_revoker = await staff.security.new_operator(["revocation_officer"])
    for op in (requester, other_revoker, staff.auditor, staff.registration):
        status, body = await op.request_status(
            "POST", f"/operator/api/v1/approvals/{pending['approval_id']}/approve"
        )
        assert (status, body["code"]) == (403, "forbidden"), op.username
    await staff.security.request(
        "POST", f"/operator/api/v1/approvals/{pending['approval_id']}/reject"
    )
    assert title not in await _public_notices(http, base_url)

    status, pending = await requester.request_status("POST", "/operator/api/v1/notices", notice)
    assert status == 202
    done = await staff.security.request(
        "POST", f"/operator/api/v1/approvals/{pending['approval_id']}/approve"
    )
    assert done["status"] == "done" and done["result"]["title"] == title
    assert title in await _public_notices(http, base_url)
    (published,) = [d for _, d in await _events_since(app, before, "notice.publish")]
    assert published["actor"] == f"operator:{requester.username}+{staff.security.username}"

    # An ordinary notice needs no second operator.
    plain = {**notice, "title": title + " (follow-up)", "ca_compromise": False}
    status, body = await requester.request_status("POST", "/operator/api/v1/notices", plain)
    assert status == 201 and body["title"] == plain["title"]


async def test_adding_a_security_officer_waits_for_a_second_security_officer(
    app: Any, staff: Staff, http: aiohttp.ClientSession
) -> None:
    name = f"security3.{secrets.token_hex(3)}"
    ask = {"username": name, "display_name": "Third Officer", "roles": ["security_officer"]}
    before = await _last_seq(app)
    status, pending = await staff.security.request_status("POST", "/operator/api/v1/operators", ask)
    assert status == 202 and pending["action"] == "operator.create"
    for op in (staff.security, staff.revocation, staff.auditor):
        status, _ = await op.request_status(
            "POST", f"/operator/api/v1/approvals/{pending['approval_id']}/approve"
        )
        assert status == 403, op.username
    await staff.security2.request(
        "POST", f"/operator/api/v1/approvals/{pending['approval_id']}/reject"
    )
    listed = await staff.security.request("GET", "/operator/api/v1/operators")
    assert name not in {o["username"] for o in listed}

    status, pending = await staff.security.request_status("POST", "/operator/api/v1/operators", ask)
    assert status == 202
    done = await staff.security2.request(
        "POST", f"/operator/api/v1/approvals/{pending['approval_id']}/approve"
    )
    assert done["status"] == "done" and done["result"]["username"] == name
    officer = await set_up(staff.url, http, name, done["result"]["setup_code"])
    assert (await officer.request("GET", "/operator/api/v1/me"))["roles"] == ["security_officer"]
    created = [d for _, d in await _events_since(app, before, "operator.create")]
    assert created == [
        {"operator": name, "roles": ["security_officer"], "by": staff.security.username}
    ]
    steps = [(d["action"], d["operator"]) for d in await _actions_since(app, before)]
    assert ("approval.approve", staff.security2.username) in steps
    assert ("approval.reject", staff.security2.username) in steps


# -- who did it --------------------------------------------------------------------------


async def test_events_name_the_authenticated_operator_never_a_name_the_client_sends(
    app: Any, staff: Staff, http: aiohttp.ClientSession
) -> None:
    before = await _last_seq(app)
    some_id = str(uuid.uuid4())
    spoofed: list[tuple[OperatorClient, str, Any]] = [
        (staff.revocation, "/operator/api/v1/revocations",
         {"serial": "01", "reason": "superseded", "operator": BOGUS}),
        (staff.revocation, "/operator/api/v1/revocations/bulk",
         {"serials": ["01"], "reason": "superseded", "by": BOGUS}),
        (staff.revocation, "/operator/api/v1/notices",
         {"title": "t", "summary": "s", "measures": "m", "serials": [], "operator": BOGUS}),
        (staff.security, "/operator/api/v1/operators",
         {"username": "spoof.one", "display_name": "S", "roles": ["auditor"], "by": BOGUS}),
        (staff.registration, "/operator/api/v1/proofings",
         {"identity": person(), "document": {"type": "id_card", "number": "N1"},
          "capture_id": some_id, "operator": BOGUS}),
    ]  # fmt: skip
    for op, path, body in spoofed:
        status, answer = await op.request_status("POST", path, body)
        assert (status, answer["code"]) == (400, "invalid_field"), (path, answer)
        assert answer["field"] in ("operator", "by"), answer
    # A multipart burst with an `operator` part is refused too.
    capture = await staff.registration.request("POST", "/operator/api/v1/desk/captures")
    form = aiohttp.FormData()
    form.add_field("frame", photo("obama_1.jpg"), filename="f0.jpg", content_type="image/jpeg")
    form.add_field("operator", BOGUS)
    async with http.post(
        f"{staff.url}/operator/api/v1/desk/captures/{capture['capture_id']}/burst",
        data=form,
        headers={"Authorization": f"Bearer {staff.registration.token}"},
    ) as resp:
        assert resp.status == 400
        assert "unexpected form field" in (await resp.json())["detail"]

    # A decision ignores any name in its body or query.
    status, pending = await staff.revocation.request_status(
        "POST",
        "/operator/api/v1/notices",
        {"title": f"Spoof test {secrets.token_hex(3)}", "summary": "s", "measures": "m",
         "serials": [], "ca_compromise": True},
    )  # fmt: skip
    assert status == 202
    async with http.post(
        f"{staff.url}/operator/api/v1/approvals/{pending['approval_id']}/approve?operator={BOGUS}",
        json={"operator": BOGUS, "by": BOGUS},
        headers={"Authorization": f"Bearer {staff.security.token}"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["status"] == "done"
    # The desk records its officer.
    await staff.registration.proof(person())

    happened = await _events_since(app, before)
    assert BOGUS not in json.dumps([d for _, d in happened])
    steps = [(d["action"], d["operator"]) for d in await _actions_since(app, before)]
    assert steps == [
        ("approval.request", staff.revocation.username),
        ("approval.approve", staff.security.username),
    ]
    (proofed,) = [d for kind, d in happened if kind == "identity.proof"]
    assert proofed["operator"] == staff.registration.username
    (published,) = [d for kind, d in happened if kind == "notice.publish"]
    assert published["actor"] == f"operator:{staff.revocation.username}+{staff.security.username}"
    # Every operator action ever recorded names a real operator account.
    listed = await staff.security.request("GET", "/operator/api/v1/operators")
    names = {o["username"] for o in listed}
    everyone = {d["operator"] for d in await _actions_since(app, 0)}
    assert everyone and everyone <= names


# -- the server CLI -------------------------------------------------------------------------


def _cli(data: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--data-dir", str(data), *args],
        cwd=REPO,
        env=clean_env(),
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _cmdline(pid: int, timeout: float = 10) -> bytes:
    """The process's command line, once the kernel has set it up: a vfork
    parent may wake inside the child's exec, before its argv is in place."""
    deadline = time.monotonic() + timeout
    while not (cmdline := Path(f"/proc/{pid}/cmdline").read_bytes()):
        assert time.monotonic() < deadline, "the child never showed its command line"
        time.sleep(0.01)
    return cmdline


def _create_officer(data: Path, username: str, password: str) -> subprocess.CompletedProcess[str]:
    """`operator create-security-officer`, the password on stdin; while the
    command waits for it, neither the process table nor its environment holds it."""
    proc = subprocess.Popen(
        [*CLI, "--data-dir", str(data), "operator", "create-security-officer",
         "--username", username, "--display-name", username.title(), "--password-stdin"],
        cwd=REPO,
        env=clean_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        cmdline = _cmdline(proc.pid)
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
        table = subprocess.run(
            ["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True
        ).stdout
        assert username.encode() in cmdline  # it is the right process
        assert password.encode() not in cmdline
        assert password.encode() not in environ
        assert password not in table
        out, err = proc.communicate(password + "\n", timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
def test_the_cli_creates_the_first_two_security_officers_and_refuses_a_third(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    init = _cli(data, "init")
    assert init.returncode == 0, init.stderr
    passwords = {f"officer.{i}": f"password {i} {secrets.token_urlsafe(12)}" for i in (1, 2, 3)}

    short = _cli(
        data, "operator", "create-security-officer", "--username", "officer.x",
        "--display-name", "X", "--password-stdin", stdin="short\n",
    )  # fmt: skip
    assert short.returncode == 2 and "12..256 characters" in short.stderr

    for username in ("officer.1", "officer.2"):
        done = _create_officer(data, username, passwords[username])
        assert done.returncode == 0, done.stderr
        (uri,) = [line for line in done.stdout.splitlines() if line.startswith("otpauth://")]
        totp = pyotp.parse_uri(uri)
        assert isinstance(totp, pyotp.TOTP) and totp.name == username
        assert passwords[username] not in done.stdout + done.stderr

    third = _create_officer(data, "officer.3", passwords["officer.3"])
    assert third.returncode == 2
    assert "2 security officers exist" in third.stderr
    assert "otpauth://" not in third.stdout

    db = data / "cloudsign.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT username, roles, status, password_hash FROM operators"
        ).fetchall()
    assert sorted(r[0] for r in rows) == ["officer.1", "officer.2"]
    assert all(json.loads(r[1]) == ["security_officer"] and r[2] == "active" for r in rows)
    assert all(r[3].startswith("$argon2id$") for r in rows)
    # Nowhere in the data dir (database, HSM token, CA), in any form we could grep.
    for path in data.rglob("*"):
        if path.is_file():
            stored = path.read_bytes()
            assert not any(p.encode() in stored for p in passwords.values()), path
