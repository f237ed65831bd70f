"""The ops components, as the daemon runs them.

- :class:`cdc.ops.infolog.InfoLogWatcher`: compaction / flush events (info LOG + MANIFEST fallback).
- :class:`cdc.ops.snapshots.SnapshotWatcher`: snapshot events.

Each is built as ``Cls(ctx.config)`` and run with ``await comp.run(ctx)`` until ``ctx.stop`` is
set; they never raise on a file's content and persist their position only through
``ctx.bus.emit(events, checkpoints=...)``.
"""

from __future__ import annotations

from cdc.ops.infolog import InfoLogWatcher, find_info_log
from cdc.ops.snapshots import SnapshotWatcher

__all__ = ["InfoLogWatcher", "SnapshotWatcher", "COMPONENTS", "find_info_log"]

COMPONENTS: tuple[type, ...] = (InfoLogWatcher, SnapshotWatcher)
"""Components the app runs: each built as ``Cls(ctx.config)``, run with ``await comp.run(ctx)``."""

