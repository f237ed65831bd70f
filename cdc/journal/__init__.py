"""The LMDB journal: the source of truth that assigns event ids.

- ``lmdb_journal``: ``Journal`` (append events + checkpoints in one transaction, replay, retention,
  identity ``epoch``, damage checks before mapping, its directory lock).

Invariant: ids strictly increase and never repeat within one epoch; a commit is all or nothing.
May import: ``cdc.model``, ``cdc.errors``, lmdb. Never capture, ops, delivery or above.
"""
