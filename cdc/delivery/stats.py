"""``stats`` frames (opt-in with ``types=stats``): store activity about once per ``stats_interval_ms``.

Shape (no ``id``; never journaled; ``stats`` is not part of "all types")::

    {"type": "stats", "timestamp": ms, "interval_ms": 1000, "events_per_s": float,
     "cf": {"<cf>": {"interval": {"put": n, "delete": n, "merge": n, "delete_range": n, "bytes": n},
                     "total": {...same keys...}}},
     "capture_lag_bytes": n, "capture_lag_ms": n, "wal_bytes": n,
     "sst_bytes": {"<cf>": {"<level>": bytes}}, "running_compactions": n, "subscribers": n}

Sources: per-cf counters of the changes capture journaled (``WalCapture.cf_counts``: ``delete``
includes single deletes, ``put`` includes entity puts; ``bytes`` = key + value bytes, start +
end key for range deletes); ``total`` counts since the daemon started. ``events_per_s``: events
journaled per second over the interval (every type). ``capture_lag_bytes``: WAL bytes written
and not read yet; ``capture_lag_ms``: 0 when caught up, else how long capture has not been
caught up. ``wal_bytes``: size of the live WAL files. ``sst_bytes``: live SST bytes per cf and
level from the MANIFEST the ops watcher follows. ``running_compactions``: compactions started and
not finished per the info LOG. ``subscribers``: open WebSocket subscribers.

Invariants: one computation per interval whatever the number of subscribers; each wire format
(and each distinct ``cf`` filter: a cf-filtered subscriber sees only its column families) is
encoded once and the same bytes go to every subscriber; the frame is one object, also for
``batch=1`` subscribers. Never raises into the server (a failing source is left out).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from cdc.model.context import StatsSources
from cdc.delivery.waits import wait_event
from cdc.model.wire import SubState, control_frame

if TYPE_CHECKING:
    from cdc.delivery.hub import Hub

__all__ = ["StatsCollector", "STATS_TYPE", "OP_KEYS"]

log = logging.getLogger("cdc.stats")

STATS_TYPE = "stats"
OP_KEYS = ("put", "delete", "merge", "delete_range")


def _counts(c: list[int] | None) -> dict[str, int]:
    if c is None:
        return {"put": 0, "delete": 0, "merge": 0, "delete_range": 0, "bytes": 0}
    return {"put": c[0], "delete": c[2], "merge": c[4], "delete_range": c[6], "bytes": c[1] + c[3] + c[5] + c[7]}


def _wal_bytes(wal_dir: str) -> int:
    total = 0
    try:
        with os.scandir(wal_dir) as it:
            for e in it:
                if e.name.endswith(".log") and e.name[:-4].isdigit():
                    try:
                        total += e.stat().st_size
                    except OSError:
                        pass
    except OSError:
        pass
    return total


class StatsCollector:
    """Computes the stats object every interval and sends it to the ``stats`` subscribers."""

    def __init__(self, ctx: StatsSources, hub: Hub, interval_ms: int = 1000) -> None:
        self.ctx = ctx
        self.hub = hub
        self.interval_ms = max(10, int(interval_ms))
        self.latest: dict[str, Any] | None = None
        self.computed = 0  # number of computations (tests)
        self._prev_counts: dict[str, list[int]] = {}
        self._prev_published = hub.published
        self._prev_t = time.monotonic()
        self._updated: asyncio.Event | None = None

    # ------------------------------------------------------------------ computing

    def compute(self) -> dict[str, Any]:
        """One stats object (the interval ends now)."""
        ctx = self.ctx
        now = time.monotonic()
        elapsed = max(1e-6, now - self._prev_t)
        published = self.hub.published
        eps = (published - self._prev_published) / elapsed
        self._prev_t, self._prev_published = now, published
        cap = ctx.capture
        cfs: dict[str, Any] = {}
        lag_bytes = lag_ms = 0
        if cap is not None:
            totals = {k: list(v) for k, v in cap.cf_counts.items()}
            names = set(totals)
            names.update(n for n in cap.cf_names.values() if not n.startswith("\x00"))
            prev = self._prev_counts
            for name in sorted(names):
                t = totals.get(name)
                p = prev.get(name)
                iv = [a - b for a, b in zip(t, p, strict=True)] if t is not None and p is not None else t
                cfs[name] = {"interval": _counts(iv), "total": _counts(t)}
            self._prev_counts = totals
            lag_bytes = int(cap.lag_bytes)
            lag_ms = 0 if lag_bytes <= 0 else int((now - cap.idle_at) * 1000)
        store = ctx.store
        wal_dir = store.wal_dir if store is not None else ctx.config.effective_wal_dir
        sst: dict[str, dict[str, int]] = {}
        running = 0
        ops = ctx.infolog
        if ops is not None:
            sst = ops.sst_bytes()
            running = ops.running_compactions()
        out = {
            "type": STATS_TYPE,
            "timestamp": time.time_ns() // 1_000_000,
            "interval_ms": self.interval_ms,
            "events_per_s": round(eps, 3),
            "cf": cfs,
            "capture_lag_bytes": lag_bytes,
            "capture_lag_ms": lag_ms,
            "wal_bytes": _wal_bytes(wal_dir) if wal_dir else 0,
            "sst_bytes": {k: dict(sorted(v.items(), key=lambda kv: int(kv[0]))) for k, v in sorted(sst.items())},
            "running_compactions": running,
            "subscribers": self.hub.count,
        }
        self.latest = out
        self.computed += 1
        ev = self._updated
        if ev is not None:
            self._updated = None
            ev.set()
        return out

    async def wait_updated(self, timeout_s: float) -> bool:
        """Wait for the next computation (True) or the timeout (False)."""
        if self._updated is None:
            self._updated = asyncio.Event()
        return await wait_event(self._updated, timeout_s)

    @staticmethod
    def restrict(stats: dict[str, Any], cfs: frozenset[str] | None) -> dict[str, Any]:
        """The stats object as a subscriber limited to ``cfs`` may see it."""
        if cfs is None:
            return stats
        out = dict(stats)
        out["cf"] = {k: v for k, v in stats["cf"].items() if k in cfs}
        out["sst_bytes"] = {k: v for k, v in stats["sst_bytes"].items() if k in cfs}
        return out

    # ------------------------------------------------------------------ sending

    def send(self, stats: dict[str, Any]) -> int:
        """Send ``stats`` to every LIVE subscriber whose ``types`` include ``stats``; returns how many."""
        frames: dict[tuple[bool, frozenset[str] | None], list[bytes]] = {}
        n = 0
        for g in list(self.hub._groups.values()):  # noqa: SLF001 - the hub's filter groups
            flt = g.filter
            if flt.types is None or STATS_TYPE not in flt.types:
                continue
            for sub in list(g.subs.values()):
                if sub.state != SubState.LIVE:
                    continue
                k = (sub.text, flt.cfs)
                f = frames.get(k)
                if f is None:
                    f = frames[k] = [control_frame(self.restrict(stats, flt.cfs), not sub.text)]
                sub.push(f, 0, 0)
                n += 1
        return n

    async def run(self, stop: asyncio.Event) -> None:
        """Compute and send every interval until ``stop`` is set."""
        interval = self.interval_ms / 1000.0
        loop = asyncio.get_running_loop()
        next_t = loop.time() + interval
        while not stop.is_set():
            try:
                async with asyncio.timeout(max(0.0, next_t - loop.time())):
                    await stop.wait()
                return
            except TimeoutError:
                pass
            next_t = max(next_t + interval, loop.time() + interval / 2)
            try:
                self.send(self.compute())
            except Exception:  # noqa: BLE001 - stats must never take the server down
                log.exception("stats computation failed")
