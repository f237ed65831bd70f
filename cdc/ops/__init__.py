"""Operational events: compactions and flushes (info LOG, MANIFEST fallback) and snapshots.

- ``watchers``: ``InfoLogWatcher``, ``SnapshotWatcher`` (the components; checkpointed).

Invariant: every notice is emitted once, in order with the key changes around it, across
restarts. Reaches the daemon only through the ``Context`` Protocol. May import: ``cdc.sources``,
``cdc.format``, ``cdc.model``, ``cdc.errors``. Never ``cdc.capture``, ``cdc.journal`` or above.
"""
