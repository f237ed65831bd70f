"""WAL decoding: WriteBatch records inside the log framing (pure).

Rule: this module performs no I/O, reads no clock and logs nothing.

A WAL logical record is one WriteBatch (RocksDB db/write_batch.cc; LevelDB db/write_batch.cc):
fixed64 sequence, fixed32 count, then tagged records. Column-family variants carry a varint32
cf id before the key. :func:`decode_write_batch` numbers records per key (seq_per_key mode): the
k-th consuming record gets ``seq + k``; LogData, Noop and the 2PC markers consume none, and
neither do data records inside a prepare section (BeginPrepare..EndPrepare). Those get
``seq == -1``.

A TransactionDB with WRITE_PREPARED / WRITE_UNPREPARED numbers per (sub-)batch instead
(``seq_per_batch``): :func:`number_per_batch` renumbers a decoded batch that way,
:func:`seq_scheme_evidence` says what one record reveals about the scheme, and
:class:`SeqNumbering` (a small state machine) combines both for a stream of records.

Invariants:

* :func:`decode_write_batch` returns a :class:`Batch` or raises :class:`FormatError` (an unknown
  tag, a short field, a count that disagrees with the records); it never guesses.
* :class:`WalReader` adds SetCompressionType (zstd), user-defined-timestamp sizes and
  PredecessorWALInfo records on top of :class:`~cdc.logformat.LogReader`; like it, it never
  raises on content, returns what precedes a bad record and reports the bad record's offset.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from cdc.errors import CorruptRecord, FormatError, UnsupportedRecord
from crc32c import crc32c

from cdc.format.speedups import C as _C
from cdc.format.blocks import (
    PREDECESSOR_WAL_INFO_TYPE,
    RECYCLABLE_USER_DEFINED_TIMESTAMP_SIZE_TYPE,
    RECYCLE_PREDECESSOR_WAL_INFO_TYPE,
    SET_COMPRESSION_TYPE,
    USER_DEFINED_TIMESTAMP_SIZE_TYPE,
    LogReader,
)

_BATCH_HEADER = struct.Struct("<QI")
_unpack_batch_header = _BATCH_HEADER.unpack_from
_U32 = struct.Struct("<I")
_PREDECESSOR = struct.Struct("<QQQ")
_UDT_ENTRY = struct.Struct("<IH")

WRITE_BATCH_HEADER_SIZE = 12
NO_COMPRESSION = 0
ZSTD_COMPRESSION = 7

# ValueType tags as written to the WAL (db/dbformat.h).
TAG_DELETION = 0x00
TAG_VALUE = 0x01
TAG_MERGE = 0x02
TAG_LOG_DATA = 0x03
TAG_CF_DELETION = 0x04
TAG_CF_VALUE = 0x05
TAG_CF_MERGE = 0x06
TAG_SINGLE_DELETION = 0x07
TAG_CF_SINGLE_DELETION = 0x08
TAG_BEGIN_PREPARE_XID = 0x09
TAG_END_PREPARE_XID = 0x0A
TAG_COMMIT_XID = 0x0B
TAG_ROLLBACK_XID = 0x0C
TAG_NOOP = 0x0D
TAG_CF_RANGE_DELETION = 0x0E
TAG_RANGE_DELETION = 0x0F
TAG_CF_BLOB_INDEX = 0x10
TAG_BLOB_INDEX = 0x11
TAG_BEGIN_PERSISTED_PREPARE_XID = 0x12
TAG_BEGIN_UNPREPARE_XID = 0x13
TAG_COMMIT_XID_AND_TIMESTAMP = 0x15
TAG_WIDE_COLUMN_ENTITY = 0x16
TAG_CF_WIDE_COLUMN_ENTITY = 0x17
TAG_VALUE_PREFERRED_SEQNO = 0x18
TAG_CF_VALUE_PREFERRED_SEQNO = 0x19

# tag -> (op name, has cf id, number of varstring fields after it, consumes a seq)
_TAGS: dict[int, tuple[str, bool, int, bool]] = {
    TAG_DELETION: ("delete", False, 1, True),
    TAG_VALUE: ("put", False, 2, True),
    TAG_MERGE: ("merge", False, 2, True),
    TAG_LOG_DATA: ("log_data", False, 1, False),
    TAG_CF_DELETION: ("delete", True, 1, True),
    TAG_CF_VALUE: ("put", True, 2, True),
    TAG_CF_MERGE: ("merge", True, 2, True),
    TAG_SINGLE_DELETION: ("single_delete", False, 1, True),
    TAG_CF_SINGLE_DELETION: ("single_delete", True, 1, True),
    TAG_BEGIN_PREPARE_XID: ("begin_prepare", False, 0, False),
    TAG_END_PREPARE_XID: ("end_prepare", False, 1, False),
    TAG_COMMIT_XID: ("commit", False, 1, False),
    TAG_ROLLBACK_XID: ("rollback", False, 1, False),
    TAG_NOOP: ("noop", False, 0, False),
    TAG_CF_RANGE_DELETION: ("delete_range", True, 2, True),
    TAG_RANGE_DELETION: ("delete_range", False, 2, True),
    TAG_CF_BLOB_INDEX: ("blob_index", True, 2, True),
    TAG_BLOB_INDEX: ("blob_index", False, 2, True),
    TAG_BEGIN_PERSISTED_PREPARE_XID: ("begin_persisted_prepare", False, 0, False),
    TAG_BEGIN_UNPREPARE_XID: ("begin_unprepare", False, 0, False),
    TAG_COMMIT_XID_AND_TIMESTAMP: ("commit_with_ts", False, 2, False),
    TAG_WIDE_COLUMN_ENTITY: ("put_entity", False, 2, True),
    TAG_CF_WIDE_COLUMN_ENTITY: ("put_entity", True, 2, True),
    TAG_VALUE_PREFERRED_SEQNO: ("timed_put", False, 2, True),
    TAG_CF_VALUE_PREFERRED_SEQNO: ("timed_put", True, 2, True),
}
_LEVELDB_TAGS = {TAG_DELETION: "delete", TAG_VALUE: "put"}
_BEGIN_PREPARE_TAGS = frozenset(
    {TAG_BEGIN_PREPARE_XID, TAG_BEGIN_PERSISTED_PREPARE_XID, TAG_BEGIN_UNPREPARE_XID}
)

#: Op names of the markers (no key/value of their own; xid in ``key`` where there is one).
MARKER_OPS = frozenset(
    {
        "log_data",
        "begin_prepare",
        "begin_persisted_prepare",
        "begin_unprepare",
        "end_prepare",
        "commit",
        "rollback",
        "noop",
        "commit_with_ts",
    }
)


class Op(NamedTuple):
    """One WriteBatch record.

    Attributes:
        seq: this record's own sequence number (-1 for records that consume none).
        op: put delete single_delete merge delete_range log_data put_entity blob_index timed_put
            begin_prepare begin_persisted_prepare begin_unprepare end_prepare commit rollback
            noop commit_with_ts.
        cf_id: column family id (0 = default).
        key: user key (without a user-defined timestamp); the xid for 2PC markers; the blob for
            log_data; None for begin_prepare/noop.
        value: value / merge operand / entity bytes / blob index / timed_put value; the commit
            timestamp for commit_with_ts.
        end_key: exclusive end of a delete_range.
        ts: user-defined timestamp split off the key (UDT column families); for timed_put the
            fixed64 little-endian write time.
    """

    seq: int
    op: str
    cf_id: int
    key: bytes | None
    value: bytes | None
    end_key: bytes | None
    ts: bytes | None = None


class Batch(NamedTuple):
    """One decoded WAL logical record (a WriteBatch, often a merged write group).

    Attributes:
        log_number: WAL number it came from (-1 if unknown).
        offset: file offset of the logical record (-1 if unknown).
        seq: header sequence (first sequence number of the group).
        count: header count (number of data records).
        ops: the records, in order.
    """

    log_number: int
    offset: int
    seq: int
    count: int
    ops: list[Op]


def _varint_slow(data: bytes, pos: int, limit: int) -> tuple[int, int]:
    """Decode a varint starting at ``pos`` whose first byte has the continuation bit set."""
    result = 0
    shift = 0
    n = len(data)
    while True:
        if pos >= n or shift > limit:
            raise IndexError("varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Return (value, next position) of a varint64 at ``pos``; IndexError when short/overlong."""
    return _varint_slow(data, pos, 63)


