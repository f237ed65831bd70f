"""WAL capture: follow the store's write-ahead logs and turn every committed change into exactly
one ``key_change`` event (or a loud ``capture_gap`` / ``store_reset``).

- ``wal_capture``: ``WalCapture``, the component (watching, tailing, numbering, 2PC, checkpoints,
  health conditions).

Invariant: events and the checkpoint that covers them are committed in one journal transaction;
a record is skipped only when its position proves it delivered. Reaches the daemon only through
the ``cdc.model.context.Context`` Protocol. May import: ``cdc.sources``, ``cdc.format``,
``cdc.model``, ``cdc.errors``. Never ``cdc.ops``, ``cdc.journal`` or anything above.
"""
