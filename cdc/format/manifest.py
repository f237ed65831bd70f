"""MANIFEST decoding: VersionEdit records -> the store's live metadata (pure).

Rule: this module performs no I/O, reads no clock and logs nothing.

A MANIFEST is a log file (same 32 KiB framing as the WAL, log number 0, never recycled or
compressed) whose records are VersionEdits (RocksDB db/version_edit.cc, LevelDB
db/version_edit.cc): ``(varint32 tag, fields)`` until the record ends.

Invariants:

* :func:`decode_version_edit` decodes every tag of the format reference or raises
  :class:`CorruptRecord` (unknown tag without the safe-ignore bit 8192, short field).
* :class:`ManifestState` applies edits in file order; the members of an atomic group are
  buffered and applied together when the group is complete (an incomplete group at the end is
  not applied), as RocksDB's VersionEditHandler does.
* Column family 0 is always ``"default"``; ids are never reused, dropped ones are kept in
  ``dropped_cfs`` so old WAL records still get a name.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from cdc.errors import CorruptRecord, FormatError
from cdc.format.blocks import LogReader

_U64 = struct.Struct("<Q")

# VersionEdit tags (db/version_edit.h Tag / NewFileCustomTag)
TAG_COMPARATOR = 1
TAG_LOG_NUMBER = 2
TAG_NEXT_FILE_NUMBER = 3
TAG_LAST_SEQUENCE = 4
TAG_COMPACT_CURSOR = 5  # LevelDB: kCompactPointer
TAG_DELETED_FILE = 6
TAG_NEW_FILE = 7
TAG_LARGE_VALUE_REF = 8  # LevelDB 1.x only, never written by current LevelDB
TAG_PREV_LOG_NUMBER = 9
TAG_MIN_LOG_NUMBER_TO_KEEP = 10
TAG_NEW_FILE2 = 100
TAG_NEW_FILE3 = 102
TAG_NEW_FILE4 = 103
TAG_COLUMN_FAMILY = 200
TAG_COLUMN_FAMILY_ADD = 201
TAG_COLUMN_FAMILY_DROP = 202
TAG_MAX_COLUMN_FAMILY = 203
TAG_IN_ATOMIC_GROUP = 300
TAG_BLOB_FILE_ADDITION = 400
TAG_BLOB_FILE_GARBAGE = 401
TAG_SAFE_IGNORE_MASK = 1 << 13
TAG_DB_ID = 8193
TAG_BLOB_FILE_ADDITION_DEPRECATED = 8194
TAG_BLOB_FILE_GARBAGE_DEPRECATED = 8195
TAG_WAL_ADDITION = 8196
TAG_WAL_DELETION = 8197
TAG_FULL_HISTORY_TS_LOW = 8198
TAG_WAL_ADDITION2 = 8199
TAG_WAL_DELETION2 = 8200
TAG_PERSIST_USER_DEFINED_TIMESTAMPS = 8201
TAG_SUBCOMPACTION_PROGRESS = 8202
TAG_LAST_COMPACTED_MANIFEST_FILE_SIZE = 8203

# NewFile4 custom field tags
_CUSTOM_TERMINATE = 1
_CUSTOM_NEED_COMPACTION = 2
_CUSTOM_MIN_LOG_NUMBER_TO_KEEP_HACK = 3
_CUSTOM_PATH_ID = 65
_CUSTOM_SAFE_IGNORE_MASK = 64  # unknown custom tag with this bit: the DB refuses to open

# WalAddition / WalDeletion body tags (db/wal_edit.h WalAdditionTag)
_WAL_TERMINATE = 1
_WAL_SYNCED_SIZE = 2


class FileMeta(NamedTuple):
    """A live table file (SST).

    Attributes:
        number: file number (``NNNNNN.sst`` / ``.ldb``).
        level: LSM level.
        size: bytes.
        smallest_seqno / largest_seqno: sequence range (0 for LevelDB / kNewFile).
        cf_id: column family id.
        smallest / largest: internal keys (user key + 8-byte trailer) bounding the file.
    """

    number: int
    level: int
    size: int
    smallest_seqno: int
    largest_seqno: int
    cf_id: int
    smallest: bytes = b""
    largest: bytes = b""


class BlobFileMeta(NamedTuple):
    """A blob file addition (BlobDB)."""

    number: int
    count: int
    bytes: int
    checksum_method: bytes
    checksum: bytes


class VersionEdit:
    """One decoded VersionEdit; attributes are None/empty when the tag was absent."""

    __slots__ = (
        "comparator",
        "log_number",
        "prev_log_number",
        "next_file_number",
        "last_sequence",
        "min_log_number_to_keep",
        "max_column_family",
        "cf_id",
        "cf_add",
        "cf_drop",
        "new_files",
        "deleted_files",
        "compact_cursors",
        "in_atomic_group",
        "db_id",
        "blob_additions",
        "blob_garbage",
        "wal_additions",
        "wal_deletion",
        "full_history_ts_low",
        "persist_udt",
        "last_compacted_manifest_file_size",
        "ignored_tags",
    )

    def __init__(self) -> None:
        self.comparator: bytes | None = None
        self.log_number: int | None = None
        self.prev_log_number: int | None = None
        self.next_file_number: int | None = None
        self.last_sequence: int | None = None
        self.min_log_number_to_keep: int | None = None
        self.max_column_family: int | None = None
        self.cf_id = 0
        self.cf_add: str | None = None
        self.cf_drop = False
        # (level, number, size, smallest, largest, smallest_seqno, largest_seqno)
        self.new_files: list[tuple[int, int, int, bytes, bytes, int, int]] = []
        self.deleted_files: list[tuple[int, int]] = []  # (level, number)
        self.compact_cursors: list[tuple[int, bytes]] = []
        self.in_atomic_group: int | None = None  # edits that still follow in the group
        self.db_id: bytes | None = None
        self.blob_additions: list[BlobFileMeta] = []
        self.blob_garbage: list[tuple[int, int, int]] = []  # (number, count, bytes)
        self.wal_additions: list[tuple[int, int | None]] = []  # (wal number, synced size)
        self.wal_deletion: int | None = None  # all WALs below this number are gone
        self.full_history_ts_low: bytes | None = None
        self.persist_udt: bool | None = None
        self.last_compacted_manifest_file_size: int | None = None
        self.ignored_tags: list[int] = []

    def __repr__(self) -> str:
        fields = []
        for name in self.__slots__:
            v = getattr(self, name)
            if v is None or v == [] or (name == "cf_id" and v == 0) or v is False:
                continue
            fields.append(f"{name}={v!r}")
        return f"VersionEdit({', '.join(fields)})"


class _Cursor:
    """Bounds-checked reader over one record (raises IndexError when short)."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def varint(self, max_bits: int = 64) -> int:
        result = 0
        shift = 0
        data = self.data
        while True:
            if self.pos >= self.end or shift >= max_bits:
                raise IndexError("varint")
            b = data[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result
            shift += 7

    def raw(self, n: int) -> bytes:
        e = self.pos + n
        if e > self.end:
            raise IndexError("field")
        out = self.data[self.pos : e]
        self.pos = e
        return out

    def varstring(self) -> bytes:
        return self.raw(self.varint(32))

    def byte(self) -> int:
        if self.pos >= self.end:
            raise IndexError("byte")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def done(self) -> bool:
        return self.pos >= self.end


def _internal_key_seq(ikey: bytes) -> int:
    """Sequence number inside an InternalKey's 8-byte trailer (0 when too short)."""
    if len(ikey) < 8:
        return 0
    return _U64.unpack_from(ikey, len(ikey) - 8)[0] >> 8


def _decode_new_file4(c: _Cursor, edit: VersionEdit) -> None:
    level = c.varint(32)
    number = c.varint()
    size = c.varint()
    smallest = c.varstring()
    largest = c.varstring()
    s_seq = c.varint()
    l_seq = c.varint()
    while True:
        tag = c.varint(32)
        if tag == _CUSTOM_TERMINATE:
            break
        field = c.varstring()
        if tag == _CUSTOM_MIN_LOG_NUMBER_TO_KEEP_HACK and len(field) == 8:
            value = _U64.unpack(field)[0]
            if edit.min_log_number_to_keep is None or value > edit.min_log_number_to_keep:
                edit.min_log_number_to_keep = value
        elif tag == _CUSTOM_PATH_ID or tag == _CUSTOM_NEED_COMPACTION:
            pass
        elif tag & _CUSTOM_SAFE_IGNORE_MASK:
            raise CorruptRecord(f"new file entry has an unknown required field {tag}")
        # other known or safely ignorable custom fields carry nothing cdc uses
    edit.new_files.append((level, number, size, smallest, largest, s_seq, l_seq))


def _decode_wal_addition_body(c: _Cursor) -> tuple[int, int | None]:
    number = c.varint()
    size: int | None = None
    while True:
        tag = c.varint(32)
        if tag == _WAL_TERMINATE:
            return number, size
        if tag == _WAL_SYNCED_SIZE:
            size = c.varint()
        else:
            raise CorruptRecord(f"unknown WAL addition field {tag}")


def _skip_blob_fields(c: _Cursor) -> None:
    """A blob record's custom fields (tag, length-prefixed value) up to kEndMarker (0): none is used."""
    while c.varint(32) != 0:
        c.varstring()


def _decode_blob_addition(c: _Cursor) -> BlobFileMeta:
    number = c.varint()
    count = c.varint()
    nbytes = c.varint()
    method = c.varstring()
    checksum = c.varstring()
    _skip_blob_fields(c)
    return BlobFileMeta(number, count, nbytes, method, checksum)


def _decode_blob_garbage(c: _Cursor) -> tuple[int, int, int]:
    number = c.varint()
    count = c.varint()
    nbytes = c.varint()
    _skip_blob_fields(c)
    return number, count, nbytes


def decode_version_edit(payload: bytes) -> VersionEdit:
    """Decode one VersionEdit record (RocksDB or LevelDB).

    Raises:
        CorruptRecord: an unknown tag (without the safe-ignore bit), a short or bad field.
            ``offset``/``log_number`` are left for the caller to fill in.
    """
    edit = VersionEdit()
    c = _Cursor(payload)
    tag = -1
    try:
        while not c.done():
            tag = c.varint(32)
            if tag == TAG_COMPARATOR:
                edit.comparator = c.varstring()
            elif tag == TAG_LOG_NUMBER:
                edit.log_number = c.varint()
            elif tag == TAG_NEXT_FILE_NUMBER:
                edit.next_file_number = c.varint()
            elif tag == TAG_LAST_SEQUENCE:
                edit.last_sequence = c.varint()
            elif tag == TAG_COMPACT_CURSOR:
                level = c.varint(32)
                edit.compact_cursors.append((level, c.varstring()))
            elif tag == TAG_DELETED_FILE:
                level = c.varint(32)
                edit.deleted_files.append((level, c.varint()))
            elif tag in (TAG_NEW_FILE, TAG_NEW_FILE2, TAG_NEW_FILE3):
                level = c.varint(32)
                number = c.varint()
                if tag == TAG_NEW_FILE3:
                    c.varint(32)  # path id
                size = c.varint()
                smallest = c.varstring()
                largest = c.varstring()
                if tag == TAG_NEW_FILE:
                    s_seq, l_seq = _internal_key_seq(smallest), _internal_key_seq(largest)
                    s_seq, l_seq = min(s_seq, l_seq), max(s_seq, l_seq)
                else:
                    s_seq = c.varint()
                    l_seq = c.varint()
                edit.new_files.append((level, number, size, smallest, largest, s_seq, l_seq))
            elif tag == TAG_NEW_FILE4:
                _decode_new_file4(c, edit)
            elif tag == TAG_PREV_LOG_NUMBER:
                edit.prev_log_number = c.varint()
            elif tag == TAG_MIN_LOG_NUMBER_TO_KEEP:
                edit.min_log_number_to_keep = c.varint()
            elif tag == TAG_COLUMN_FAMILY:
                edit.cf_id = c.varint(32)
            elif tag == TAG_COLUMN_FAMILY_ADD:
                edit.cf_add = c.varstring().decode("utf-8", "backslashreplace")
            elif tag == TAG_COLUMN_FAMILY_DROP:
                edit.cf_drop = True
            elif tag == TAG_MAX_COLUMN_FAMILY:
                edit.max_column_family = c.varint(32)
            elif tag == TAG_IN_ATOMIC_GROUP:
                edit.in_atomic_group = c.varint(32)
            elif tag == TAG_BLOB_FILE_ADDITION or tag == TAG_BLOB_FILE_ADDITION_DEPRECATED:
                edit.blob_additions.append(_decode_blob_addition(c))
            elif tag == TAG_BLOB_FILE_GARBAGE or tag == TAG_BLOB_FILE_GARBAGE_DEPRECATED:
                edit.blob_garbage.append(_decode_blob_garbage(c))
            elif tag == TAG_DB_ID:
                edit.db_id = c.varstring()
            elif tag == TAG_WAL_ADDITION:
                edit.wal_additions.append(_decode_wal_addition_body(c))
            elif tag == TAG_WAL_DELETION:
                edit.wal_deletion = c.varint()
            elif tag == TAG_FULL_HISTORY_TS_LOW:
                edit.full_history_ts_low = c.varstring()
            elif tag == TAG_WAL_ADDITION2:
                body = c.varstring()
                edit.wal_additions.append(_decode_wal_addition_body(_Cursor(body)))
            elif tag == TAG_WAL_DELETION2:
                body = c.varstring()
                edit.wal_deletion = _Cursor(body).varint()
            elif tag == TAG_PERSIST_USER_DEFINED_TIMESTAMPS:
                body = c.varstring()
                if len(body) != 1:
                    raise CorruptRecord("persist_user_defined_timestamps field is not one byte")
                edit.persist_udt = body != b"\x00"
            elif tag == TAG_LAST_COMPACTED_MANIFEST_FILE_SIZE:
                body = c.varstring()
                edit.last_compacted_manifest_file_size = _Cursor(body).varint()
            elif tag & TAG_SAFE_IGNORE_MASK:
                # kSubcompactionProgress and anything newer that is marked ignorable
                c.varstring()
                edit.ignored_tags.append(tag)
            else:
                raise CorruptRecord(f"unknown version edit tag {tag}")
    except IndexError:
        raise CorruptRecord(f"version edit field of tag {tag} is truncated") from None
    return edit


class ManifestState:
    """The store's metadata as of the edits applied so far.

    Attributes:
        cf_names: live column families, id -> name (0 = "default").
        dropped_cfs: dropped column families, id -> name.
        log_number: per-CF log number (WALs below it hold no unflushed data of that CF).
        min_log_number_to_keep: DB-wide minimum live WAL (0 when never written).
        last_sequence: last sequence number recorded.
        next_file_number: next file number.
        files: live SST files by number.
        comparators: per-CF comparator name.
        max_column_family: highest CF id ever used.
        db_id: the DB id (RocksDB 9.7+ writes it), or None.
        wal_additions: WAL number -> synced size (track_and_verify_wals_in_manifest).
        min_wal_number: WALs below this are gone (from WAL deletion records), 0 when unknown.
        blob_files: live blob files by number.
        edits: number of edits applied.
        pending_group: edits of an incomplete atomic group (not applied).
    """

    def __init__(self) -> None:
        self.cf_names: dict[int, str] = {0: "default"}
        self.dropped_cfs: dict[int, str] = {}
        self.log_number: dict[int, int] = {}
        self.prev_log_number = 0
        self.min_log_number_to_keep = 0
        self.last_sequence = 0
        self.next_file_number = 0
        self.files: dict[int, FileMeta] = {}
        self.comparators: dict[int, str] = {}
        self.max_column_family = 0
        self.db_id: str | None = None
        self.wal_additions: dict[int, int | None] = {}
        self.min_wal_number = 0
        self.blob_files: dict[int, BlobFileMeta] = {}
        self.compact_cursors: dict[tuple[int, int], bytes] = {}
        self.edits = 0
        self.pending_group: list[VersionEdit] = []

    def cf_name(self, cf_id: int) -> str:
        """Name of a live or dropped CF; ``"cf<id>"`` if the MANIFEST never named it."""
        name = self.cf_names.get(cf_id)
        if name is None:
            name = self.dropped_cfs.get(cf_id)
        return name if name is not None else f"cf{cf_id}"

    def apply(self, edit: VersionEdit) -> None:
        """Apply one edit (buffering atomic-group members until the group is complete)."""
        if edit.in_atomic_group is not None:
            self.pending_group.append(edit)
            if edit.in_atomic_group == 0:
                group, self.pending_group = self.pending_group, []
                for member in group:
                    self._apply(member)
            return
        if self.pending_group:
            # An edit outside a group while one is open: RocksDB reports corruption; keep the
            # older members unapplied and go on with the new edit.
            self.pending_group = []
        self._apply(edit)

    def _apply(self, edit: VersionEdit) -> None:
        self.edits += 1
        cf = edit.cf_id
        if edit.cf_add is not None:
            self.cf_names[cf] = edit.cf_add
            self.dropped_cfs.pop(cf, None)
        if edit.cf_drop:
            name = self.cf_names.pop(cf, None)
            if name is not None and cf != 0:
                self.dropped_cfs[cf] = name
            for number in [n for n, f in self.files.items() if f.cf_id == cf]:
                del self.files[number]
            self.log_number.pop(cf, None)
        if edit.comparator is not None:
            self.comparators[cf] = edit.comparator.decode("utf-8", "backslashreplace")
        if edit.log_number is not None:
            self.log_number[cf] = edit.log_number
        if edit.prev_log_number is not None:
            self.prev_log_number = edit.prev_log_number
        if edit.next_file_number is not None:
            self.next_file_number = edit.next_file_number
        if edit.last_sequence is not None:
            self.last_sequence = edit.last_sequence
        if edit.min_log_number_to_keep is not None:
            self.min_log_number_to_keep = max(
                self.min_log_number_to_keep, edit.min_log_number_to_keep
            )
        if edit.max_column_family is not None:
            self.max_column_family = max(self.max_column_family, edit.max_column_family)
        if edit.db_id is not None:
            self.db_id = edit.db_id.decode("utf-8", "backslashreplace")
        for level, number in edit.deleted_files:
            f = self.files.get(number)
            if f is not None and f.level == level:
                del self.files[number]
        for level, number, size, smallest, largest, s_seq, l_seq in edit.new_files:
            self.files[number] = FileMeta(number, level, size, s_seq, l_seq, cf, smallest, largest)
        for level, key in edit.compact_cursors:
            self.compact_cursors[(cf, level)] = key
        for blob in edit.blob_additions:
            self.blob_files[blob.number] = blob
        for number, size in edit.wal_additions:
            self.wal_additions[number] = size
        if edit.wal_deletion is not None:
            self.min_wal_number = max(self.min_wal_number, edit.wal_deletion)
            for number in [n for n in self.wal_additions if n < edit.wal_deletion]:
                del self.wal_additions[number]

    def min_live_log_number(self) -> int:
        """Smallest WAL number that may still hold unflushed data (0 = unknown/all)."""
        live = [self.log_number.get(cf, 0) for cf in self.cf_names]
        candidates = [n for n in live if n]
        low = min(candidates) if candidates else 0
        return max(low, self.min_log_number_to_keep) if low else self.min_log_number_to_keep


def decode_manifest(
    data: bytes, *, leveldb: bool = False, strict_tail: bool = False, number: int = -1
) -> ManifestState:
    """Decode a whole MANIFEST file.

    Args:
        data: the file's bytes.
        leveldb: LevelDB framing.
        strict_tail: treat an incomplete last record as an error (a sealed file); by default
            it is ignored, as the store may be writing it right now.
        number: the MANIFEST's file number, for error messages.

    Raises:
        CorruptRecord: a bad record (with the file number and offset).
    """
    reader = LogReader(number, leveldb=leveldb)
    reader.feed(data)
    state = ManifestState()
    for rec in reader.read():
        try:
            edit = decode_version_edit(rec.payload)
        except FormatError as exc:
            raise CorruptRecord(exc.reason, log_number=number, offset=rec.offset) from None
        state.apply(edit)
    if reader.state == "corrupt":
        assert reader.error is not None
        raise reader.error
    if strict_tail:
        err = reader.close()
        if err is not None:
            raise err
    return state