def decode_write_batch(
    payload: bytes,
    *,
    log_number: int = -1,
    offset: int = -1,
    leveldb: bool = False,
    ts_sizes: dict[int, int] | None = None,
) -> Batch:
    """Decode one WriteBatch.

    Args:
        payload: the logical record's bytes (decompressed).
        log_number: WAL number, for errors and the Batch.
        offset: file offset of the record, for errors and the Batch.
        leveldb: LevelDB WriteBatch (Put/Delete only, no column families).
        ts_sizes: cf id -> user-defined timestamp size (from the WAL's UDT-size records); keys of
            those column families have the timestamp split off into ``Op.ts``.

    Returns:
        The batch with every record's own sequence number.

    Raises:
        CorruptRecord: short header or field, unknown tag, count mismatch.
    """
    b = _decode_batch(payload, log_number, offset, leveldb)
    if ts_sizes:
        b = b._replace(ops=_split_timestamps(b.ops, ts_sizes, log_number, offset))
    return b


_new = tuple.__new__


def _decode_batch(payload: bytes, log_number: int, offset: int, leveldb: bool) -> Batch:
    """decode_write_batch without keyword arguments or timestamps (the hot path)."""
    n = len(payload)
    if n < WRITE_BATCH_HEADER_SIZE:
        raise CorruptRecord(
            f"write batch too small ({n} bytes)", log_number=log_number, offset=offset
        )
    seq0, count = _unpack_batch_header(payload, 0)
    if count == 1 and n > 14 and payload[12] == 1:
        # A single default-CF Put (the most common WAL record): no loop.
        ln = payload[13]
        pos = 14
        if ln >= 0x80:
            try:
                ln, pos = _varint_slow(payload, 13, 28)
            except IndexError:
                ln = n
        e = pos + ln
        if e < n:
            ln = payload[e]
            p = e + 1
            if ln >= 0x80:
                try:
                    ln, p = _varint_slow(payload, e, 28)
                except IndexError:
                    ln = n
            if p + ln == n:
                return _new(
                    Batch,
                    (
                        log_number,
                        offset,
                        seq0,
                        1,
                        [_new(Op, (seq0, "put", 0, payload[pos:e], payload[p:], None, None))],
                    ),
                )
        # anything else (including errors) takes the general path
    ops: list[Op] = []
    append = ops.append
    pos = WRITE_BATCH_HEADER_SIZE
    seq = seq0
    prepared = 0  # data records inside a prepare section (in the count, no sequence number)
    tags = _LEVELDB_TAGS if leveldb else None
    in_prepare = False
    tag = -1
    start = pos
    try:
        while pos < n:
            start = pos
            tag = payload[pos]
            pos += 1
            # ---- fast paths: Put / Delete in default or any column family
            if tag == 1 or (tag == 5 and tags is None):
                if tag == 1:
                    cf = 0
                else:
                    cf = payload[pos]
                    pos += 1
                    if cf >= 0x80:
                        cf, pos = _varint_slow(payload, pos - 1, 28)
                ln = payload[pos]
                pos += 1
                if ln >= 0x80:
                    ln, pos = _varint_slow(payload, pos - 1, 28)
                e = pos + ln
                key = payload[pos:e]
                ln = payload[e]  # IndexError when the key overran the payload
                pos = e + 1
                if ln >= 0x80:
                    ln, pos = _varint_slow(payload, e, 28)
                e = pos + ln
                if e > n:
                    raise IndexError
                if in_prepare:
                    append(_new(Op, (-1, "put", cf, key, payload[pos:e], None, None)))
                    prepared += 1
                else:
                    append(_new(Op, (seq, "put", cf, key, payload[pos:e], None, None)))
                    seq += 1
                pos = e
                continue
            if tags is not None:
                name = tags[tag]  # KeyError -> unknown tag
                has_cf, nfields, consumes = False, 1, True
            else:
                name, has_cf, nfields, consumes = _TAGS[tag]
            cf = 0
            if has_cf:
                cf = payload[pos]
                pos += 1
                if cf >= 0x80:
                    cf, pos = _varint_slow(payload, pos - 1, 28)
            key = value = end_key = None
            if nfields:
                # inlined for speed: the key's and the value's length-prefixed slices (no call per field)
                ln = payload[pos]
                pos += 1
                if ln >= 0x80:
                    ln, pos = _varint_slow(payload, pos - 1, 28)
                e = pos + ln
                if e > n:
                    raise IndexError
                key = payload[pos:e]
                pos = e
                if nfields == 2:
                    ln = payload[pos]
                    pos += 1
                    if ln >= 0x80:
                        ln, pos = _varint_slow(payload, pos - 1, 28)
                    e = pos + ln
                    if e > n:
                        raise IndexError
                    value = payload[pos:e]
                    pos = e
            ts = None
            if name == "delete_range":
                end_key, value = value, None
            elif name == "commit_with_ts":
                # CommitXIDAndTimestamp: commit_ts first, then xid.
                key, value = value, key
            elif name == "timed_put":
                assert value is not None
                if len(value) < 8:
                    raise IndexError
                value, ts = value[:-8], value[-8:]
            if tag in _BEGIN_PREPARE_TAGS:
                in_prepare = True
            elif tag == TAG_END_PREPARE_XID:
                in_prepare = False
            if consumes:
                if in_prepare:
                    append(Op(-1, name, cf, key, value, end_key, ts))
                    prepared += 1
                else:
                    append(Op(seq, name, cf, key, value, end_key, ts))
                    seq += 1
            else:
                append(Op(-1, name, cf, key, value, end_key, ts))
    except IndexError:
        raise CorruptRecord(
            f"write batch record at byte {start} (tag {tag:#04x}) is truncated",
            log_number=log_number,
            offset=offset,
        ) from None
    except KeyError:
        raise CorruptRecord(
            f"unknown write batch tag {tag:#04x} at byte {start}",
            log_number=log_number,
            offset=offset,
        ) from None
    found = seq - seq0 + prepared
    if found != count:
        raise CorruptRecord(
            f"write batch count mismatch: header says {count}, found {found}",
            log_number=log_number,
            offset=offset,
        )
    return _new(Batch, (log_number, offset, seq0, count, ops))


