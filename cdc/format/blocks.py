"""Log-file framing shared by RocksDB/LevelDB WALs and MANIFESTs (pure).

Rule: this module performs no I/O, reads no clock and logs nothing: bytes in, records out.

Format (RocksDB db/log_format.h, db/log_reader.cc; LevelDB db/log_format.h):

* The file is a sequence of 32 KiB blocks; a physical record never crosses a block boundary.
* Header: masked CRC32C (fixed32), payload length (fixed16), type (1 byte); recyclable types
  (5-8, 11, 131) add the low 32 bits of the WAL number (fixed32) -> 11-byte header.
* The CRC covers the type byte (+ log number for recyclable headers) + payload.
* FULL / FIRST / MIDDLE / LAST fragments form one logical record.
* Fewer than a header's bytes at the end of a block are zero padding (a "trailer").
* A zero header (type 0, length 0) means "the rest of this block is padding / preallocated".

Invariants of :class:`LogReader`:

* ``offset`` is always a resume point: the file offset just after the last consumed logical
  record (or skipped padding). A new reader created with that offset and fed the file from there
  yields exactly the records the old one had not returned yet.
* Feeding any split of the same bytes yields the same records (fragments are buffered).
* An incomplete record at the end of the bytes fed so far is ``state == "need_more"``, never an
  error; trailer padding is skipped only once bytes beyond the block end are known.
* A corrupt record raises nothing from :meth:`LogReader.read`: the records before it are
  returned, ``state`` becomes ``"corrupt"`` and ``error`` holds a :class:`CorruptRecord` with the
  log number and the file offset of the bad record. The reader then stays stuck there.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from crc32c import crc32c

from cdc.errors import CorruptRecord, FormatError

BLOCK_SIZE = 32768
HEADER_SIZE = 7
RECYCLABLE_HEADER_SIZE = 11

# RecordType (db/log_format.h)
ZERO_TYPE = 0
FULL_TYPE = 1
FIRST_TYPE = 2
MIDDLE_TYPE = 3
LAST_TYPE = 4
RECYCLABLE_FULL_TYPE = 5
RECYCLABLE_FIRST_TYPE = 6
RECYCLABLE_MIDDLE_TYPE = 7
RECYCLABLE_LAST_TYPE = 8
SET_COMPRESSION_TYPE = 9
USER_DEFINED_TIMESTAMP_SIZE_TYPE = 10
RECYCLABLE_USER_DEFINED_TIMESTAMP_SIZE_TYPE = 11
PREDECESSOR_WAL_INFO_TYPE = 130
RECYCLE_PREDECESSOR_WAL_INFO_TYPE = 131
RECORD_TYPE_SAFE_IGNORE_MASK = 0x80

_RECYCLABLE_TYPES = frozenset({5, 6, 7, 8, 11, 131})
_METADATA_TYPES = frozenset({9, 10, 11, 130, 131})
# LevelDB knows only types 0-4.
_LEVELDB_TYPES = frozenset({1, 2, 3, 4})

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<IHB")
_U32 = struct.Struct("<I")


def mask_crc(crc: int) -> int:
    """Mask a CRC32C the way RocksDB/LevelDB store it (util/crc32c.h Mask)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """Inverse of :func:`mask_crc`."""
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


class LogRecord(NamedTuple):
    """One logical record.

    Attributes:
        offset: file offset of the record's first fragment header.
        rtype: physical type of the (first) fragment: 1/5 data, 9 compression, 10/11 UDT sizes,
            130/131 predecessor WAL info (data records report 1 or 5 even when fragmented).
        payload: logical payload (fragments joined).
    """

    offset: int
    rtype: int
    payload: bytes


_make_record = LogRecord._make


