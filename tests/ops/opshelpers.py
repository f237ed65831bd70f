"""Helpers for the ops tests: run the ops components against the real journal + bus (the
full-daemon tests use tests/conftest.py's daemon fixtures)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from cdc.delivery.bus import EventBus  # noqa: E402
from cdc.delivery.health import Health  # noqa: E402
from cdc.delivery.metrics import Metrics  # noqa: E402
from cdc.model.config import Config  # noqa: E402
from cdc.journal.lmdb_journal import Journal  # noqa: E402
from cdc.model.wire import Record

from tests.harness.waiting import wait_for as _wait_for  # noqa: E402


# The ops tests wait on slower things (compactions, LOG flushes): a longer default bound.
async def wait_for(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    return await _wait_for(cond, timeout, what, 0.02)


class Ctx:
    """The parts of AppContext the ops components use (real journal and bus)."""

    def __init__(self, config: Config, journal: Journal, bus: EventBus) -> None:
        self.config = config
        self.journal = journal
        self.bus = bus
        self.stop = asyncio.Event()
        self.store: Any = None
        self.health = Health(None)
        self.metrics = Metrics()
        self.components: list[Any] = []


class Harness:
    def __init__(self, ctx: Ctx, records: list[Record], components: list[Any]) -> None:
        self.ctx = ctx
        self.records = records
        self.components = components

    def events(self, *types: str) -> list[dict[str, Any]]:
        out = [json.loads(r.wire) for r in self.records]
        return [e for e in out if not types or e["type"] in types]


@contextlib.asynccontextmanager
async def run_components(config: Config, state_dir: str, classes: list[type]) -> AsyncIterator[Harness]:
    """Run ``classes`` (ops components) with a real Journal + EventBus until the block exits."""
    journal = Journal(os.path.join(state_dir, "journal"), map_size=64 << 20)
    records: list[Record] = []
    bus = EventBus(journal, on_commit=records.extend)
    ctx = Ctx(config, journal, bus)
    try:
        from cdc.sources.store import detect_store

        ctx.store = detect_store(config.db)
    except Exception:  # not a store yet: the components cope
        ctx.store = None
    comps = [cls(config) for cls in classes]
    bus_task = asyncio.create_task(bus.run())
    tasks = [asyncio.create_task(c.run(ctx)) for c in comps]
    try:
        yield Harness(ctx, records, comps)
    finally:
        ctx.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        await bus.flush()
        close = getattr(bus, "close", None)
        if close is not None:
            res = close()
            if asyncio.iscoroutine(res):
                await res
        bus_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bus_task
        journal.close()