def _split_timestamps(
    ops: list[Op], ts_sizes: dict[int, int], log_number: int, offset: int
) -> list[Op]:
    """Move the user-defined timestamp suffix of keys (UDT column families) into ``Op.ts``."""
    out: list[Op] = []
    for op in ops:
        size = ts_sizes.get(op.cf_id, 0)
        if not size or op.key is None or op.op in MARKER_OPS:
            out.append(op)
            continue
        key = op.key
        if len(key) < size:
            raise CorruptRecord(
                f"key shorter than its {size}-byte timestamp (cf {op.cf_id})",
                log_number=log_number,
                offset=offset,
            )
        end_key = op.end_key
        if end_key is not None:
            if len(end_key) < size:
                raise CorruptRecord(
                    f"end key shorter than its {size}-byte timestamp (cf {op.cf_id})",
                    log_number=log_number,
                    offset=offset,
                )
            end_key = end_key[:-size]
        out.append(op._replace(key=key[:-size], end_key=end_key, ts=key[-size:]))
    return out


# ---------------------------------------------------------------------------- numbering schemes

SEQ_PER_KEY = "per_key"
SEQ_PER_BATCH = "per_batch"

_STRONG_PER_BATCH = frozenset({"begin_persisted_prepare", "begin_unprepare"})
_BOUNDARY_OPS = frozenset({"end_prepare", "commit", "commit_with_ts", "rollback"})
_DATA_OPS = frozenset(
    {"put", "delete", "single_delete", "merge", "delete_range", "put_entity", "blob_index", "timed_put"}
)


