"""The LMDB journal: the source of truth that assigns event ids.

- ``lmdb_journal``: ``Journal`` (append events + checkpoints in one transaction, replay, retention,
  identity ``epoch``, damage checks before mapping).
- ``lock``: the journal's one lock (``journal.lock``: flock + the holder's pid), taken by the Journal
  and by ``cdc serve``'s preflight.

Invariant: ids strictly increase and never repeat within one epoch; a commit is all or nothing.
May import: ``cdc.model``, ``cdc.errors``, ``cdc.format.speedups`` (the optional C chunk packer), lmdb. Never capture, ops, delivery or above.
"""
