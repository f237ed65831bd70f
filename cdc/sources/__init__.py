"""Reading the store's directory: discovery and file access shared by capture and ops.

- ``store``: which store a directory holds (RocksDB / LevelDB), its WAL files (``archive/``
  included), the MANIFEST via CURRENT, ``IDENTITY``, OPTIONS (WAL archiving), and safe opening
  (regular files only).
- ``manifest``: ``ManifestFollower``, one incremental MANIFEST reader per store, shared by
  capture (state) and the ops compaction fallback (edits, through a cursor).
- ``inotify``: ``WalGrabber``, the Linux inotify thread that opens new WALs at once.

Invariant: read-only on the store, never writes to it, never blocks on a special file. May
import: ``cdc.format``, ``cdc.model``, ``cdc.errors``. Never capture, ops, journal or above.
"""