def seq_scheme_evidence(b: Batch) -> tuple[str | None, bool]:
    """What one WAL record says about the store's sequence numbering: (scheme or None, strong).

    RocksDB numbers records per key (plain DB, WriteCommitted TransactionDB) or, under a
    TransactionDB with WRITE_PREPARED / WRITE_UNPREPARED, per (sub-)batch (``seq_per_batch``).
    The record itself usually tells:

    * strong: a BeginPersistedPrepare (0x12) / BeginUnprepare (0x13) marker is written only by
      WritePrepared / WriteUnprepared (per batch); a BeginPrepare (0x09) only by WriteCommitted
      (per key).
    * weak: WritePrepared/Unprepared end every write they log with a Noop, EndPrepare, Commit or
      Rollback marker, so a record whose last op (LogData aside) is a data op is per key; one
      whose last op is a Noop closing data is per batch (WriteCommitted puts its Noop
      placeholder *before* the data).

    Records with no data ops or ending in Commit/Rollback after data (a WritePrepared rollback
    or a commit with a commit-time batch) say nothing: ``(None, False)``.
    """
    has_data = False
    last: str | None = None
    for op in b.ops:
        name = op[1]
        if name in _STRONG_PER_BATCH:
            return SEQ_PER_BATCH, True
        if name == "begin_prepare":
            return SEQ_PER_KEY, True
        if name == "log_data":
            continue
        if name in _DATA_OPS:
            has_data = True
        last = name
    if not has_data or last is None:
        return None, False
    if last in _DATA_OPS:
        return SEQ_PER_KEY, False
    if last == "noop":
        return SEQ_PER_BATCH, False
    return None, False


