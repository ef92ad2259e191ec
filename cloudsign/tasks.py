"""Background tasks: stopping them."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def stop_tasks(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel every task, then wait for each to finish."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