class LogReader:
    """Incremental reader of the 32 KiB block framing.

    Args:
        log_number: the file's number (checked against recyclable headers, put in errors).
        offset: file offset of the first byte that will be fed (a previous ``offset``).
        leveldb: LevelDB framing (types 1-4 only).

    Attributes:
        offset: resume point (see module docstring).
        state: ``"ok"`` (everything fed was consumed), ``"need_more"`` (an incomplete record or
            unskippable padding is pending), ``"end"`` (a recycled file: what follows ``offset``
            is a record of an older life of the file, or a checksum/length/type mismatch after
            this life's records -- the live data ends here; a live tailer re-reads from
            ``offset`` later with a fresh reader, since the writer overwrites those bytes in
            place), ``"corrupt"`` (see ``error``).
        error: the :class:`CorruptRecord` when ``state == "corrupt"``.
    """

    __slots__ = (
        "log_number",
        "leveldb",
        "offset",
        "state",
        "error",
        "_buf",
        "_base",
        "_pos",
        "_frag_offset",
        "_frag_type",
        "_frags",
        "_recycled",
        "_legacy_seen",
        "_log32",
    )

    def __init__(self, log_number: int, *, offset: int = 0, leveldb: bool = False) -> None:
        self.log_number = log_number
        self.leveldb = leveldb
        self.offset = offset
        self.state = "ok"
        self.error: CorruptRecord | None = None
        self._buf = b""  # bytes fed and not yet dropped; _buf[0] is at file offset _base
        self._base = offset
        self._pos = offset  # file offset of the next physical record to parse
        self._frag_offset = -1  # offset of the pending FIRST fragment, -1 when none
        self._frag_type = 0
        self._frags: list[bytes] = []
        self._recycled = False
        self._legacy_seen = False
        self._log32 = log_number & 0xFFFFFFFF

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes) -> None:
        """Append the next contiguous bytes of the file (starting where the last feed ended)."""
        if not data:
            return
        drop = self._pos - self._base
        if drop:
            self._buf = self._buf[drop:] + bytes(data)
            self._base = self._pos
        elif self._buf:
            self._buf += bytes(data)
        else:
            self._buf = bytes(data)

    # ------------------------------------------------------------------ decoding

    def _corrupt(self, reason: str, offset: int, tail_ok: bool = False) -> None:
        if tail_ok:
            # A recycled file is overwritten in place without truncation: after the last record
            # of this life come leftovers of the previous one, usually cut mid-record. Like
            # RocksDB's reader (kTolerateCorruptedTailRecords / point-in-time), treat it as the
            # end of the live data rather than corruption.
            self.state = "end"
            return
        self.state = "corrupt"
        self.error = CorruptRecord(reason, log_number=self.log_number, offset=offset)

    def read(self) -> list[LogRecord]:
        """Return every complete logical record available now (possibly none).

        Never raises on content: see ``state`` / ``error`` afterwards.
        """
        return list(map(_make_record, self.read_raw()))

    def read_raw(
        self, decode: Callable[[bytes, int, int, bool], Any] | None = None, limit: int = 0
    ) -> list[Any]:
        """Like :meth:`read`, as plain ``(offset, rtype, payload)`` tuples (cheaper to build).

        Args:
            decode: optional ``decode(payload, log_number, offset, leveldb)`` applied to
                unfragmented legacy FULL records *until the first metadata record* of this
                call (whose meaning may change how later records decode); its result is
                appended instead of the tuple. A :class:`FormatError` it raises makes the
                reader corrupt at that record (``offset`` stays before it). Used by the WAL
                reader to decode batches without an intermediate list.
            limit: stop after this many logical records (0 = no limit).
        """
        if self.state == "corrupt" or self.state == "end":
            return []
        out: list[Any] = []
        append = out.append
        buf = self._buf
        base = self._base
        nbuf = len(buf)
        pos = self._pos
        offset = self.offset
        frags = self._frags
        unpack_header = _HEADER.unpack_from
        leveldb = self.leveldb
        recycled = self._recycled
        legacy_seen = self._legacy_seen
        crc = crc32c
        log_number = self.log_number
        state = "ok"
        i = pos - base
        while True:
            if limit and len(out) >= limit:
                break
            avail = nbuf - i
            if avail <= 0:
                break
            # Literals instead of module constants in this hot path: 32768 = BLOCK_SIZE,
            # 7 = HEADER_SIZE, 11 = RECYCLABLE_HEADER_SIZE, 1 = FULL_TYPE, 0xA282EAD8 = mask delta.
            block_left = 32768 - pos % 32768
            if block_left < 7 or (recycled and block_left < 11):
                # Trailer: zero padding up to the block boundary.
                if avail > block_left:
                    pos += block_left
                    i += block_left
                    if not frags:
                        offset = pos
                    continue
                state = "need_more"
                break
            if avail < 7:
                state = "need_more"
                break
            masked, length, rtype = unpack_header(buf, i)
            if rtype == 1 and not frags:
                # inlined for speed: the FULL branch below, without the general checks (legacy, no fragment)
                # Fast path: a whole record in a legacy header (the common case).
                e = i + 7 + length
                if 7 + length > block_left:
                    self._corrupt(
                        f"bad record length {length} at block offset {32768 - block_left}",
                        pos,
                        recycled,
                    )
                    break
                if e > nbuf:
                    state = "need_more"
                    break
                c = crc(buf[i + 6 : e])
                if ((((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF) != masked:
                    self._corrupt("checksum mismatch", pos, recycled)
                    break
                legacy_seen = True
                if decode is None:
                    append((pos, 1, buf[i + 7 : e]))
                else:
                    try:
                        append(decode(buf[i + 7 : e], log_number, pos, leveldb))
                    except FormatError as exc:
                        self.state = "corrupt"
                        self.error = exc
                        break
                pos += 7 + length
                i = e
                offset = pos
                continue
            if rtype == ZERO_TYPE and length == 0:
                # Zero header: padding / preallocated rest of the block (log_reader.cc kZeroType).
                if avail > block_left:
                    pos += block_left
                    i += block_left
                    if not frags:
                        offset = pos
                    continue
                state = "need_more"
                break
            hsize = HEADER_SIZE
            if rtype in _RECYCLABLE_TYPES and not leveldb:
                hsize = RECYCLABLE_HEADER_SIZE
                if avail < hsize:
                    state = "need_more"
                    break
                if _U32.unpack_from(buf, i + 7)[0] != self._log32:
                    # A record from an older life of a recycled file. Checked before the length
                    # and the CRC, in RocksDB's order (log_reader.cc ReadPhysicalRecord:
                    # kOldRecord precedes kBadRecordLen / kBadRecordChecksum), so a foreign log
                    # number ends the live data whatever its CRC.
                    self.state = "end"
                    break
            if hsize + length > block_left:
                self._corrupt(
                    f"bad record length {length} at block offset {BLOCK_SIZE - block_left}",
                    pos,
                    recycled,
                )
                break
            e = i + hsize + length
            if e > nbuf:
                state = "need_more"
                break
            c = crc(buf[i + 6 : e])
            if ((((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF) != masked:
                self._corrupt("checksum mismatch", pos, recycled)
                break
            rec_start = pos
            if leveldb and rtype not in _LEVELDB_TYPES:
                self._corrupt(f"unknown record type {rtype}", rec_start)
                break
            payload = buf[i + hsize : e]
            nxt = pos + hsize + length
            # --- recyclable vs legacy data records (log_reader.cc: a recycled log starts
            # with a recyclable record; one after a legacy data record is corruption)
            if rtype in _RECYCLABLE_TYPES:
                if legacy_seen:
                    self._corrupt("recyclable record after non-recyclable record", rec_start)
                    break
                recycled = True
            elif rtype <= LAST_TYPE:
                legacy_seen = True
            # --- logical assembly (inlined for speed: each branch updates the loop's locals itself)
            if rtype == FULL_TYPE or rtype == RECYCLABLE_FULL_TYPE:
                if frags:
                    self._corrupt("partial record without end", self._frag_offset)
                    break
                append((rec_start, rtype, payload))
                pos = nxt
                i = e
                offset = pos
                continue
            if rtype == FIRST_TYPE or rtype == RECYCLABLE_FIRST_TYPE:
                if frags:
                    self._corrupt("partial record without end", self._frag_offset)
                    break
                self._frag_offset = rec_start
                self._frag_type = FULL_TYPE if rtype == FIRST_TYPE else RECYCLABLE_FULL_TYPE
                frags.append(payload)
                pos = nxt
                i = e
                continue
            if rtype == MIDDLE_TYPE or rtype == RECYCLABLE_MIDDLE_TYPE:
                if not frags:
                    self._corrupt("missing start of fragmented record", rec_start)
                    break
                frags.append(payload)
                pos = nxt
                i = e
                continue
            if rtype == LAST_TYPE or rtype == RECYCLABLE_LAST_TYPE:
                if not frags:
                    self._corrupt("missing start of fragmented record", rec_start)
                    break
                frags.append(payload)
                append((self._frag_offset, self._frag_type, b"".join(frags)))
                frags.clear()
                self._frag_offset = -1
                pos = nxt
                i = e
                offset = pos
                continue
            if not leveldb and rtype in _METADATA_TYPES:
                if frags:
                    self._corrupt("partial record without end", self._frag_offset)
                    break
                decode = None  # it may change how the following records decode
                append((rec_start, rtype, payload))
                pos = nxt
                i = e
                offset = pos
                continue
            if rtype & RECORD_TYPE_SAFE_IGNORE_MASK and not leveldb:
                # Unknown but marked safe to ignore (RocksDB 9.11+).
                pos = nxt
                i = e
                if not frags:
                    offset = pos
                continue
            self._corrupt(f"unknown record type {rtype}", rec_start, recycled)
            break
        self._pos = pos
        self.offset = offset
        self._recycled = recycled
        self._legacy_seen = legacy_seen
        if self.state != "corrupt" and self.state != "end":
            if frags and state == "ok":
                state = "need_more"
            self.state = state
        return out

    # ------------------------------------------------------------------ in-place scanners

    @property
    def recycled(self) -> bool:
        """True once a recyclable record was read (the general path must check log numbers)."""
        return self._recycled

    @property
    def in_fragment(self) -> bool:
        """True while a FIRST fragment waits for its LAST."""
        return bool(self._frags)

    def window(self) -> tuple[bytes, int, int]:
        """``(buf, base, i)``: the fed bytes kept, the file offset of ``buf[0]``, and the index in
        ``buf`` of the next physical record.

        For scanners that decode a run of whole legacy records in place (the WAL reader's hot
        loop, dump-wal's keys-only fast path); they hand what they took back with
        :meth:`consume`. ``buf`` must not be kept across :meth:`feed`.
        """
        return self._buf, self._base, self._pos - self._base

    def consume(self, end: int) -> None:
        """Mark the records from the position up to file offset ``end`` as returned.

        The caller (a scanner over :meth:`window`) has checked that they are whole legacy
        records (FULL, or a FIRST + LAST pair across a block boundary; CRCs verified) or block
        trailers, ending exactly at ``end``. Precondition: not :attr:`recycled`, not :attr:`in_fragment`, ``end`` not before
        the position. Anything it stops before is left to :meth:`read_raw`, which handles and
        reports it exactly as without the scanner.
        """
        assert not self._frags and not self._recycled and end >= self._pos, "consume() outside a run of whole records"
        self._pos = self.offset = end
        self._legacy_seen = True

    # ------------------------------------------------------------------ end of file

    def pending(self) -> int:
        """Number of fed bytes after ``offset`` that are not yet part of a returned record."""
        return self._base + len(self._buf) - self.offset

    def close(self) -> CorruptRecord | None:
        """The file is sealed: report an incomplete tail as a truncation error.

        Returns:
            ``error`` if the reader is corrupt, a new :class:`CorruptRecord` ("truncated
            record") when non-zero bytes of an incomplete record remain after ``offset``,
            else None (a clean end, trailing zero padding, or ``state == "end"``).
        """
        if self.state == "corrupt":
            return self.error
        if self.state == "end":
            return None
        i = self.offset - self._base
        tail = self._buf[i:] if i >= 0 else b""
        if self._frags:
            tail = b"\x01"
        if not tail or tail.count(0) == len(tail):
            return None
        err = CorruptRecord("truncated record", log_number=self.log_number, offset=self.offset)
        self.state = "corrupt"
        self.error = err
        return err


# ---------------------------------------------------------------------- resync after corruption

_FRAG_HEADER = struct.Struct("<HB")  # length, type (after the 4-byte CRC)


def skip_orphan_fragments(read_at: Callable[[int, int], bytes], offset: int) -> int:
    """Where to resume after skipping to the block start ``offset`` past a bad record.

    A record that began in the skipped block may end in this one: its MIDDLE/LAST fragments alone
    cannot be decoded and would count as a second corruption. Steps over them (a MIDDLE fills its
    block) and returns the offset after the LAST, or ``offset`` itself when the block starts with
    anything else (or a header that does not fit its block: the reader judges it).

    Args:
        read_at: ``read_at(offset, n)`` -> up to ``n`` bytes of the file at ``offset`` (b"" past
            the end or on error); the caller does the I/O, this function only parses headers.
    """
    while True:
        hdr = read_at(offset, RECYCLABLE_HEADER_SIZE)
        if len(hdr) < HEADER_SIZE:
            return offset
        length, rtype = _FRAG_HEADER.unpack_from(hdr, 4)
        if rtype in (MIDDLE_TYPE, LAST_TYPE):
            hsize = HEADER_SIZE
        elif rtype in (RECYCLABLE_MIDDLE_TYPE, RECYCLABLE_LAST_TYPE):
            hsize = RECYCLABLE_HEADER_SIZE
        else:
            return offset
        block_end = (offset // BLOCK_SIZE + 1) * BLOCK_SIZE
        nxt = offset + hsize + length
        if nxt > block_end:
            return offset  # not a valid fragment header: let the reader judge it
        if rtype in (LAST_TYPE, RECYCLABLE_LAST_TYPE):
            return nxt
        offset = block_end  # MIDDLE fills its block