def number_per_batch(b: Batch) -> tuple[list[Op], int]:
    """The records of ``b`` with the sequence numbers a ``seq_per_batch`` store gives them.

    Rules (RocksDB's MemTableInserter with seq_per_batch, WriteBatchInternal::Iterate, and the
    writers' SubBatchCounter): every record of one sub-batch shares one number, starting at the
    header's; a sub-batch ends at EndPrepare, Commit, CommitWithTimestamp, Rollback, at a Noop
    that follows data (a leading Noop placeholder is not a boundary), and just before a data
    record whose (cf, key) already occurs in the current sub-batch. Data inside prepare
    sections gets numbers too (WritePrepared writes it to the memtable at prepare time).
    Markers keep ``seq == -1``.

    Returns:
        (ops, consumed): the renumbered records, and how many sequence numbers the record
        consumes (the next record's header is ``b.seq + consumed`` unless something else wrote
        in between).
    """
    seq = b.seq
    keys: set[tuple[Any, ...]] = set()
    nonempty = False
    out: list[Op] = []
    append = out.append
    for op in b.ops:
        name = op[1]
        if name in _DATA_OPS:
            # the memtable key: cf, point or range table, user key with its timestamp (a
            # timed_put's ``ts`` is its write time, not part of the key)
            k = (op[2], name == "delete_range", op[3], op[6] if name != "timed_put" else None)
            if k in keys:
                seq += 1
                keys = {k}
            else:
                keys.add(k)
            nonempty = True
            append(op._replace(seq=seq))
            continue
        if name in _BOUNDARY_OPS or (name == "noop" and nonempty):
            seq += 1
            keys = set()
            nonempty = False
        append(op._replace(seq=-1) if op[0] != -1 else op)
    return out, seq - b.seq + (1 if nonempty else 0)


def consumed_per_key(b: Batch) -> int:
    """Sequence numbers a per-key record consumes by itself (its data records outside prepare
    sections; a WriteCommitted commit's prepared records are inserted after it, not counted)."""
    n = 0
    for op in b.ops:
        if op[0] >= 0:
            n += 1
    return n


class SeqNumbering:
    """Decides, record by record, which numbering a WAL uses, and numbers records accordingly.

    Pure state machine (no I/O) shared by the daemon and ``cdc dump-wal``. ``scheme`` is what
    the store was last seen to use (None until the first evidence); strong evidence (2PC begin
    markers) outranks weak evidence (how a record ends) that contradicts it in the same WAL
    (call :meth:`new_wal` at each WAL's start). A record that says
    nothing is numbered with ``scheme`` (per key while undecided): ``guessed`` counts the
    records where that choice changed a data record's number (their numbers may be wrong).
    """

    __slots__ = ("scheme", "strong", "guessed")

    def __init__(self, scheme: str | None = None, strong: bool = False) -> None:
        self.scheme = scheme
        self.strong = strong
        self.guessed = 0

    def new_wal(self) -> None:
        """A new WAL starts: strong evidence applies to the WAL it was found in (a store reopened
        with another TransactionDB policy, or replaced, starts a new WAL); the scheme stays as
        the prior for records that say nothing."""
        self.strong = False

    def classify(self, b: Batch) -> str:
        """The scheme of record ``b`` (and update ``scheme`` from its evidence)."""
        ev, strong = seq_scheme_evidence(b)
        if ev is not None:
            if strong:
                self.scheme, self.strong = ev, True
                return ev
            if self.strong and ev != self.scheme:
                return self.scheme  # type: ignore[return-value]
            self.scheme = ev
            return ev
        return self.scheme or SEQ_PER_KEY

    def number(self, b: Batch) -> tuple[str, list[Op], int]:
        """(scheme, records with their store-assigned numbers, numbers consumed) for ``b``."""
        ev, _ = seq_scheme_evidence(b)
        scheme = self.classify(b)
        if scheme == SEQ_PER_BATCH:
            ops, consumed = number_per_batch(b)
            if ev is None and self.scheme is None:
                self._note_guess(b, ops)
            return scheme, ops, consumed
        if ev is None and self.scheme is None:
            self._note_guess(b, number_per_batch(b)[0])
        return scheme, b.ops, consumed_per_key(b)

    def _note_guess(self, b: Batch, other: list[Op]) -> None:
        for a, o in zip(b.ops, other):
            if a[0] >= 0 and o[0] >= 0 and a[0] != o[0]:
                self.guessed += 1
                return


