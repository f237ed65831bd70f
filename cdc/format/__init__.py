"""Pure decoders of the store's on-disk formats: bytes in, records out.

- ``blocks``: the 32 KiB log-block framing shared by WAL and MANIFEST files (CRC32C, legacy and
  recyclable headers, fragments), with resume offsets.
- ``wal``: WriteBatch decoding, sequence numbering (per key / per batch), compression, UDT.
- ``manifest``: VersionEdit decoding and the column-family / file state it builds.
- ``infolog``: info LOG lines -> typed compaction/flush notices.

Invariant: no I/O, no clocks, no threads, no logging; the same bytes always give the same records,
whatever way they are split. May import: the stdlib's pure parts, msgspec, crc32c, zstandard,
``cdc.errors``. Never ``cdc.model`` or anything above.
"""
