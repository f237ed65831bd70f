"""Operational events: compactions and flushes (info LOG, MANIFEST fallback) and snapshots.

- ``infolog``: ``InfoLogWatcher`` (info LOG tailing, compaction progress, MANIFEST fallback
  through the follower shared with capture, ``cdc.sources.manifest``).
- ``snapshots``: ``SnapshotWatcher`` (checkpoints and backups).
- ``common``: clock, metrics counting, stop-aware sleep.
- ``watchers``: ``COMPONENTS`` (what the daemon runs) and the old import path.

Invariant: every notice is emitted once, in order with the key changes around it, across
restarts. Reaches the daemon only through the ``Context`` Protocol. May import: ``cdc.sources``,
``cdc.format``, ``cdc.model``, ``cdc.errors``. Never ``cdc.capture``, ``cdc.journal`` or above.
"""