def decode_entity(value: bytes) -> list[tuple[bytes, bytes]]:
    """Decode a wide-column entity (db/wide/wide_column_serialization.h) to (name, value) pairs.

    Version 1: varint32 version, varint32 N, N x (varstring name, varint32 value size), then the
    values concatenated. Version 2 (blob-backed columns, RocksDB 11.2+): version, N, three
    varint32 section sizes, N type bytes, N name sizes, N value sizes, names, values; a column
    whose type is not 0x01 (inline) keeps its raw bytes (a blob index).

    Raises:
        CorruptRecord: short fields, an unknown version.
    """
    try:
        version, pos = _varint_slow(value, 0, 28)
        n, pos = _varint_slow(value, pos, 28)
        if version == 1:
            heads: list[tuple[bytes, int]] = []
            for _ in range(n):
                ln, pos = _varint_slow(value, pos, 28)
                name = value[pos : pos + ln]
                if len(name) != ln:
                    raise IndexError
                pos += ln
                vl, pos = _varint_slow(value, pos, 28)
                heads.append((name, vl))
            out = []
            for name, vl in heads:
                v = value[pos : pos + vl]
                if len(v) != vl:
                    raise IndexError
                pos += vl
                out.append((name, v))
        elif version == 2:
            for _ in range(3):
                _, pos = _varint_slow(value, pos, 28)
            types = value[pos : pos + n]
            if len(types) != n:
                raise IndexError
            pos += n
            name_sizes = []
            for _ in range(n):
                ln, pos = _varint_slow(value, pos, 28)
                name_sizes.append(ln)
            value_sizes = []
            for _ in range(n):
                ln, pos = _varint_slow(value, pos, 28)
                value_sizes.append(ln)
            names = []
            for ln in name_sizes:
                names.append(value[pos : pos + ln])
                if len(names[-1]) != ln:
                    raise IndexError
                pos += ln
            out = []
            for name, ln in zip(names, value_sizes):
                v = value[pos : pos + ln]
                if len(v) != ln:
                    raise IndexError
                pos += ln
                out.append((name, v))
        else:
            raise CorruptRecord(f"unknown wide-column entity version {version}")
    except IndexError:
        raise CorruptRecord("wide-column entity is truncated") from None
    if pos != len(value):
        raise CorruptRecord("wide-column entity has trailing bytes")
    return out


def decode_udt_sizes(payload: bytes) -> dict[int, int]:
    """Decode a UserDefinedTimestampSize record: repeated (fixed32 cf id, fixed16 size).

    Raises:
        CorruptRecord: a length that is not a multiple of 6.
    """
    if len(payload) % 6:
        raise CorruptRecord(f"timestamp size record of {len(payload)} bytes")
    return {cf: size for cf, size in _UDT_ENTRY.iter_unpack(payload)}


_FUSED_HEADER = struct.Struct("<IHBQIB")  # log header + WriteBatch header + first tag
_unpack_fused = _FUSED_HEADER.unpack_from


