"""Heartbeats for the one long activity (the weekly report reads every review's history).

A task the server records as started but never delivers (seen on a saturated dev server) waits
out its start-to-close timeout before it is retried. A short heartbeat timeout bounds that wait
for long work: no heartbeat within it, and the server retries the task at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio import activity


@asynccontextmanager
async def heartbeating(timeout: timedelta) -> AsyncIterator[None]:
    """Heartbeat while the body runs (an async activity's own event loop), several times within the
    workflow's heartbeat `timeout`, so one late beat on a busy machine costs nothing."""
    every = timeout.total_seconds() / 6

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    beater = asyncio.create_task(beat())
    try:
        yield
    finally:
        beater.cancel()
