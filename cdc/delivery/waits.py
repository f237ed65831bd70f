"""Bounded waits shared by the hub and the stats computer."""

from __future__ import annotations

import asyncio


async def wait_event(ev: asyncio.Event, timeout_s: float) -> bool:
    """Wait until ``ev`` is set (True) or ``timeout_s`` passed (False)."""
    try:
        async with asyncio.timeout(timeout_s):
            await ev.wait()
        return True
    except TimeoutError:
        return False
