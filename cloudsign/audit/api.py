"""HTTP endpoints of the audit log: public ones, the owner's, the auditors'.

Public, read-only, no authentication; only public leaves (v2: index, type,
time, commitment; v1: the hash alone):

GET /log/keys                       origin, note verifier key, anchoring address, contract
GET /log/checkpoint                 the latest checkpoint
GET /log/checkpoints/{day}          one day's checkpoint
GET /log/anchors/{day}              that day's anchor (contract, tx, block, confirmations)
GET /log/proof?index=N | ?leaf_hash=HEX   inclusion bundle (`audit-chain prove` input)
GET /log/consistency?first=N&second=M     consistency proof between two sizes
GET /log/exports/{day}              the day's public export (JSON lines, streamed)

The owner (Bearer token or portal session), their own events only:

GET /api/v1/me/log/events[?after=N&limit=M]   leaves, openings, inclusion bundles

Auditors (signed-in operators with the auditor role, on the operator listener):

GET /operator/api/v1/audit/log/exports/{day}  the day's full export: every opening, v1 in the clear
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
from datetime import date
from pathlib import Path
from typing import Final

from aiohttp import web

from audit_chain.days import format_offset
from cloudsign.accounts import current_owner
from cloudsign.appkeys import ANCHORER, AUDIT_LOG, SETTINGS
from cloudsign.audit.log import MAX_OWNER_PAGE
from cloudsign.errors import NotFoundError, ValidationError
from cloudsign.operators import Role, current_operator
from cloudsign.web.inputs import check_text
from cloudsign.web.params import query_int

routes = web.RouteTableDef()
#: Routes of the operator listener.
operator_routes = web.RouteTableDef()

_HEX32 = re.compile(r"[0-9a-fA-F]{64}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MAX_INDEX: Final = 2**63 - 1
EXPORT_CONTENT_TYPE: Final = "application/x-ndjson"
DEFAULT_OWNER_PAGE: Final = 100
#: Answers that hold openings are the owner's or an auditor's alone.
PRIVATE: Final = {"Cache-Control": "no-store"}


def _day(request: web.Request) -> date:
    text = check_text(request.match_info["day"], "day", max_len=10, pattern=_DAY)
    try:
        return date.fromisoformat(text)  # the pattern fixed the shape; this checks the calendar
    except ValueError as e:
        raise ValidationError("day must be YYYY-MM-DD", field="day") from e


@routes.get("/log/keys")
async def keys(request: web.Request) -> web.Response:
    audit_log = request.app[AUDIT_LOG]
    anchorer = request.app[ANCHORER]
    return web.json_response(
        {
            "origin": audit_log.origin,
            "log_key": audit_log.verifier.vkey,
            "utc_offset": format_offset(audit_log.clock.utc_offset),
            "anchor_address": anchorer.address,
            "contract": anchorer.contract_address,
            "chain_id": anchorer.chain_id,
            "confirmations_required": anchorer.depth,
            # Where a browser can read the anchors itself (the auditor page).
            "chain_rpc_url": request.app[SETTINGS].public_chain_rpc_url or None,
        }
    )


@routes.get("/log/checkpoint")
async def latest_checkpoint(request: web.Request) -> web.Response:
    cp = await request.app[AUDIT_LOG].latest_checkpoint()
    if cp is None:
        raise NotFoundError("no day has closed yet")
    return web.json_response(cp.to_json_obj())


@routes.get("/log/checkpoints/{day}")
async def day_checkpoint(request: web.Request) -> web.Response:
    day = _day(request)
    cp = await request.app[AUDIT_LOG].checkpoint(day)
    if cp is None:
        raise NotFoundError(f"day {day.isoformat()} has no checkpoint")
    return web.json_response(cp.to_json_obj())


@routes.get("/log/anchors/{day}")
async def day_anchor(request: web.Request) -> web.Response:
    day = _day(request)
    anchorer = request.app[ANCHORER]
    state = await anchorer.anchor_state(day)
    if state is None:
        raise NotFoundError(f"day {day.isoformat()} is not anchored yet")
    body = state.to_json_obj()
    head = await anchorer.head_block()
    if head is not None and state.block_number is not None and state.status != "pending":
        body["confirmations"] = max(0, head - state.block_number + 1)
    return web.json_response(body)


@routes.get("/log/proof")
async def inclusion_proof(request: web.Request) -> web.Response:
    audit_log = request.app[AUDIT_LOG]
    if "leaf_hash" in request.query:
        text = request.query["leaf_hash"]
        if not _HEX32.fullmatch(text):
            raise ValidationError("leaf_hash must be 64 hex digits", field="leaf_hash")
        index = await audit_log.leaf_index_of(bytes.fromhex(text))
    elif "index" in request.query:
        index = query_int(request, "index", high=MAX_INDEX)
    else:
        raise ValidationError("give index or leaf_hash", field="index")
    bundle = await audit_log.inclusion_bundle(index)
    return web.Response(text=bundle.to_json(), content_type="application/json")


@routes.get("/log/consistency")
async def consistency(request: web.Request) -> web.Response:
    first = query_int(request, "first", high=MAX_INDEX)
    second = query_int(request, "second", high=MAX_INDEX)
    proof = await request.app[AUDIT_LOG].consistency_proof(first, second)
    return web.json_response({"first": first, "second": second, "proof": [p.hex() for p in proof]})


async def _send_export(request: web.Request, day: date, *, full: bool) -> web.StreamResponse:
    audit_log = request.app[AUDIT_LOG]
    # Written (and checked against the signed root) before the first byte is sent.
    with tempfile.TemporaryDirectory(prefix="cloudsign-export-") as tmp:
        path = await audit_log.write_export(day, Path(tmp) / f"{day.isoformat()}.jsonl", full=full)
        name = f"{day.isoformat()}{'.full' if full else ''}.jsonl"
        headers = {
            "Content-Type": EXPORT_CONTENT_TYPE,
            "Content-Disposition": f'attachment; filename="{name}"',
        }
        if full:
            headers.update(PRIVATE)
        response = web.StreamResponse(headers=headers)
        response.content_length = path.stat().st_size
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        with contextlib.closing(path.open("rb")) as f:
            # File reads off the loop: a day's export can be hundreds of MB.
            while chunk := await loop.run_in_executor(None, f.read, 1 << 20):
                await response.write(chunk)
        await response.write_eof()
        return response


@routes.get("/log/exports/{day}")
async def day_export(request: web.Request) -> web.StreamResponse:
    return await _send_export(request, _day(request), full=False)


@operator_routes.get("/operator/api/v1/audit/log/exports/{day}")
async def auditor_day_export(request: web.Request) -> web.StreamResponse:
    """The full export, openings included: auditors only."""
    await current_operator(request, Role.AUDITOR)
    return await _send_export(request, _day(request), full=True)


@routes.get("/api/v1/me/log/events")
async def my_log_events(request: web.Request) -> web.Response:
    """The owner's own events (never another's): leaf, opening and, once the
    day has closed, the inclusion bundle; `after` pages on from a leaf index."""
    owner = await current_owner(request)
    after = query_int(request, "after", high=MAX_INDEX - 1) if "after" in request.query else None
    limit = (
        query_int(request, "limit", low=1, high=MAX_OWNER_PAGE)
        if "limit" in request.query
        else DEFAULT_OWNER_PAGE
    )
    start = 0 if after is None else after + 1
    found = await request.app[AUDIT_LOG].owner_events(owner.id, start=start, limit=limit)
    return web.json_response(
        {
            "events": [e.to_json_obj() for e in found],
            "next_after": found[-1].index if len(found) == limit else None,
        },
        headers=PRIVATE,
    )
