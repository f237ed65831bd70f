"""Helpers shared by the ops components: clock, metrics counting, stop-aware sleep.

Invariant: best effort around the components (metrics never stop one); no file I/O.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

__all__ = ["now_ms", "count_events", "sleep_or_stop"]


def now_ms() -> int:
    return int(time.time() * 1000)


def count_events(ctx: Any, events: list[Any]) -> None:
    """Count emitted events in ``ctx.metrics.ops_events`` (label ``type``) when present."""
    counter = getattr(getattr(ctx, "metrics", None), "ops_events", None)
    if counter is None or not events:
        return
    by_type: dict[str, int] = {}
    for e in events:
        t = e.__struct_config__.tag
        by_type[t] = by_type.get(t, 0) + 1
    try:
        for t, n in by_type.items():
            counter.labels(type=t).inc(n)
    except Exception:  # metrics must never stop the component
        pass


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds``; True when stop was set."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
        return True
    except TimeoutError:
        return False

