"""Bounded waiting on a condition, shared by every test area (no fixed sleeps in tests).

Bounds scale with ``CDC_TEST_TIMEOUT_FACTOR`` (default 1) for slow machines.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Callable

TIMEOUT_FACTOR = float(os.environ.get("CDC_TEST_TIMEOUT_FACTOR", "1"))


def _expired(deadline: float, timeout: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise AssertionError(f"timed out after {timeout * TIMEOUT_FACTOR:.1f} s waiting for {what}")


async def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition", interval: float = 0.01) -> Any:
    """Poll ``cond`` (sync) every ``interval`` s until truthy (returns it) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout * TIMEOUT_FACTOR
    while True:
        v = cond()
        if v:
            return v
        _expired(deadline, timeout, what)
        await asyncio.sleep(interval)


def wait_for_sync(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition", interval: float = 0.02) -> Any:
    """The blocking twin of :func:`wait_for`, for synchronous tests and fixtures."""
    deadline = time.monotonic() + timeout * TIMEOUT_FACTOR
    while True:
        v = cond()
        if v:
            return v
        _expired(deadline, timeout, what)
        time.sleep(interval)
