"""Helpers shared by the ops components: clock, metrics counting, stop-aware sleep.

Invariant: no file I/O.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cdc.model.context import Context

__all__ = ["now_ms", "count_events", "sleep_or_stop"]


def now_ms() -> int:
    return int(time.time() * 1000)


def count_events(ctx: Context, events: list[Any]) -> None:
    """Count emitted events in ``cdc_ops_events_total{type}``."""
    if not events:
        return
    by_type: dict[str, int] = {}
    for e in events:
        t = e.__struct_config__.tag
        by_type[t] = by_type.get(t, 0) + 1
    ctx.metrics.count_ops(by_type)


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds``; True when stop was set."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
        return True
    except TimeoutError:
        return False

