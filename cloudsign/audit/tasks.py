"""The audit log's place in the app: typed app keys, its cleanup contexts and
the background tasks (sequencer + day close, anchoring).

Tests and tools may set `app[AUDIT_CLOCK]` before start-up to run the log on
another clock (days pass without sleeping).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from audit_chain.errors import AuditChainError
from cloudsign.appkeys import DATABASE, HSM, SETTINGS
from cloudsign.audit.anchoring import Anchorer
from cloudsign.audit.log import AuditLog, Clock, utc_now
from cloudsign.errors import CloudsignError
from hsm_bridge import HsmError

log = logging.getLogger(__name__)

AUDIT_LOG = web.AppKey("audit_log", AuditLog)
ANCHORER = web.AppKey("audit_anchorer", Anchorer)
AUDIT_CLOCK: web.AppKey[Clock] = web.AppKey("audit_clock")
SEQUENCER_TASK: web.AppKey[asyncio.Task[None]] = web.AppKey("audit_sequencer_task")
ANCHOR_TASK: web.AppKey[asyncio.Task[None]] = web.AppKey("audit_anchor_task")


async def sequencer_round(audit_log: AuditLog) -> None:
    """Sequence what is pending, close the days that ended."""
    await audit_log.sequence_pending()
    await audit_log.close_due_days()


async def run_sequencer(audit_log: AuditLog, interval: float) -> None:
    while True:
        try:
            await sequencer_round(audit_log)
        except (CloudsignError, AuditChainError, HsmError, SQLAlchemyError, OSError) as e:
            log.warning("audit sequencer round failed: %s", e)
        await asyncio.sleep(interval)


#: Retention runs once a day (and a minute after start-up).
RETENTION_INTERVAL_SECONDS = 24 * 3600.0
RETENTION_FIRST_DELAY_SECONDS = 60.0


async def run_retention(audit_log: AuditLog) -> None:
    """Daily: drop leaf contents past their retention (hashes stay, proofs work)."""
    await asyncio.sleep(RETENTION_FIRST_DELAY_SECONDS)
    while True:
        try:
            dropped = await audit_log.apply_retention()
            if dropped:
                log.info("audit retention: dropped the contents of %d leaves", dropped)
        except (CloudsignError, AuditChainError, HsmError, SQLAlchemyError, OSError) as e:
            log.warning("audit retention failed: %s", e)
        await asyncio.sleep(RETENTION_INTERVAL_SECONDS)


async def audit_resources(app: web.Application) -> AsyncIterator[None]:
    """The log (HSM keys, tree from the table) and the anchorer."""
    settings = app[SETTINGS]
    now = app.get(AUDIT_CLOCK, utc_now)
    audit_log = AuditLog(app[DATABASE], app[HSM], settings, now=now)
    await audit_log.start()
    anchorer = Anchorer(app[DATABASE], app[HSM], settings, audit_log, now=now)
    await anchorer.start()
    app[AUDIT_LOG] = audit_log
    app[ANCHORER] = anchorer
    try:
        yield
    finally:
        await anchorer.close()


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def audit_tasks(app: web.Application) -> AsyncIterator[None]:
    """The sequencer and anchoring loops, unless `audit_background_tasks` is off."""
    settings = app[SETTINGS]
    if not settings.audit_background_tasks:
        yield
        return
    sequencer = asyncio.create_task(
        run_sequencer(app[AUDIT_LOG], settings.audit_sequence_interval_ms / 1000),
        name="audit-sequencer",
    )
    anchoring = asyncio.create_task(app[ANCHORER].run(), name="audit-anchoring")
    retention = asyncio.create_task(run_retention(app[AUDIT_LOG]), name="audit-retention")
    app[SEQUENCER_TASK] = sequencer
    app[ANCHOR_TASK] = anchoring
    try:
        yield
    finally:
        await _stop(retention)
        await _stop(anchoring)
        await _stop(sequencer)