def _scan_simple_records(log: LogReader, leveldb: bool, decode: Callable[[bytes, int, int, bool], Any] | None = None) -> list[Any]:
    """Decode the leading run of unfragmented legacy FULL records of ``log``'s buffer.

    The hot path of :class:`WalReader`: framing and WriteBatch decoding in one loop, with a
    shortcut for the single-Put batch. It stops (leaving the reader positioned on it) at
    anything else -- a trailer, a fragment, a metadata record, a checksum or decoding problem,
    the end of the bytes -- which :meth:`LogReader.read_raw` then handles (and reports) exactly
    as without this function. Precondition: the reader is not corrupt/ended and holds no
    fragments.
    """
    buf, base, i = log.window()
    nbuf = len(buf)
    start_i = i
    boff = base % 32768
    log_number = log.log_number
    out: list[Batch] = []
    append = out.append
    crc = crc32c
    unpack = _unpack_fused
    if decode is None:
        decode = _decode_batch
    new = _new
    while True:
        # one block at a time: records never cross a block boundary
        lim = i + 32768 - (boff + i) % 32768
        if lim > nbuf:
            lim = nbuf
        if i + 20 > lim:
            break
        block_start_i = i
        # inlined for speed: LogReader.read_raw's FULL-record framing + CRC fused with batch decoding
        while i + 20 <= lim:
            masked, length, rtype, seq, count, tag = unpack(buf, i)
            e = i + 7 + length
            if rtype != 1 or e > lim:
                break
            c = crc(buf[i + 6 : e])
            if ((((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF) != masked:
                break
            if count == 1 and tag == 1:
                # inlined for speed (cli/dumpwal's fast path repeats this parse to render lines, no Op):
                # single default-CF Put with a one-byte key length, 1- or 2-byte value length
                kl = buf[i + 20]
                ke = i + 21 + kl
                if kl < 0x80 and ke < e:
                    vl = buf[ke]
                    vs = ke + 1
                    if vl >= 0x80:
                        if vs < e and buf[vs] < 0x80:
                            vl = (vl & 0x7F) | (buf[vs] << 7)
                            vs += 1
                        else:
                            vl = -1  # a longer varint: the general decoder
                    if vl >= 0 and vs + vl == e:
                        append(
                            new(
                                Batch,
                                (
                                    log_number,
                                    base + i,
                                    seq,
                                    1,
                                    [new(Op, (seq, "put", 0, buf[i + 21 : ke], buf[vs:e], None, None))],
                                ),
                            )
                        )
                        i = e
                        continue
            try:
                append(decode(buf[i + 7 : e], log_number, base + i, leveldb))
            except FormatError:
                break
            i = e
        if i + 20 <= lim or i == block_start_i:
            break  # stopped on something the general reader must handle
        # the rest of the block is a trailer or a record of < 20 bytes: let the reader decide
        if i < lim:
            break
    if i != start_i:
        log.consume(base + i)
    return out


def _scan_simple_c(log: LogReader, leveldb: bool) -> list[Any]:
    """:func:`_scan_simple_records` (without a custom decoder) in C: same batches, same stop
    (or earlier); the C module's walscan.c keeps the Python function as its reference."""
    buf, base, i = log.window()
    out, j = _C.scan_simple(buf, base, i, log.log_number, leveldb)  # type: ignore[union-attr]
    if j != i:
        log.consume(base + j)
    return out


if _C is not None and Batch._fields == ("log_number", "offset", "seq", "count", "ops") and len(Op._fields) == 7:
    _C.set_wal_types(Batch, Op)  # walscan.c builds these layouts
else:
    _C = None


class WalReader:
    """Incremental WAL reader: framing + compression + UDT sizes + WriteBatch decoding.

    Args:
        log_number: the WAL's number.
        offset: file offset of the first byte that will be fed (a previous ``offset``).
        leveldb: LevelDB WAL.
        compression: the compression type in force at ``offset`` (persist it with the offset
            when resuming a compressed WAL mid-file).
        ts_sizes: user-defined timestamp sizes in force at ``offset`` (persist with the offset).

    Attributes:
        offset: resume point (file offset after the last returned batch / consumed metadata).
        state: ``"ok" | "need_more" | "end" | "corrupt"`` as for LogReader.
        error: a :class:`FormatError` when ``state == "corrupt"``; ``offset`` then equals the
            bad record's offset.
        compression: current compression type (0 none, 7 zstd).
        ts_sizes: cf id -> timestamp size announced so far.
        predecessor: (wal number, size, last seq) from a PredecessorWALInfo record, or None.
    """

    def __init__(
        self,
        log_number: int,
        *,
        offset: int = 0,
        leveldb: bool = False,
        compression: int = NO_COMPRESSION,
        ts_sizes: dict[int, int] | None = None,
    ) -> None:
        self.log_number = log_number
        self.leveldb = leveldb
        self.compression = compression
        self.ts_sizes: dict[int, int] = dict(ts_sizes or {})
        self.predecessor: tuple[int, int, int] | None = None
        self._log = LogReader(log_number, offset=offset, leveldb=leveldb)
        self._error: FormatError | None = None
        self._error_offset = -1
        self._compression_seen = compression != NO_COMPRESSION
        self._records_seen = offset != 0
        self._dctx = None
        self.batch_decoder: Callable[[bytes, int, int, bool], Any] | None = None
        """Tools (``cdc dump-wal``): replaces the WriteBatch decoder for records that are neither
        compressed nor carry timestamps; called as ``(payload, log_number, offset, leveldb)``.
        It may return any non-tuple object (e.g. pre-rendered output), which ``read()`` then
        returns in that record's place, and must raise :class:`FormatError` exactly where
        :func:`decode_write_batch` would (the simplest way: fall back to it)."""
        self.run_scanner: Callable[[LogReader], list[Any]] | None = None
        """Tools: called on the LogReader (no fragment pending, not recycled, no compression or
        timestamps) before the built-in scan; it may consume a leading run of unfragmented legacy
        FULL records (advancing ``_pos``/``offset``, verifying every CRC) and return one item per
        run or record, in file order."""

    @property
    def offset(self) -> int:
        """Resume point: after the last returned batch, or the bad record when corrupt."""
        return self._error_offset if self._error is not None else self._log.offset

    @property
    def state(self) -> str:
        """``"ok" | "need_more" | "end" | "corrupt"`` (see :class:`LogReader`)."""
        return "corrupt" if self._error is not None else self._log.state

    @property
    def error(self) -> FormatError | None:
        """The format problem when ``state == "corrupt"``, else None."""
        return self._error if self._error is not None else self._log.error

    def feed(self, data: bytes) -> None:
        """Append the next contiguous bytes of the file."""
        self._log.feed(data)

    def read(self) -> list[Batch]:
        """Every complete batch available now; never raises on content (see ``state``)."""
        if self._error is not None:
            return []
        if self._log.state == "corrupt":
            return []
        out: list[Batch] = []
        leveldb = self.leveldb
        decode = self.batch_decoder or _decode_batch
        custom = self.batch_decoder
        scan = self.run_scanner
        log = self._log
        while True:
            fast = None if (self.compression or self.ts_sizes) else decode
            if fast is not None and not log.recycled:
                if not log.in_fragment:
                    if scan is not None:
                        out += scan(log)
                    if custom is None and _C is not None:
                        out += _scan_simple_c(log, leveldb)
                    else:
                        out += _scan_simple_records(log, leveldb, custom)
                # then one record the general way (a fragment, a trailer, metadata, an error)
                items = log.read_raw(fast, 1)
            else:
                items = log.read_raw(fast)
            if not items:
                break
            if self._process(items, out):
                break
        if out:
            self._records_seen = True
        return out

    def _process(self, items: list, out: list[Batch]) -> bool:
        """Handle read_raw's items in order; True when a format error stopped the reader."""
        append = out.append
        log_number = self.log_number
        leveldb = self.leveldb
        decode = self.batch_decoder or _decode_batch
        for item in items:
            if type(item) is not tuple:  # a Batch (or a batch_decoder's result)
                append(item)
                continue
            rec_offset, rtype, payload = item
            try:
                if rtype == 1 or rtype == 5:
                    if self.compression or self.ts_sizes:
                        if self.compression:
                            payload = self._decompress(payload, rec_offset)
                        append(
                            decode_write_batch(
                                payload,
                                log_number=log_number,
                                offset=rec_offset,
                                leveldb=leveldb,
                                ts_sizes=self.ts_sizes,
                            )
                        )
                    else:
                        append(decode(payload, log_number, rec_offset, leveldb))
                    self._records_seen = True
                elif rtype == SET_COMPRESSION_TYPE:
                    self._set_compression(payload, rec_offset, bool(out))
                elif rtype in (
                    USER_DEFINED_TIMESTAMP_SIZE_TYPE,
                    RECYCLABLE_USER_DEFINED_TIMESTAMP_SIZE_TYPE,
                ):
                    try:
                        self.ts_sizes.update(decode_udt_sizes(payload))
                    except CorruptRecord as exc:
                        raise CorruptRecord(
                            exc.reason, log_number=log_number, offset=rec_offset
                        ) from None
                elif rtype in (PREDECESSOR_WAL_INFO_TYPE, RECYCLE_PREDECESSOR_WAL_INFO_TYPE):
                    if len(payload) != _PREDECESSOR.size:
                        raise CorruptRecord(
                            f"predecessor WAL info of {len(payload)} bytes",
                            log_number=log_number,
                            offset=rec_offset,
                        )
                    self.predecessor = _PREDECESSOR.unpack(payload)
                else:  # pragma: no cover - LogReader returns only the types above
                    raise CorruptRecord(
                        f"unexpected record type {rtype}", log_number=log_number, offset=rec_offset
                    )
            except FormatError as exc:
                self._error = exc
                self._error_offset = rec_offset
                return True
        return False

    def _set_compression(self, payload: bytes, offset: int, data_before: bool) -> None:
        if len(payload) != 4:
            raise CorruptRecord(
                f"compression type record of {len(payload)} bytes",
                log_number=self.log_number,
                offset=offset,
            )
        if self._compression_seen or self._records_seen or data_before:
            raise CorruptRecord(
                "compression type record after the start of the WAL",
                log_number=self.log_number,
                offset=offset,
            )
        ctype = _U32.unpack(payload)[0]
        if ctype not in (NO_COMPRESSION, ZSTD_COMPRESSION):
            raise UnsupportedRecord(
                f"WAL compression type {ctype} is not supported (only zstd): "
                "turn off wal_compression or use kZSTD",
                log_number=self.log_number,
                offset=offset,
            )
        self.compression = ctype
        self._compression_seen = True

    def _decompress(self, payload: bytes, offset: int) -> bytes:
        import zstandard  # lazily: only compressed WALs need it

        if self._dctx is None:
            self._dctx = zstandard.ZstdDecompressor()
        try:
            dobj = self._dctx.decompressobj()
            data = dobj.decompress(payload)
            if not dobj.eof:
                raise CorruptRecord(
                    "zstd frame of a compressed WAL record is incomplete",
                    log_number=self.log_number,
                    offset=offset,
                )
            return data
        except zstandard.ZstdError as exc:
            raise CorruptRecord(
                f"zstd decompression failed: {exc}", log_number=self.log_number, offset=offset
            ) from None

    def close(self) -> FormatError | None:
        """The file is sealed: an incomplete tail becomes a truncation error (see LogReader)."""
        if self._error is not None:
            return self._error
        return self._log.close()
