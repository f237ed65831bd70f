"""WAL capture: follow the store's write-ahead logs and turn every committed change into exactly
one ``key_change`` event (or a loud ``capture_gap`` / ``store_reset``).

- ``component``: ``WalCapture``, the component (the loop, the pump, delivery, the MANIFEST view),
  made of one mixin per concern:
  ``walset`` (open WALs, directory scans, the current WAL), ``watching`` (watchfiles hints, the
  inotify grabber), ``sealing`` (when a WAL is complete; torn and corrupt records),
  ``identity`` (store identity, ``store_reset``, WAL archiving, lost WALs), ``health``
  (conditions, hold timers, lag, metrics).
- ``build``: batches -> events (the hot loop; pure), origin / batch marks, per-cf counters.
- ``twophase``: TransactionDB prepared sections held until their commit (pure).
- ``checkpoint``: the ``wal`` / ``wal_2pc`` / ``wal.store`` checkpoint codecs (pure; every
  version ever written still decodes).

Invariant: events and the checkpoint that covers them are committed in one journal transaction;
a record is skipped only when its position proves it delivered. Reaches the daemon only through
the ``cdc.model.context.Context`` Protocol. May import: ``cdc.sources``, ``cdc.format``,
``cdc.model``, ``cdc.errors``. Never ``cdc.ops``, ``cdc.journal`` or anything above.
"""

from cdc.capture.checkpoint import (
    CHECKPOINT_NAME,
    IDENTITY_CHECKPOINT,
    PREPARED_CHECKPOINT_NAME,
    WalCheckpoint,
    decode_checkpoint,
    decode_prepared,
    encode_checkpoint,
    encode_prepared,
)
from cdc.capture.component import WalCapture

__all__ = [
    "WalCapture",
    "WalCheckpoint",
    "encode_checkpoint",
    "decode_checkpoint",
    "encode_prepared",
    "decode_prepared",
    "CHECKPOINT_NAME",
    "IDENTITY_CHECKPOINT",
    "PREPARED_CHECKPOINT_NAME",
]
