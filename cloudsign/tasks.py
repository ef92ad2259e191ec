"""Background tasks: stopping them."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def stop_tasks(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel every task, then wait for each to finish. A task that had
    already failed is logged, not raised: stopping must reach the other
    tasks, and the caller (a leader stepping down, a cleanup context) must
    not die of an error that is not its own."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("task %s had failed before it was stopped", task.get_name())
