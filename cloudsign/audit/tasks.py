"""The audit log's background work: the sequencer (with day close) and the
daily retention. Anchoring runs as `Anchorer.run()`. The app starts these in
its cleanup context (cloudsign/app.py) unless `audit_background_tasks` is off.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from sqlalchemy.exc import SQLAlchemyError

from audit_chain.errors import AuditChainError
from cloudsign.audit.log import AuditLog
from cloudsign.errors import CloudsignError
from hsm_bridge import HsmError

log = logging.getLogger(__name__)

#: Retention runs once a day (and a minute after start-up).
RETENTION_INTERVAL_SECONDS: Final = 24 * 3600.0
RETENTION_FIRST_DELAY_SECONDS: Final = 60.0


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
