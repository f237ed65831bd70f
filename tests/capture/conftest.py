"""Fixtures for capture tests: a real store writer, a real journal + bus, WalCapture in-process.

``CaptureRig`` runs the real :class:`cdc.capture.WalCapture` against a real RocksDB/LevelDB
directory with the real :class:`cdc.journal.Journal` and :class:`cdc.bus.EventBus`; health
transitions are recorded (``rig.health.state``) so tests can await them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from cdc.delivery.bus import EventBus  # noqa: E402
from cdc.delivery.health import Health  # noqa: E402
from cdc.delivery.metrics import Metrics  # noqa: E402
from cdc.capture import WalCapture  # noqa: E402
from cdc.model.config import Config  # noqa: E402
from cdc.journal.lmdb_journal import Journal  # noqa: E402
from cdc.model.wire import Record
from cdc.sources.store import detect_store  # noqa: E402
from tests.harness.writers import StoreWriter  # noqa: E402

from tests.harness.waiting import TIMEOUT_FACTOR, wait_for  # noqa: E402,F401  (re-exported)


class HealthLog(Health):
    """The daemon's Health, recording the set / beat calls capture makes."""

    def __init__(self) -> None:
        super().__init__(None)
        self.state: dict[tuple[str, str], tuple[bool, str]] = {}
        self.history: list[tuple[str, str, bool, str]] = []
        self.beats = 0

    def set(self, probe: str, name: str, ok: bool, reason: str = "") -> None:
        super().set(probe, name, ok, reason)
        self.state[(probe, name)] = (ok, reason)
        self.history.append((probe, name, ok, reason))

    def beat(self, name: str) -> None:
        super().beat(name)
        self.beats += 1

    def ok(self, probe: str, name: str) -> bool | None:
        v = self.state.get((probe, name))
        return None if v is None else v[0]


@dataclass
class _Ctx:
    config: Config
    store: Any
    bus: EventBus
    journal: Journal
    health: HealthLog
    metrics: Metrics
    stop: asyncio.Event
    components: list[Any] = field(default_factory=list)


@dataclass
class CaptureRig:
    db: str
    state_dir: str
    records: list[Record] = field(default_factory=list)
    ctx: _Ctx | None = None
    capture: WalCapture | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    health: HealthLog = field(default_factory=HealthLog)

    async def start(self, wal_dir: str | None = None, wait_startup: bool = True, **capture_kw: Any) -> WalCapture:
        """Start capture; by default wait until its first look at the store is done (startup)."""
        cfg = Config(db=self.db, wal_dir=wal_dir, state_dir=self.state_dir, insecure_no_auth=True, rescan_interval_s=0.2)
        store = detect_store(self.db, wal_dir)
        journal = Journal(os.path.join(self.state_dir, "journal"), map_size=256 << 20, sync=False)
        bus = EventBus(journal, on_commit=self.records.extend)
        self.health = HealthLog()
        self.records.clear()  # events of this run (journal_events() has all runs)
        self.ctx = _Ctx(cfg, store, bus, journal, self.health, Metrics(), asyncio.Event())
        self.capture = WalCapture(**capture_kw)
        self.tasks = [
            asyncio.create_task(bus.run(), name="bus"),
            asyncio.create_task(self.capture.run(self.ctx), name="capture"),
        ]
        if wait_startup:
            await wait_for(lambda: self.health.ok("startup", "capture"), what="capture startup")
        return self.capture

    async def stop(self) -> None:
        """Graceful stop: capture ends, the bus drains, the journal closes."""
        if self.ctx is None:
            return
        self.ctx.stop.set()
        await asyncio.wait_for(self.tasks[1], 10)
        await self.ctx.bus.close()
        await asyncio.wait_for(self.tasks[0], 10)
        self.ctx.journal.close()
        self.ctx = None

    async def crash(self) -> None:
        """Like kill -9 of the daemon: tasks cancelled, nothing flushed beyond what was committed."""
        if self.ctx is None:
            return
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self.capture.close()  # type: ignore[union-attr]
        self.ctx.journal.close()
        self.ctx = None

    def key_changes(self) -> list[dict[str, Any]]:
        import msgspec

        out = []
        for r in self.records:
            if r.type == "key_change":
                out.append(msgspec.json.decode(r.frame(1)))
        return out

    def of_type(self, etype: str) -> list[dict[str, Any]]:
        import msgspec

        return [msgspec.json.decode(r.frame(1)) for r in self.records if r.type == etype]

    def journal_events(self) -> list[dict[str, Any]]:
        """Everything committed in the journal (across restarts), in id order."""
        import msgspec

        if self.ctx is not None:
            return [msgspec.json.decode(r.frame(1)) for r in self.ctx.journal.read(0, 10_000_000)]
        j = Journal(os.path.join(self.state_dir, "journal"), sync=False)
        try:
            return [msgspec.json.decode(r.frame(1)) for r in j.read(0, 10_000_000)]
        finally:
            j.close()


@pytest.fixture
async def rig(tmp_path: Any) -> AsyncIterator[CaptureRig]:
    r = CaptureRig(db=str(tmp_path / "db"), state_dir=str(tmp_path / "state"))
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture
def writer_factory(tmp_path: Any) -> Any:
    writers: list[StoreWriter] = []

    def make(path: str | None = None, **kw: Any) -> StoreWriter:
        w = StoreWriter(path or str(tmp_path / "db"), **kw).start()
        writers.append(w)
        return w

    yield make
    for w in writers:
        w.kill()
