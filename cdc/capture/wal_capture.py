"""Capture: follow the store's WAL files and turn every record into ``key_change`` events.

``WalCapture`` is a daemon component (``async def run(ctx)`` until ``ctx.stop`` is set). It reads
the store's files only: it never takes the store's LOCK and never writes into its directories.

How it follows the store
------------------------
* ``watchfiles.awatch`` on the WAL dir (and ``archive/``, and the DB dir for CURRENT/MANIFEST)
  only *wakes* the loop (plus an inotify thread that opens new WALs at once, see Limits, and
  wakes the loop on every WAL write: IN_MODIFY, one wake-up in flight). Every wake-up reads from the saved file offset; a periodic rescan
  (``config.rescan_interval_s``) catches lost notifications; after new data arrived the loop
  polls the live WAL every ``hot_poll_s`` for a short while (low latency under load).
* WALs are read strictly in number order, one at a time ("current"). Every WAL with a number
  >= current is opened as soon as it is seen, and its fd is kept: when the store deletes or
  archives a WAL after a flush, its unread tail stays readable through the fd.
* Sealing (when current is complete and capture moves on to the next WAL), reference §6.3:
  a higher WAL holds a complete data record; or current was deleted/archived/recycled (its name
  is gone or holds another inode) and it is read to its end; or the MANIFEST says it is
  obsolete (number below every live column family's log number / min_log_number_to_keep).
  Merely "a higher WAL exists" is not enough: RocksDB creates WAL N+1 before the last write
  to N is flushed.
* Recycled WALs: the reader stops at a record stamped with another log number (state "end").

Events and positions
--------------------
* One ``KeyChange`` per data record (put / delete / single_delete / merge / delete_range /
  put_entity; timed_put is reported as put, blob_index as put without a value). Markers
  (log_data, 2PC, noop) produce no event. ``seq`` is the record's own sequence number,
  ``timestamp`` the capture time (ms), the value is kept (the journal strips it for subscribers
  that did not ask for values). Column family ids map to names through the MANIFEST, reloaded
  when CURRENT/MANIFEST change or an unknown id appears.
* Sequence numbering: per key (plain DB, WriteCommitted) or per (sub-)batch (TransactionDB
  WRITE_PREPARED / WRITE_UNPREPARED), decided record by record by :class:`cdc.wal.SeqNumbering`
  (2PC begin markers, how a record ends); ``seq`` is always the store's own number.
* TransactionDB 2PC: prepared writes are held by xid and emitted at their Commit (WriteCommitted:
  with the numbers RocksDB gives them there; WritePrepared/Unprepared: with the numbers they got
  at prepare time); rolled-back ones never appear. The unresolved prepared sections are saved in
  checkpoint ``"wal_2pc"`` (written with the events whenever they change), so a transaction
  prepared before a daemon restart and committed after it is delivered.
* Position = checkpoint ``"wal"``: (WAL number, offset after the last consumed record, last
  sequence number, compression type, timestamp sizes, numbering scheme), committed in the same
  journal transaction as the events (``bus.emit(events, checkpoints=...)``): after ``kill -9``
  capture resumes exactly there, with nothing lost or duplicated. The only records ever skipped
  as already delivered are those of the checkpointed WAL before the checkpointed offset; a
  sequence number at or below the last one is no proof (per-batch stores reuse numbers).
* First start without a checkpoint: capture starts at the **oldest WAL on disk** (including
  ``archive/``), i.e. everything the store still has in its WALs is delivered once. Data that
  is only in SST files is not replayed (cdc is a change feed, not a snapshot).

Sequence gaps (never silent)
----------------------------
The next batch must start at last_seq + 1 (reference §2). A jump (a WAL deleted before it was
read, e.g. while cdc was down, or data lost to corruption) produces a ``capture_gap`` event
(from_seq..to_seq, reason), the ``cdc_capture_gaps_total`` metric and readiness condition
``capture_gap`` unhealthy with "gap in sequence numbers A..B". Acknowledgement rule: the
condition clears by itself ``gap_hold_s`` seconds (default 300) after the last gap, or when the
daemon restarts (the gap event stays in the journal). When the checkpointed WAL is gone and the
remaining WALs hold nothing yet, the MANIFEST's last sequence number reveals the gap at once.

Corruption
----------
At the live tail a bad record is first treated as a torn write: capture waits and re-reads from
the last good offset. If the same record is still bad after ``corrupt_retry_s`` and the file has
grown past its block (or the WAL is sealed), it is persistent: ``cdc_capture_decode_errors_total``
+1, readiness condition ``capture_decode`` unhealthy (for ``corrupt_hold_s``), and reading
resumes at the next 32 KiB block. The records lost show up as a sequence gap. Nothing raises.
A torn last record (cut short, or bad with nothing after it) followed by a WAL whose first
record continues at the next sequence number is what a writer crash and reopen leave (RocksDB's
recovery stops there too): the normal end of that WAL, no error and no readiness condition.

Store going back in time (``store_reset``)
------------------------------------------
The store's identity (DB id: ``IDENTITY``, else the MANIFEST's db id; None for LevelDB) is kept
with the position (checkpoint ``"wal.store"``, JSON: ``db_id`` and ``seq_wal``, the WAL of the
last delivered record, which the duplicate filter needs). ``replaced``: another DB id at start
or on a rescan / CURRENT change, a WAL number that now names another file (RocksDB never
gives a number twice), or a MANIFEST whose next file number is below the WAL capture reached:
capture starts over at that store's oldest WAL with no sequence baseline. ``recovered_earlier``
(same store): the first record of a newer WAL is at or below the last delivered sequence number
(a reopen after the live WAL lost its tail): capture goes on from that record. Both commit a
``store_reset`` event (old and new WAL/offset/seq/DB id) with the new position, keep readiness
condition ``capture_reset`` unhealthy for ``gap_hold_s`` and count ``cdc_store_resets_total``.

WAL switches: before moving to the next WAL, capture rescans the WAL dir and ``archive/``
(``_move_on``): a WAL created and archived while capture was paused must not be jumped over
just because a later one was already opened by the inotify thread.

WAL archiving off (newest ``OPTIONS-*``: ``WAL_ttl_seconds`` = ``WAL_size_limit_MB`` = 0): one
warning, gauge ``cdc_wal_archiving_enabled`` 0 and readiness warning ``wal_archiving`` (the
probe stays healthy); checked at start and when CURRENT changes.

Limits
------
On Linux an inotify thread (``_WalGrabber``) opens every new WAL the moment it is created, so a
WAL that lives only a few milliseconds is still read in full. The thread needs the GIL to open
the file; when the event loop holds it for longer than a WAL lives (tiny memtables at ~1 M
puts/s: WALs living ~1-3 ms) a WAL can still be deleted unseen; its records are then reported as
a sequence gap. Turning on WAL archiving (``WAL_ttl_seconds``) closes that window: capture reads
``archive/``.

Health
------
startup ``capture``: healthy once the initial catch-up read past the WAL bytes present when
capture first looked (or reached an unreadable tail it can only wait on; readiness says why).
liveness: ``health.beat("capture")`` on every loop turn (at least every rescan interval).
readiness: ``capture_store`` (WAL dir missing/unreadable), ``capture_gap``, ``capture_decode``,
``capture_lag`` (unread bytes > ``config.readiness_max_lag_bytes``).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import logging
import os
import struct
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

from cdc.errors import CdcError, FormatError
from cdc.model.events import CaptureGap, KeyChange, StoreReset
from cdc.format.blocks import BLOCK_SIZE, skip_orphan_fragments
from cdc.sources.store import list_wal_files, load_manifest, open_readonly, read_identity, read_store_file, read_wal_archiving
from cdc.format.wal import SEQ_PER_BATCH, SEQ_PER_KEY, Batch, SeqNumbering, WalReader

__all__ = [
    "WalCapture",
    "WalCheckpoint",
    "encode_checkpoint",
    "decode_checkpoint",
    "encode_prepared",
    "decode_prepared",
    "CHECKPOINT_NAME",
    "PREPARED_CHECKPOINT_NAME",
]

log = logging.getLogger("cdc.capture")

CHECKPOINT_NAME = "wal"
#: the store identity capture's position belongs to (JSON ``{"db_id": ...}``), committed with it
IDENTITY_CHECKPOINT = "wal.store"
#: unresolved 2PC prepared sections (written only when they change; see encode_prepared)
PREPARED_CHECKPOINT_NAME = "wal_2pc"

# version, wal number, offset, last seq (-1 = none yet), compression
_CKPT = struct.Struct("<BQQqB")
_CKPT_V1 = 1
_CKPT_V2 = 2  # v2 = v1 + u16 count + count x (u32 cf id, u16 timestamp size)
_CKPT_VERSION = 3  # v3 = v2 + u8 numbering scheme (0 unknown, 1 per key, 2 per batch; +4 = strong)
_SCHEME_CODES = {None: 0, SEQ_PER_KEY: 1, SEQ_PER_BATCH: 2}
_SCHEME_NAMES = {v: k for k, v in _SCHEME_CODES.items()}
_CKPT_TS = struct.Struct("<IH")
_U16 = struct.Struct("<H")

#: operation names emitted as key_change, by WAL op name
_KEY_OPS: dict[str, str] = {
    "put": "put",
    "delete": "delete",
    "single_delete": "single_delete",
    "merge": "merge",
    "delete_range": "delete_range",
    "put_entity": "put_entity",
    "timed_put": "put",
    "blob_index": "put",
}
_BEGIN_PREPARE = frozenset({"begin_prepare", "begin_persisted_prepare", "begin_unprepare"})
_NO_VALUE_OPS = frozenset({"delete", "single_delete", "delete_range", "blob_index"})

_b64 = base64.b64encode
_json_encode = msgspec.json.Encoder().encode


class WalCheckpoint(NamedTuple):
    """Capture position persisted with the events (see module docstring).

    ``ts_sizes`` are the user-defined timestamp sizes (cf id, size) announced earlier in the
    WAL: a reader resuming mid-file needs them to split keys correctly.
    """

    log_number: int
    offset: int
    last_seq: int
    compression: int
    ts_sizes: tuple[tuple[int, int], ...] = ()
    scheme: str | None = None  # sequence numbering seen so far (wal.SEQ_PER_KEY / SEQ_PER_BATCH)
    scheme_strong: bool = False  # decided by a 2PC begin marker (see wal.seq_scheme_evidence)


def encode_checkpoint(cp: WalCheckpoint) -> bytes:
    """Checkpoint -> bytes (version 3: the 26-byte v1 layout, the timestamp sizes, the scheme)."""
    head = _CKPT.pack(_CKPT_VERSION, cp.log_number, cp.offset, cp.last_seq, cp.compression)
    ts = sorted(cp.ts_sizes)
    code = _SCHEME_CODES.get(cp.scheme, 0) | (4 if cp.scheme_strong else 0)
    return b"".join([head, _U16.pack(len(ts)), *(_CKPT_TS.pack(c, n) for c, n in ts), bytes((code,))])


def decode_checkpoint(data: bytes | None) -> WalCheckpoint | None:
    """Bytes -> checkpoint (v1, v2 or v3), or None when absent or not understood (capture then starts over)."""
    if not data or len(data) < _CKPT.size:
        return None
    version = data[0]
    if version == _CKPT_V1:
        if len(data) != _CKPT.size:
            return None
        _, number, offset, last_seq, compression = _CKPT.unpack(data)
        return WalCheckpoint(number, offset, last_seq, compression)
    if version not in (_CKPT_V2, _CKPT_VERSION) or len(data) < _CKPT.size + _U16.size:
        return None
    _, number, offset, last_seq, compression = _CKPT.unpack_from(data)
    (n,) = _U16.unpack_from(data, _CKPT.size)
    p = _CKPT.size + _U16.size
    tail = 1 if version == _CKPT_VERSION else 0
    if len(data) != p + n * _CKPT_TS.size + tail:
        return None
    ts = tuple(_CKPT_TS.unpack_from(data, p + i * _CKPT_TS.size) for i in range(n))
    scheme, strong = None, False
    if tail:
        code = data[-1]
        if code & ~7 or (code & 3) not in _SCHEME_NAMES:
            return None
        scheme, strong = _SCHEME_NAMES[code & 3], bool(code & 4) and bool(code & 3)
    return WalCheckpoint(number, offset, last_seq, compression, ts, scheme, strong)


_PREPARED_VERSION = 1
_prepared_encoder = msgspec.msgpack.Encoder()
_prepared_decoder = msgspec.msgpack.Decoder()


def encode_prepared(prepared: dict[bytes | None, tuple[str, list[Any]]]) -> bytes:
    """Unresolved 2PC prepared sections -> bytes (checkpoint ``wal_2pc``).

    ``prepared``: xid -> (numbering scheme of the prepare, its data records as ``wal.Op``
    tuples). Per-batch (WritePrepared/Unprepared) records carry the sequence numbers they got at
    prepare time; per-key (WriteCommitted) ones get theirs at the commit.
    """
    return _prepared_encoder.encode(
        [_PREPARED_VERSION, [[xid, scheme, [list(op) for op in ops]] for xid, (scheme, ops) in prepared.items()]]
    )


def decode_prepared(data: bytes | None) -> dict[bytes | None, tuple[str, list[Any]]] | None:
    """Bytes -> prepared sections (see :func:`encode_prepared`); None when absent or not understood."""
    if not data:
        return None
    from cdc.format.wal import Op

    try:
        version, txns = _prepared_decoder.decode(data)
        if version != _PREPARED_VERSION:
            return None
        out: dict[bytes | None, tuple[str, list[Any]]] = {}
        for xid, scheme, ops in txns:
            if scheme not in (SEQ_PER_KEY, SEQ_PER_BATCH):
                return None
            recs = [Op(*op) for op in ops]
            for r in recs:
                if not (
                    type(r.seq) is int
                    and r.op in _KEY_OPS
                    and type(r.cf_id) is int
                    and all(f is None or type(f) is bytes for f in (r.key, r.value, r.end_key, r.ts))
                ):
                    return None
            if xid is not None and type(xid) is not bytes:
                return None
            out[xid] = (scheme, recs)
        return out
    except (msgspec.DecodeError, TypeError, ValueError):
        return None


class _Tail:
    """One WAL file capture has opened (fd kept until the WAL is done)."""

    __slots__ = ("number", "path", "fd", "ino", "gone", "peek_size", "has_record", "scanned")

    def __init__(self, number: int, path: str, fd: int, ino: int) -> None:
        self.number = number
        self.path = path
        self.fd = fd
        self.ino = ino
        self.gone = False  # name deleted / archived away / recycled to another number
        self.peek_size = -1  # file size when last checked for a complete record
        self.has_record = False  # holds at least one complete data record
        self.scanned = False  # a directory scan saw it (so it saw every lower-numbered WAL too)

    def size(self) -> int:
        return os.fstat(self.fd).st_size


class _Decoded(NamedTuple):
    events: list[Any]
    batches: int
    unknown_cfs: list[tuple[int, int]]  # (index in events, cf id) of ids missing from cf_names
    gaps: list[tuple[int, int]]
    last_seq: int
    counts: dict[int, list[int]] | None = None  # cf id -> _STAT_SLOTS counters (n, bytes per op kind)
    bad_origins: int = 0  # cdc-origin: LogData blobs ignored (not UTF-8 or too long)
    rewind: tuple[int, int, int] | None = None  # (WAL, offset, seq) of a batch behind last_seq in a newer WAL


ORIGIN_MARKER = b"cdc-origin:"
"""A LogData blob starting with this names the writer of its WriteBatch (``origin``)."""
MAX_ORIGIN_BYTES = 256
_STAT_OPS = ("put", "delete", "merge", "delete_range")
_STAT_SLOT = {"put": 0, "put_entity": 0, "delete": 2, "single_delete": 2, "merge": 4, "delete_range": 6}
"""key_change operation -> index of its (count, bytes) pair in a per-cf counter list of 8."""


def origin_marks(ops: list[Any]) -> tuple[list[tuple[int, str]], int]:
    """(marks, ignored) of one WAL record: each valid ``cdc-origin:`` LogData blob as (sequence
    number of the first data record after it, origin); ``ignored`` counts markers that are not
    UTF-8 or longer than MAX_ORIGIN_BYTES. Pure."""
    marks: list[tuple[int, str]] = []
    ignored = 0
    pending: list[str] = []
    for op in ops:
        if op[0] >= 0:
            if pending:
                marks.extend((op[0], o) for o in pending)
                pending = []
            continue
        if op[1] != "log_data":
            continue
        blob = op[3] or b""
        if not blob.startswith(ORIGIN_MARKER):
            continue
        rest = blob[len(ORIGIN_MARKER) :]
        if len(rest) > MAX_ORIGIN_BYTES:
            ignored += 1
            continue
        try:
            pending.append(rest.decode("utf-8"))
        except UnicodeDecodeError:
            ignored += 1
    marks.extend((1 << 63, o) for o in pending)  # a marker after the last data record
    return marks, ignored


def _origin_at(marks: list[tuple[int, str]], seq: int) -> str:
    """Origin of the data record ``seq``: the nearest marker before it, else the record's first."""
    found = marks[0][1]
    for from_seq, o in marks:
        if from_seq > seq:
            break
        found = o
    return found


_UNKNOWN_CF = "\x00unknown"


def _add_count(counts: dict[int, list[int]], cf_id: int, slot: int, n: int, nbytes: int) -> None:
    c = counts.get(cf_id)
    if c is None:
        c = counts[cf_id] = [0, 0, 0, 0, 0, 0, 0, 0]
    c[slot] += n
    c[slot + 1] += nbytes


def _marks_tail(origin: str | None, batch_seq: int | None, batch_count: int | None) -> bytes:
    """The end of a pre-encoded key_change after "seq": as msgspec encodes these fields."""
    out = b""
    if origin is not None:
        out += b',"origin":' + _json_encode(origin)
    if batch_seq is not None:
        out += b',"batch_seq":%d,"batch_count":%d' % (batch_seq, batch_count)
    return out + b"}"

_IN_CREATE = 0x100
_IN_MOVED_TO = 0x80
_IN_MODIFY = 0x2
_IN_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)


class _WalGrabber:
    """Opens each new ``NNNNNN.log`` the moment the store creates it (Linux inotify thread).

    Why: a WAL can be created and deleted again within milliseconds (small memtables, fast
    writers); the watchfiles hint reaches the event loop later than that. This thread blocks
    in read(2) on an inotify fd (no GIL held), opens the new file at once and hands the open
    fd to the event loop. Purely an accelerator: without inotify (other OS, limits) capture
    works the same from watchfiles hints and rescans.
    """

    def __init__(
        self, wal_dir: str, on_open: Callable[[int, str, int], None], on_modify: Callable[[], None] | None = None
    ) -> None:
        import ctypes
        import ctypes.util
        import threading

        self.wal_dir = wal_dir
        self.on_open = on_open
        self.on_modify = on_modify
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self._fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        mask = _IN_CREATE | _IN_MOVED_TO | (_IN_MODIFY if on_modify is not None else 0)
        wd = libc.inotify_add_watch(self._fd, wal_dir.encode(), mask)
        if wd < 0:
            os.close(self._fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {wal_dir} failed")
        self._stop = False
        self._r, self._w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="cdc-wal-grabber", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import select

        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._r, select.POLLIN)
        base = self.wal_dir
        while not self._stop:
            try:
                poller.poll()
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                return
            pos = 0
            modified = False
            while pos + _IN_EVENT.size <= len(data):
                _wd, mask, _cookie, ln = _IN_EVENT.unpack_from(data, pos)
                name = data[pos + _IN_EVENT.size : pos + _IN_EVENT.size + ln].split(b"\0", 1)[0]
                pos += _IN_EVENT.size + ln
                if mask & _IN_MODIFY:
                    modified = modified or name.endswith(b".log")
                    continue
                if name.endswith(b".log") and name[:-4].isdigit():
                    path = os.path.join(base, name.decode())
                    try:
                        fd = open_readonly(path)
                    except OSError:
                        continue
                    self.on_open(int(name[:-4]), path, fd)
            if modified and self.on_modify is not None:
                self.on_modify()

    def close(self) -> None:
        self._stop = True
        try:
            os.write(self._w, b"x")
        except OSError:
            pass
        self._thread.join(2)
        for fd in (self._fd, self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass


class WalCapture:
    """Tail the store's WALs into ``key_change`` events (component; see module docstring).

    Args:
        chunk_bytes: most bytes read from a WAL per step.
        thread_min_bytes: chunks at least this big are decoded in a worker thread.
        hot_poll_s: poll interval right after data arrived (0 disables).
        hot_window_s: how long after the last data hot polling continues.
        gap_hold_s: how long readiness stays unhealthy after a sequence gap.
        corrupt_retry_s: how long a bad record at the live tail is retried before skipping.
        corrupt_hold_s: how long readiness stays unhealthy after skipping corrupt data.
        max_open: most WAL fds held ahead of the current one.
        watch: use watchfiles notifications (else rescans only).
        grab: open new WALs from an inotify thread the moment they are created (Linux).
        wake_on_write: that thread also wakes the loop on every WAL write (IN_MODIFY; at most
            one wake-up in flight), so a write is read within ~0.1 ms instead of the next
            watchfiles step / hot poll.
    """

    def __init__(
        self,
        *,
        chunk_bytes: int = 4 << 20,
        thread_min_bytes: int = 256 << 10,
        hot_poll_s: float = 0.002,
        hot_window_s: float = 0.1,
        gap_hold_s: float = 300.0,
        corrupt_retry_s: float = 0.5,
        corrupt_hold_s: float = 60.0,
        max_open: int = 256,
        watch: bool = True,
        grab: bool = True,
        wake_on_write: bool = True,
    ) -> None:
        self.chunk_bytes = chunk_bytes
        self.thread_min_bytes = thread_min_bytes
        self.hot_poll_s = hot_poll_s
        self.hot_window_s = hot_window_s
        self.gap_hold_s = gap_hold_s
        self.corrupt_retry_s = corrupt_retry_s
        self.corrupt_hold_s = corrupt_hold_s
        self.max_open = max_open
        self.watch = watch
        self.grab = grab
        self.wake_on_write = wake_on_write
        # state (valid while running)
        self.tails: dict[int, _Tail] = {}
        self.cur: _Tail | None = None
        self.reader: WalReader | None = None
        self.pos = 0  # file offset of the next byte to feed the reader
        self.floor = 0  # WALs below this number are done
        self.last_seq = -1  # last sequence number consumed (the next record should start after it)
        self.last_seq_wal = -1  # WAL the last_seq came from
        self.numbering = SeqNumbering()  # per-key / per-batch sequence numbering (wal.py)
        self.seq_guesses = 0  # records numbered without evidence of the scheme
        self._guesses_reported = 0
        # (WAL number, offset): records of that WAL before that offset were delivered (the
        # checkpoint position); the only proof that lets capture skip a record as a duplicate.
        self._done: tuple[int, int] = (-1, 0)
        self._done_ino: int | None = None  # inode of that WAL (None: not seen yet in this run)
        self.cf_names: dict[int, str] = {0: "default"}
        self.manifest_last_seq = -1
        self.manifest_keep = 0  # WALs below this number are obsolete per the MANIFEST
        self.manifest_next_file = 0
        self.store_resets = 0
        self.db_id: str | None = None  # the store's identity (IDENTITY / MANIFEST db id; None: unknown)
        self.manifest_db_id: str | None = None
        self.wal_archiving: bool | None = None  # from the newest OPTIONS file (None: unknown / LevelDB)
        self.caught_up = False
        # counters (also exported as metrics)
        self.events_captured = 0
        self.batches_captured = 0
        self.gaps = 0
        self.gap_seqs = 0
        self.decode_errors = 0
        self.bytes_read = 0
        self.lag_bytes = 0
        self.lag_seq = 0
        self.cf_counts: dict[str, list[int]] = {}  # cf -> totals (count, bytes) x put/delete/merge/delete_range
        self.origins_ignored = 0  # cdc-origin: markers not UTF-8 or longer than 256 bytes
        self.idle_at = time.monotonic()  # last time capture had read everything there was
        # internals
        self._ctx: Any = None
        self._metrics: Any = None
        self._leveldb = False
        self._wal_dir = ""
        self._db_dir = ""
        self._wake = asyncio.Event()
        self._dir_dirty = True
        self._manifest_dirty = True
        self._manifest_sig: tuple[int, ...] | None = None
        self._next_rescan = 0.0
        self._hot_until = 0.0
        self._resume_missing = False  # checkpointed WAL was gone at start: check the MANIFEST
        self._conds: dict[tuple[str, str], bool] = {}
        self._cond_reasons: dict[tuple[str, str], str] = {}
        self._scan_ok = False
        self._resume: WalCheckpoint | None = None
        self._startup_target: tuple[int, int] | None = None  # (WAL number, size) at start
        self._gap_until = 0.0
        self._reset_until = 0.0
        self._corrupt_key: tuple[int, int] | None = None
        self._corrupt_since = 0.0
        self._corrupt_until = 0.0
        self._dir_ino: int | None = None
        self._watch_restart: asyncio.Event | None = None
        self._grabber: _WalGrabber | None = None
        self._prepared: dict[bytes | None, tuple[str, list[Any]]] = {}  # xid -> (scheme, prepared ops) (2PC)
        self._prepared_dirty = False  # changed since last persisted (checkpoint wal_2pc)
        self._grabbed: collections.deque[tuple[int, str, int]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000
        self._modify_pending = False
        self._cf_json_cache: tuple[dict[int, str], dict[int, tuple[str, bytes]]] | None = None
        self._seq_pos: tuple[int, int] = (-1, 0)  # (WAL, offset) just after the last delivered record
        self._seq_ino = 0  # inode of WAL last_seq_wal (0: unknown)
        self._replaced_hint = ""  # a WAL name now holds another file: the store was replaced
        self._ident_dirty = False  # CURRENT changed (a store was opened): check the identity
        self._shorter_hint = ""  # the checkpointed WAL was shorter than the checkpoint at start

    # ------------------------------------------------------------------ component

    async def run(self, ctx: Any) -> None:
        """Capture until ``ctx.stop`` is set. Never raises on the store's content."""
        self._ctx = ctx
        self._metrics = getattr(ctx, "metrics", None)
        self._leveldb = ctx.store.kind == "leveldb"
        self._wal_dir = ctx.store.wal_dir
        self._db_dir = ctx.store.db_dir
        self._set_cond("startup", "capture", False, "initial WAL catch-up running")
        raw = ctx.journal.get_checkpoint(CHECKPOINT_NAME)
        cp = decode_checkpoint(raw)
        if raw and cp is None:
            log.warning("capture checkpoint of %d bytes is not understood (newer cdc?): starting over", len(raw))
        if cp is not None:
            self.floor = cp.log_number
            self.last_seq = cp.last_seq
            self.last_seq_wal = cp.log_number
            self._seq_pos = (cp.log_number, cp.offset)
            self.numbering = SeqNumbering(cp.scheme, cp.scheme_strong)
            self._done = (cp.log_number, cp.offset)
            self._resume = cp
            raw_prep = ctx.journal.get_checkpoint(PREPARED_CHECKPOINT_NAME)
            prepared = decode_prepared(raw_prep)
            if raw_prep and prepared is None:
                log.warning("2PC checkpoint of %d bytes is not understood: prepared transactions are forgotten", len(raw_prep))
            self._prepared = prepared or {}
        else:
            self._resume = None
            log.info("no capture checkpoint: starting at the oldest WAL in %s", self._wal_dir)
        await self._reload_manifest(force=True)
        self._check_archiving(initial=True)
        await self._start_identity(ctx, cp)
        stopper = asyncio.create_task(self._wake_on_stop(), name="capture:stop")
        watcher = asyncio.create_task(self._watch_loop(), name="capture:watch") if self.watch else None
        if not self.watch:
            try:
                self._dir_ino = os.stat(self._wal_dir).st_ino
            except OSError:
                self._dir_ino = None
            self._arm_grabber()
        try:
            while not ctx.stop.is_set():
                self._beat()
                await self._step()
                await self._wait()
        finally:
            if self._watch_restart is not None:
                self._watch_restart.set()
            for t in (watcher, stopper):
                if t is not None:
                    t.cancel()
            for t in (watcher, stopper):
                if t is not None:
                    try:
                        await t
                    except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                        pass
            self._disarm_grabber()
            self._close_all()

    async def _wake_on_stop(self) -> None:
        await self._ctx.stop.wait()
        self._wake.set()
        if self._watch_restart is not None:
            self._watch_restart.set()

    async def _wait(self) -> None:
        now = time.monotonic()
        if self._hot_until > now and self.hot_poll_s > 0 and not self._write_wakes:
            timeout = self.hot_poll_s
        else:
            timeout = max(0.0, self._next_rescan - now)
            timeout = min(timeout, self._timer_deadline(now))
        if not self._wake.is_set() and timeout > 0:
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass
        self._wake.clear()

    def _timer_deadline(self, now: float) -> float:
        """Seconds until a timed health condition must be re-evaluated."""
        t = 3600.0
        for until in (self._gap_until, self._corrupt_until, self._reset_until):
            if until > now:
                t = min(t, until - now + 0.01)
        if self._corrupt_key is not None:
            t = min(t, self.corrupt_retry_s / 4)
        return t

    # ------------------------------------------------------------------ watching

    async def _watch_loop(self) -> None:
        """Turn filesystem notifications into wake-ups; re-arm when the directory changes."""
        import watchfiles

        ctx = self._ctx
        while not ctx.stop.is_set():
            paths = [p for p in {self._wal_dir, self._db_dir} if os.path.isdir(p)]
            try:
                self._dir_ino = os.stat(self._wal_dir).st_ino
            except OSError:
                self._dir_ino = None
            if not paths:
                await self._sleep_stop(self._ctx.config.rescan_interval_s)
                continue
            restart = self._watch_restart = asyncio.Event()
            if ctx.stop.is_set():
                return
            self._arm_grabber()
            try:
                async for changes in watchfiles.awatch(
                    *paths,
                    watch_filter=self._watch_filter,
                    debounce=5,
                    step=1,
                    stop_event=restart,
                    recursive=True,
                    rust_timeout=max(100, int(self._ctx.config.rescan_interval_s * 1000)),
                    yield_on_timeout=False,
                ):
                    self._note_changes(changes)
                    self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a vanished dir etc.: hints only, retry
                log.debug("watcher stopped: %s", exc)
            if not ctx.stop.is_set() and not restart.is_set():
                await self._sleep_stop(0.05)

    def _arm_grabber(self) -> None:
        self._take_grabbed()
        self._disarm_grabber()
        if not self.grab or not os.path.isdir(self._wal_dir):
            return
        self._loop = asyncio.get_running_loop()
        try:
            self._grabber = _WalGrabber(self._wal_dir, self._on_grab, self._on_modify if self.wake_on_write else None)
        except (OSError, AttributeError) as exc:  # no inotify: hints + rescans still work
            log.debug("no inotify WAL grabber: %s", exc)
            self._grabber = None

    @property
    def _write_wakes(self) -> bool:
        """True while the inotify thread wakes the loop on WAL writes (hot polling is moot then)."""
        return self._grabber is not None and self.wake_on_write

    def _disarm_grabber(self) -> None:
        g, self._grabber = self._grabber, None
        if g is not None:
            g.close()
        while self._grabbed:
            try:
                os.close(self._grabbed.popleft()[2])
            except (OSError, IndexError):
                pass

    def _on_grab(self, number: int, path: str, fd: int) -> None:
        """(grabber thread) a new WAL was opened: hand the fd to the loop."""
        self._grabbed.append((number, path, fd))
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # loop closed
                pass

    def _on_modify(self) -> None:
        """(grabber thread) a WAL was written: wake the loop at once (one wake-up in flight)."""
        if self._modify_pending:
            return
        loop = self._loop
        if loop is not None:
            self._modify_pending = True
            try:
                loop.call_soon_threadsafe(self._wake_on_write)
            except RuntimeError:  # loop closed
                pass

    def _wake_on_write(self) -> None:
        self._modify_pending = False
        self._wake.set()

    def _take_grabbed(self) -> None:
        """(loop) adopt the fds the grabber opened; close the ones not needed."""
        while self._grabbed:
            number, path, fd = self._grabbed.popleft()
            if number >= self.floor and number not in self.tails and len(self.tails) < self.max_open:
                ino = os.fstat(fd).st_ino
                for old in self.tails.values():
                    if old.ino == ino and old.number != number:
                        old.gone = True  # recycled
                self.tails[number] = _Tail(number, path, fd, ino)
                self._dir_dirty = True
            else:
                try:
                    os.close(fd)
                except OSError:
                    pass

    async def _sleep_stop(self, delay_s: float) -> None:
        try:
            async with asyncio.timeout(delay_s):
                await self._ctx.stop.wait()
        except TimeoutError:
            pass

    @staticmethod
    def _watch_filter(change: Any, path: str) -> bool:
        name = os.path.basename(path)
        return name.endswith(".log") or name == "CURRENT" or name.startswith("MANIFEST") or name == "archive"

    def _note_changes(self, changes: set[tuple[Any, str]]) -> None:
        """Mark what to look at; open a newly created WAL at once (it may be deleted soon)."""
        cur_path = self.cur.path if self.cur is not None else None
        for _change, path in changes:
            name = os.path.basename(path)
            if name == "CURRENT" or name.startswith("MANIFEST"):
                self._manifest_dirty = True
                if name == "CURRENT":
                    self._ident_dirty = True
                continue
            if path != cur_path and name.endswith(".log") and name[:-4].isdigit():
                number = int(name[:-4])
                if number >= self.floor and number not in self.tails and len(self.tails) < self.max_open:
                    self._open_wal(number, path)
            if path != cur_path:
                self._dir_dirty = True

    # ------------------------------------------------------------------ one step

    async def _step(self) -> None:
        if self._grabbed:
            self._take_grabbed()
        now = time.monotonic()
        if now >= self._next_rescan:
            self._dir_dirty = True
            self._next_rescan = now + self._ctx.config.rescan_interval_s
            self._check_watch_dir()
            if self._manifest_changed():
                self._manifest_dirty = True
            if (self.cur is None or self.cur.gone) and self.floor > 0 and self._scan_ok:
                await self._check_store_replaced()
            await self._check_identity(self._ident_dirty)
        elif self._ident_dirty:
            await self._check_identity(True)
        if self._dir_dirty:
            self._dir_dirty = False
            self._scan()
        if self._replaced_hint:
            await self._reset_store("replaced", self._replaced_hint)
        try:
            await self._pump()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - never die on a file's content; report and retry
            log.exception("capture step failed; retrying")
            self.decode_errors += 1
            self._set_cond("readiness", "capture_decode", False, "capture step failed (see log); retrying")
            self._corrupt_until = time.monotonic() + self.corrupt_hold_s
            await self._sleep_stop(0.1)
        self._timers(time.monotonic())
        self._export()

    async def _check_store_replaced(self) -> None:
        """File numbers below the WAL capture is at: the store was recreated (or restored).

        A live store's next file number is always above its current WAL, so a MANIFEST whose
        next file number is < ``floor`` belongs to a new store. Capture then starts over at the
        new store's oldest WAL (its sequence numbers restart too), and says so: readiness
        condition ``capture_reset`` for ``gap_hold_s``, and a warning in the log.
        """
        if self._manifest_changed():
            await self._reload_manifest()
        nxt = self.manifest_next_file
        if not nxt or nxt >= self.floor:
            return
        await self._reset_store(
            "replaced",
            f"the store was recreated or restored (next file number {nxt} < WAL {self.floor:06d} "
            "that capture had reached)",
        )

    # ------------------------------------------------------------------ store identity / going back in time

    def _read_db_id(self) -> str | None:
        """The store's DB id now: ``IDENTITY``, else the MANIFEST's db id (None for LevelDB)."""
        if self._leveldb:
            return None
        return read_identity(self._db_dir) or self.manifest_db_id

    async def _start_identity(self, ctx: Any, cp: WalCheckpoint | None) -> None:
        """Compare the store with the identity the checkpoint belongs to; remember it."""
        raw = ctx.journal.get_checkpoint(IDENTITY_CHECKPOINT)
        saved: str | None = None
        if raw:
            try:
                obj = msgspec.json.decode(raw)
                saved = obj.get("db_id")
                if cp is not None and isinstance(obj.get("seq_wal"), int):
                    self.last_seq_wal = obj["seq_wal"]
                    self._seq_ino = obj.get("ino") if isinstance(obj.get("ino"), int) else 0
            except (msgspec.DecodeError, AttributeError):
                saved = None
        self.db_id = self._read_db_id()
        if cp is not None and saved and self.db_id and saved != self.db_id:
            self.db_id = saved  # the old identity, for the event
            await self._reset_store(
                "replaced",
                f"the store at {self._db_dir} is another store than the one capture was following (DB id {saved})",
            )
        elif self.db_id and saved != self.db_id:
            await self._emit([], checkpoints={IDENTITY_CHECKPOINT: self._identity_cp()})

    def _identity_cp(self) -> bytes:
        # seq_wal: the WAL the last delivered record came from (the checkpoint's WAL can be a
        # later one: capture moved on, or read only empty batches there)
        return _json_encode({"db_id": self.db_id, "seq_wal": self.last_seq_wal, "ino": self._seq_ino})

    async def _check_identity(self, reopened: bool = False) -> None:
        """A different DB id at the path: the store was replaced under the running daemon.
        (Every rescan tick, and when CURRENT changed: every open of a store writes it.)"""
        self._ident_dirty = False
        if reopened:
            self._check_archiving()
        now = self._read_db_id()
        if now and self.db_id and now != self.db_id:
            why = f"the store at {self._db_dir} was replaced or recreated (DB id {self.db_id} -> {now})"
            await self._reset_store("replaced", why)
        elif now and not self.db_id:
            self.db_id = now
            await self._emit([], checkpoints={IDENTITY_CHECKPOINT: self._identity_cp()})

    def _check_archiving(self, initial: bool = False) -> None:
        """WAL archiving off (OPTIONS: WAL_ttl_seconds = WAL_size_limit_MB = 0): say so once."""
        if self._leveldb:
            return
        opts = read_wal_archiving(self._db_dir)
        if opts is None:
            return
        on = opts["WAL_ttl_seconds"] > 0 or opts["WAL_size_limit_MB"] > 0
        if on == self.wal_archiving:
            return
        self.wal_archiving = on
        if self._metrics is not None:
            _metric_set(self._metrics, "wal_archiving_enabled", 1 if on else 0)
        h = getattr(self._ctx, "health", None)
        text = None
        if not on:
            text = (
                "the store does not archive WALs (OPTIONS: WAL_ttl_seconds=0, WAL_size_limit_MB=0): changes "
                "flushed while cdc is down or behind are lost (reported as capture_gap); set WAL_ttl_seconds "
                "or WAL_size_limit_MB to keep them"
            )
            log.warning("%s", text)
        elif not initial:
            log.info("the store now archives WALs (WAL_ttl_seconds=%d, WAL_size_limit_MB=%d)",
                     opts["WAL_ttl_seconds"], opts["WAL_size_limit_MB"])
        if h is not None and hasattr(h, "warn"):
            try:
                h.warn("readiness", "wal_archiving", text)
            except Exception:  # noqa: BLE001 - health is best effort
                log.debug("health.warn failed", exc_info=True)

    async def _reset_store(self, reason: str, why: str) -> None:
        """The store went back in time: capture its new history from its oldest WAL, and say so.

        Journal ids simply continue (subscribers keep their cursors); a ``store_reset`` event
        (old and new position) is committed together with the reset checkpoint.
        """
        await self._drain_old_current()
        old_wal, old_off = self._seq_pos
        if old_wal < 0 and self.cur is not None and self.reader is not None:
            old_wal, old_off = self.cur.number, self.reader.offset
        old_seq, old_id = self.last_seq, self.db_id
        self.store_resets += 1
        self._close_all()
        self.floor = 0
        self.last_seq = -1
        self.last_seq_wal = -1
        self._resume = None
        self._resume_missing = False
        self._replaced_hint = ""
        self._seq_ino = 0
        self._prepared.clear()
        self._prepared_dirty = True
        self._done = (-1, 0)  # no position of the new history is delivered yet
        self._done_ino = None
        self.numbering = SeqNumbering()  # the new store may number differently
        self._manifest_sig = None
        await self._reload_manifest(force=True)
        self.db_id = self._read_db_id()
        self._dir_dirty = False
        self._scan()  # opens the new history's oldest WAL as current
        new_wal, new_off, new_seq = -1, 0, -1
        if self.cur is not None and self.reader is not None:
            new_wal, new_off, new_seq = self.cur.number, self.reader.offset, self._first_seq(self.cur)
            cp = self._checkpoint(self.cur, self.reader)
        else:
            self._dir_dirty = True
            cp = encode_checkpoint(WalCheckpoint(0, 0, -1, 0))
        self._seq_pos = (new_wal, new_off)
        await self._announce_reset(reason, why, old_wal, old_off, old_seq, old_id, new_wal, new_off, new_seq, cp)

    async def _drain_old_current(self) -> None:
        """Before leaving the old store: deliver what its current WAL still holds past capture's
        position (read through the fd capture keeps; its name may be gone already)."""
        cur, reader = self.cur, self.reader
        if cur is None or reader is None:
            return
        try:
            if os.stat(cur.path).st_ino == cur.ino:
                return  # the name still holds this file: it is not the old store's
        except OSError:
            pass
        while not self._ctx.stop.is_set():
            try:
                data = os.pread(cur.fd, self.chunk_bytes, self.pos)
            except OSError:
                return
            if not data:
                return
            self.pos += len(data)
            dec = self._decode(reader, data)
            if dec.rewind is not None:
                return
            await self._deliver(dec, cur, reader)
            if reader.state in ("corrupt", "end"):
                return

    async def _announce_reset(
        self, reason: str, why: str, old_wal: int, old_off: int, old_seq: int, old_id: str | None,
        new_wal: int, new_off: int, new_seq: int, cp: bytes,
    ) -> None:
        text = (
            f"{why}; capture was at WAL {old_wal:06d} @{old_off} (seq {old_seq}) and continues at "
            f"WAL {new_wal:06d} @{new_off} (seq {new_seq})" + (f"; {self._shorter_hint}" if self._shorter_hint else "")
        )
        self._shorter_hint = ""
        log.warning("store_reset (%s): %s", reason, text)
        self._set_cond("readiness", "capture_reset", False, text)
        self._reset_until = time.monotonic() + self.gap_hold_s
        if self._metrics is not None:
            _metric_inc(self._metrics, "store_resets", 1)
        ev = StoreReset(
            timestamp=self._now_ms(), reason=reason, old_wal=old_wal, old_offset=old_off, old_seq=old_seq,
            new_wal=new_wal, new_offset=new_off, new_seq=new_seq, old_db_id=old_id, new_db_id=self.db_id, message=text,
        )
        cps = {CHECKPOINT_NAME: cp}
        if self.db_id:
            cps[IDENTITY_CHECKPOINT] = self._identity_cp()
        if self._prepared_dirty:
            self._prepared_dirty = False
            cps[PREPARED_CHECKPOINT_NAME] = encode_prepared(self._prepared)
        await self._emit([ev], checkpoints=cps)

    def _first_seq(self, tail: _Tail) -> int:
        """Sequence number of the first batch in a WAL (-1: none yet / unreadable)."""
        probe = WalReader(tail.number, leveldb=self._leveldb)
        try:
            probe.feed(os.pread(tail.fd, 1 << 20, 0))
            batches = probe.read()
        except (OSError, FormatError):
            return -1
        except Exception:  # noqa: BLE001 - never die on a file's content
            return -1
        return batches[0].seq if batches else -1

    async def _rewound(self, cur: _Tail, reader: WalReader, wal: int, offset: int, seq: int) -> None:
        """A newer WAL starts at or below the last delivered seq: the store went back in time."""
        now = self._read_db_id()
        if self._replaced_hint or (now and self.db_id and now != self.db_id):
            why = self._replaced_hint or (
                f"the store at {self._db_dir} was replaced or recreated (DB id {self.db_id} -> {now})"
            )
            await self._reset_store("replaced", why)
            return
        old_wal, old_off = self._seq_pos
        old_seq = self.last_seq
        self.store_resets += 1
        self.last_seq = seq - 1
        self.last_seq_wal = wal
        self._seq_ino = cur.ino
        self._seq_pos = (wal, offset)
        await self._announce_reset(
            "recovered_earlier",
            f"the store was reopened at an earlier sequence number (WAL {wal:06d} starts at seq {seq} <= {old_seq})",
            old_wal, old_off, old_seq, self.db_id, wal, offset, seq, self._checkpoint(cur, reader),
        )

    def _timers(self, now: float) -> None:
        if self._reset_until and now >= self._reset_until:
            self._reset_until = 0.0
            self._set_cond("readiness", "capture_reset", True, "")
        if self._gap_until and now >= self._gap_until:
            self._gap_until = 0.0
            self._set_cond("readiness", "capture_gap", True, "")
        if self._corrupt_until and now >= self._corrupt_until and self._corrupt_key is None:
            self._corrupt_until = 0.0
            self._set_cond("readiness", "capture_decode", True, "")

    def _check_watch_dir(self) -> None:
        """Re-arm the watcher when the WAL dir was replaced (renamed away and back, recreated)."""
        try:
            ino: int | None = os.stat(self._wal_dir).st_ino
        except OSError:
            ino = None
        if ino == self._dir_ino:
            return
        if self._watch_restart is not None:
            self._watch_restart.set()  # the watch loop re-arms watcher and grabber
        elif not self.watch:
            self._dir_ino = ino
            self._arm_grabber()

    # ------------------------------------------------------------------ directory scan

    def _scan(self) -> None:
        """List the WAL dir: open new WALs (>= floor), notice deleted/archived/recycled ones."""
        if self._grabbed:
            self._take_grabbed()
        try:
            entries = list_wal_files(self._wal_dir)
            if not os.path.isdir(self._wal_dir):
                raise FileNotFoundError(self._wal_dir)
        except (OSError, CdcError) as exc:
            self._scan_ok = False
            self._set_cond(
                "readiness", "capture_store", False, f"WAL directory {self._wal_dir} is not readable: {_short(exc)}"
            )
            return
        self._scan_ok = True
        self._set_cond("readiness", "capture_store", True, "")
        if self._startup_target is None and entries:
            number, path = entries[-1]
            try:
                self._startup_target = (number, os.stat(path).st_size)
            except OSError:
                pass
        found: dict[int, str] = {}
        for number, path in entries:
            prev = found.get(number)
            if prev is None or os.sep + "archive" + os.sep in prev:
                found[number] = path
        for tail in self.tails.values():
            if tail.number in found:
                tail.scanned = True
            if tail.gone:
                continue
            path = found.get(tail.number)
            if path is None:
                tail.gone = True
                continue
            try:
                ino = os.stat(path).st_ino
            except OSError:
                tail.gone = True
                continue
            if ino != tail.ino:
                tail.gone = True  # replaced (recycled file reused under this name, or recreated)
                if not self._replaced_hint and tail.number >= self.floor:
                    # RocksDB never gives a number to two files: another store lives here now
                    self._replaced_hint = (
                        f"WAL {tail.number:06d} was replaced by another file (the store was replaced or recreated)"
                    )
            elif path != tail.path:
                tail.path = path  # archived: same inode, new name
                tail.gone = True  # archived WALs are never written again
        seq_path = found.get(self.last_seq_wal) if self._seq_ino and self.last_seq_wal not in self.tails else None
        if seq_path is not None and not self._replaced_hint:
            try:
                if os.stat(seq_path).st_ino != self._seq_ino:
                    self._replaced_hint = (
                        f"WAL {self.last_seq_wal:06d} (the last one read) is another file now "
                        "(the store was replaced or recreated)"
                    )
            except OSError:
                pass
        inodes = {t.ino: t for t in self.tails.values()}
        for number in sorted(found):
            if number < self.floor or number in self.tails:
                continue
            if len(self.tails) >= self.max_open:
                break
            if self._open_wal(number, found[number], inodes):
                self.tails[number].scanned = True
            else:
                self._dir_dirty = True  # deleted meanwhile or archived: look again next time
        if self.cur is None:
            self._pick_current()

    def _open_wal(self, number: int, path: str, inodes: dict[int, _Tail] | None = None) -> bool:
        """Open a WAL and keep its fd (so a later delete/archive cannot take its data away)."""
        try:
            fd = open_readonly(path)
        except OSError:
            # moved to archive/ since it was listed? (never skip a WAL that is still on disk)
            alt = os.path.join(self._wal_dir, "archive", os.path.basename(path))
            if alt == path:
                return False
            try:
                fd = open_readonly(alt)
            except OSError:
                return False
            path = alt
        ino = os.fstat(fd).st_ino
        if inodes is None:
            inodes = {t.ino: t for t in self.tails.values()}
        old = inodes.get(ino)
        if old is not None and old.number != number:
            old.gone = True  # recycled: the old WAL's inode lives on under a new number
        tail = _Tail(number, path, fd, ino)
        self.tails[number] = tail
        inodes[ino] = tail
        return True

    def _pick_current(self) -> None:
        candidates = sorted(n for n in self.tails if n >= self.floor)
        if not candidates:
            return
        number = candidates[0]
        tail = self.tails[number]
        resume = self._resume
        offset, compression = 0, 0
        ts_sizes: dict[int, int] | None = None
        if resume is not None:
            if number == resume.log_number:
                offset, compression = resume.offset, resume.compression
                ts_sizes = dict(resume.ts_sizes)
                if offset > tail.size():
                    self._shorter_hint = (
                        f"WAL {number:06d} is shorter ({tail.size()} bytes) than the checkpoint offset {offset}"
                    )
                    log.warning(
                        "WAL %06d is shorter than the checkpoint offset %d: it was replaced; reading it from 0",
                        number,
                        offset,
                    )
                    offset, compression, ts_sizes = 0, 0, None
                    self._done = (-1, 0)  # another file: nothing in it was delivered
            else:
                self._resume_missing = True
                log.warning(
                    "checkpointed WAL %06d is gone; continuing at WAL %06d (last seq %d)",
                    resume.log_number,
                    number,
                    resume.last_seq,
                )
            self._resume = None
        self._open_current(tail, offset, compression, ts_sizes)

    def _open_current(
        self, tail: _Tail, offset: int, compression: int, ts_sizes: dict[int, int] | None = None
    ) -> WalReader:
        for n in [n for n in self.tails if n < tail.number]:
            self._close_tail(self.tails.pop(n))
        self.cur = tail
        self.floor = tail.number
        self.reader = reader = WalReader(
            tail.number, offset=offset, leveldb=self._leveldb, compression=compression, ts_sizes=ts_sizes
        )
        self.pos = offset
        self._corrupt_key = None
        if offset == 0:
            self.numbering.new_wal()  # a reopened store may use another numbering
        if tail.number == self._done[0]:
            if self._done_ino is not None and self._done_ino != tail.ino:
                self._done = (-1, 0)  # another file under the checkpointed WAL's number
            self._done_ino = tail.ino
        return reader

    def _close_tail(self, tail: _Tail) -> None:
        try:
            os.close(tail.fd)
        except OSError:
            pass

    def _close_all(self) -> None:
        for tail in self.tails.values():
            self._close_tail(tail)
        self.tails.clear()
        self.cur = None
        self.reader = None

    # ------------------------------------------------------------------ reading

    async def _pump(self) -> None:
        """Read and emit until every WAL is consumed up to its current end."""
        ctx = self._ctx
        while not ctx.stop.is_set():
            cur, reader = self.cur, self.reader
            if cur is None or reader is None:
                if not self._scan_ok:
                    return
                if self._resume is not None:
                    # no WAL at or above the checkpointed one exists any more
                    self._resume_missing = True
                    self._resume = None
                if self._resume_missing:
                    await self._check_missing_resume()
                self._mark_caught_up()
                return
            try:
                data = os.pread(cur.fd, self.chunk_bytes, self.pos)
            except OSError as exc:
                log.warning("reading WAL %06d failed: %s", cur.number, exc)
                self._set_cond("readiness", "capture_store", False, f"reading WAL {cur.number:06d} failed: {_short(exc)}")
                return
            if data:
                self._beat()  # a long catch-up is progress too
                self.pos += len(data)
                self.bytes_read += len(data)
                if self._metrics is not None:
                    _metric_inc(self._metrics, "wal_bytes_read", len(data))
                if len(data) >= self.thread_min_bytes:
                    dec = await asyncio.to_thread(self._decode, reader, data)
                else:
                    dec = self._decode(reader, data)
                await self._deliver(dec, cur, reader)
                if dec.rewind is not None:
                    continue  # store_reset: the position changed, read on from there
                if dec.batches and self._corrupt_key is not None:
                    self._corrupt_key = None  # the bad record was a torn write that completed
                self._check_startup_target()
                if reader.state in ("corrupt", "end"):
                    if not await self._at_bad_record(cur, reader):
                        return
                continue
            # end of the bytes written so far
            if reader.state in ("corrupt", "end"):
                if not await self._at_bad_record(cur, reader):
                    return
                continue
            if not await self._try_seal(cur, reader):
                if self._resume_missing:
                    await self._check_missing_resume()
                self._mark_caught_up()
                return

    def _decode(self, reader: WalReader, data: bytes) -> _Decoded:
        """Feed + decode + build events (pure CPU; may run in a worker thread)."""
        reader.feed(data)
        batches = reader.read()
        return self._build(batches)

    def _build(self, batches: list[Batch]) -> _Decoded:
        """Batches -> events (gap events first where the sequence jumps). Pure CPU.

        Invariant: every data record becomes exactly one event, numbered as the store numbers it
        (per key or per batch, see :class:`cdc.wal.SeqNumbering`). The only records skipped are
        those provably delivered already: in the checkpointed WAL before the checkpointed offset
        (which the reader never re-reads in normal operation). A sequence number at or below the
        last one seen is *not* a proof (WritePrepared stores give many records one number, and
        deliver prepared records at their commit with their older numbers).
        """
        events: list[Any] = []
        append = events.append
        gaps: list[tuple[int, int]] = []
        unknown: list[tuple[int, int]] = []
        names = self.cf_names
        ts = self._now_ms()
        last_seq = self.last_seq
        last_wal = self.last_seq_wal
        done_wal, done_off = self._done
        numbering = self.numbering
        guessed0 = numbering.guessed
        KC = KeyChange
        key_ops = _KEY_OPS
        cf_json = self._cf_json()
        enc = _json_encode
        put_head = b'{"type":"key_change","timestamp":%d,"operation":"put","key":' % ts
        counts: dict[int, list[int]] = {}
        put_cf, put_n, put_b = -1, 0, 0
        bad_origins = 0
        rewind = None
        n_batches = len(batches)
        for i, b in enumerate(batches):
            if b.log_number == done_wal and b.offset < done_off:
                continue  # at or before the checkpoint position of this WAL: delivered
            bseq = b.seq
            before = last_seq
            if b.count and 0 <= bseq <= last_seq and b.log_number != last_wal:
                # a newer WAL goes back to sequence numbers already delivered: the store went
                # back in time (stop here; the caller decides and re-reads from this batch)
                rewind = (b.log_number, b.offset, bseq)
                n_batches = i
                break
            raw_ops = ops = b.ops
            if len(ops) == 1 and ops[0][0] >= 0:
                consumed = 1  # one data record: the same number in both schemes
            elif len(ops) == b.count and numbering.scheme != SEQ_PER_BATCH:
                # data records only, no marker (a plain write): per key (wal.seq_scheme_evidence)
                consumed = b.count
                numbering.scheme = SEQ_PER_KEY
            else:
                scheme, ops, consumed = numbering.number(b)
                if ops and (len(ops) != b.count or scheme == SEQ_PER_BATCH):
                    ops, extra = self._txn_ops(b, scheme, ops)  # markers: 2PC sections, log_data, noop
                    consumed += extra
            nxt = last_seq + 1
            if last_seq >= 0 and bseq > nxt and (consumed or b.count):
                gaps.append((nxt, bseq - 1))
                append(
                    CaptureGap(
                        timestamp=ts,
                        from_seq=nxt,
                        to_seq=bseq - 1,
                        reason=f"gap in sequence numbers {nxt}..{bseq - 1} before WAL {b.log_number:06d} @{b.offset}",
                    )
                )
            # origin / batch marks: fields after "seq" (KeyChange field order), "}" when none
            if len(raw_ops) == 1 and ops is raw_ops:  # the common single change: no marks
                tail, many, origin, b_seq, b_count = b"}", False, None, None, None
            else:
                marks: list[tuple[int, str]] | None = None
                if len(raw_ops) != b.count:  # seq-less records (LogData, 2PC markers, Noop) present
                    marks, ignored = origin_marks(raw_ops)
                    bad_origins += ignored
                    n_kc = sum(1 for op in ops if op[0] >= 0)
                else:
                    n_kc = len(ops) if ops is raw_ops else sum(1 for op in ops if op[0] >= 0)
                origin = marks[0][1] if marks else None
                many = marks is not None and len(marks) > 1
                b_seq = bseq if n_kc > 1 else None
                b_count = n_kc if n_kc > 1 else None
                tail = _marks_tail(origin, b_seq, b_count) if (origin is not None or b_seq is not None) else b"}"
            if consumed:
                last_seq = bseq + consumed - 1
            for op in ops:
                s = op[0]
                if s < 0:
                    continue
                opname = op[1]
                if many:
                    origin = _origin_at(marks, s)  # type: ignore[arg-type]
                    tail = _marks_tail(origin, b_seq, b_count)
                if opname == "put":
                    cfj = cf_json.get(op[2])
                    if cfj is not None:
                        k = op[3]
                        v = op[4]
                        if op[2] != put_cf:  # fast puts are counted in locals, per run of one cf
                            if put_n:
                                _add_count(counts, put_cf, 0, put_n, put_b)
                            put_cf, put_n, put_b = op[2], 0, 0
                        put_n += 1
                        put_b += len(k) + len(v)
                        try:
                            # pre-encoded for the journal: byte-identical to encoding the KeyChange
                            append(
                                (
                                    b'%b%b,"cf":%b,"seq":%d%b' % (put_head, enc(k.decode()), cfj[1], s, tail),
                                    b',"value":' + enc(v.decode()),
                                    "key_change",
                                    cfj[0],
                                    k,
                                    None,
                                )
                            )
                            continue
                        except UnicodeDecodeError:
                            put_n -= 1  # counted below
                            put_b -= len(k) + len(v)
                kind = key_ops.get(opname)
                if kind is None:
                    continue
                cf_id = op[2]
                slot = _STAT_SLOT.get(kind)
                if slot is not None:
                    _add_count(counts, cf_id, slot, 1, len(op[3] or b"") + len(op[5] if op[5] is not None else (op[4] or b"")))
                cf = names.get(cf_id)
                if cf is None:
                    unknown.append((len(events), cf_id))
                    cf = _UNKNOWN_CF
                k = op[3] or b""
                try:
                    key = k.decode()
                    kenc = None
                except UnicodeDecodeError:
                    key = _b64(k).decode()
                    kenc = "base64"
                end_key = end_enc = value = venc = None
                ek = op[5]
                if ek is not None:
                    try:
                        end_key = ek.decode()
                    except UnicodeDecodeError:
                        end_key = _b64(ek).decode()
                        end_enc = "base64"
                v = op[4]
                if v is not None and opname not in _NO_VALUE_OPS:
                    try:
                        value = v.decode()
                    except UnicodeDecodeError:
                        value = _b64(v).decode()
                        venc = "base64"
                append(
                    KC(
                        timestamp=ts,
                        operation=kind,
                        key=key,
                        key_encoding=kenc,
                        cf=cf,
                        seq=s,
                        origin=origin,
                        batch_seq=b_seq,
                        batch_count=b_count,
                        end_key=end_key,
                        end_key_encoding=end_enc,
                        value=value,
                        value_encoding=venc,
                    )
                )
            if last_seq != before:
                last_wal = b.log_number  # the WAL of the last delivered record (not of an empty batch)
        if put_n:
            _add_count(counts, put_cf, 0, put_n, put_b)
        if numbering.guessed != guessed0:
            self.seq_guesses += numbering.guessed - guessed0
        return _Decoded(events, n_batches, unknown, gaps, last_seq, counts, bad_origins, rewind)

    def _cf_json(self) -> dict[int, tuple[str, bytes]]:
        """cf id -> (name, JSON-encoded name), rebuilt when ``cf_names`` changes."""
        names = self.cf_names
        cached = self._cf_json_cache
        if cached is None or cached[0] is not names:
            cached = self._cf_json_cache = (names, {i: (n, _json_encode(n)) for i, n in names.items()})
        return cached[1]

    def _txn_ops(self, b: Batch, scheme: str, ops: list[Any]) -> tuple[list[Any], int]:
        """Resolve 2PC (TransactionDB) sections in one record; (records to emit, extra numbers).

        Prepared data (BeginPrepare..EndPrepare(xid)) is held by xid and emitted when Commit(xid)
        arrives; a rollback drops it. WriteCommitted (per key): the prepared records consume no
        numbers when written; RocksDB inserts them at the commit, right after the commit record's
        own data records (reference §2), so they get those numbers (``extra`` of them), and the
        records of later writers merged into the same WAL record (a write group) come after them.
        WritePrepared/WriteUnprepared (per batch): they got their numbers at prepare time (the
        store's own, kept); WriteUnprepared may write several sections for one xid (all kept).
        The sections survive a restart (checkpoint ``wal_2pc``). A commit whose prepare capture
        never saw (it lies before capture's starting point) leaves a sequence jump in a per-key
        store: reported as a gap.
        """
        out: list[Any] = []
        extra = 0
        nxt = b.seq
        prepared = self._prepared
        collecting: list[Any] | None = None
        for op in ops:
            s, name = op[0], op[1]
            if collecting is not None:
                if name == "end_prepare":
                    entry = prepared.get(op[3])
                    if entry is None or entry[0] != scheme:
                        prepared[op[3]] = (scheme, collecting)
                    else:
                        entry[1].extend(collecting)
                    self._prepared_dirty = True
                    if len(prepared) > 10_000:  # commits we will never see: bound the memory
                        xid = next(iter(prepared))
                        prepared.pop(xid)
                        log.warning("more than 10000 unresolved prepared transactions: forgetting xid %r", xid)
                    collecting = None
                elif name in _KEY_OPS:
                    collecting.append(op)
                continue
            if name in _BEGIN_PREPARE:
                collecting = []
            elif s >= 0:
                if extra:
                    # a merged write group: a WriteCommitted commit earlier in this record had its
                    # prepared records inserted there, so the later writers' numbers come after them
                    s += extra
                    op = op._replace(seq=s)
                out.append(op)
                nxt = s + 1
            elif name == "commit" or name == "commit_with_ts":
                entry = prepared.pop(op[3], None)
                if entry is None:
                    log.warning(
                        "WAL %06d @%d: commit of transaction %r whose prepare capture never saw "
                        "(it precedes capture's starting point): its writes are not delivered",
                        b.log_number,
                        b.offset,
                        op[3],
                    )
                    if self._metrics is not None:
                        _metric_inc(self._metrics, "capture_unmatched_commits", 1)
                else:
                    self._prepared_dirty = True
                    if entry[0] == SEQ_PER_BATCH:
                        out.extend(entry[1])
                    else:
                        for p in entry[1]:
                            out.append(p._replace(seq=nxt))
                            nxt += 1
                            extra += 1
            elif name == "rollback":
                if prepared.pop(op[3], None) is not None:
                    self._prepared_dirty = True
        return out, extra

    async def _deliver(self, dec: _Decoded, cur: _Tail, reader: WalReader) -> None:
        """Commit a decoded chunk: events + checkpoint in one emit; health/metrics on gaps."""
        if dec.rewind is not None:
            self._rewind(cur, dec.rewind[1], reader.compression)  # re-read from the rewinding batch
            assert self.reader is not None
            reader = self.reader
        if dec.unknown_cfs:
            await self._reload_manifest(force=True)
            for i, cf_id in dec.unknown_cfs:
                name = self.cf_names.get(cf_id)
                if name is None:
                    name = f"cf{cf_id}"
                    log.warning("column family id %d is not in the MANIFEST; reported as %r", cf_id, name)
                dec.events[i].cf = name
        if dec.counts:
            names = self.cf_names
            totals = self.cf_counts
            for cf_id, c in dec.counts.items():
                name = names.get(cf_id) or f"cf{cf_id}"
                t = totals.get(name)
                if t is None:
                    totals[name] = list(c)
                else:
                    for i in range(8):
                        t[i] += c[i]
        if dec.bad_origins:
            if not self.origins_ignored:
                log.warning(
                    "ignoring a cdc-origin: LogData marker that is not UTF-8 or longer than %d bytes (logged once; counted in cdc_origin_markers_ignored_total)",
                    MAX_ORIGIN_BYTES,
                )
            self.origins_ignored += dec.bad_origins
            if self._metrics is not None:
                _metric_inc(self._metrics, "origin_markers_ignored", dec.bad_origins)
        seq_wal_moved = False
        if dec.batches:
            cur.has_record = True
            self._hot_until = time.monotonic() + self.hot_window_s
            if dec.last_seq != self.last_seq:
                seq_wal_moved = self.last_seq_wal != cur.number
                self.last_seq_wal = cur.number
                self._seq_ino = cur.ino
                self._seq_pos = (cur.number, reader.offset)
            self.last_seq = dec.last_seq
            self._resume_missing = False
            self._done = (cur.number, reader.offset)
            self._done_ino = cur.ino
        if self.seq_guesses != self._guesses_reported:
            n = self.seq_guesses - self._guesses_reported
            self._guesses_reported = self.seq_guesses
            log.warning(
                "WAL %06d: %d record(s) numbered without evidence of the store's sequence numbering "
                "(per key assumed; their seq may be off if this is a WritePrepared TransactionDB)",
                cur.number,
                n,
            )
            if self._metrics is not None:
                _metric_inc(self._metrics, "capture_seq_guesses", n)
        for a, b in dec.gaps:
            self._gap(a, b, f"gap in sequence numbers {a}..{b}")
        if dec.batches or dec.events:
            n_kc = len(dec.events) - len(dec.gaps)
            self.events_captured += n_kc
            self.batches_captured += dec.batches
            cps = {CHECKPOINT_NAME: self._checkpoint(cur, reader)}
            if seq_wal_moved:
                cps[IDENTITY_CHECKPOINT] = self._identity_cp()
            if self._prepared_dirty:
                self._prepared_dirty = False
                cps[PREPARED_CHECKPOINT_NAME] = encode_prepared(self._prepared)
            await self._emit(dec.events, checkpoints=cps)
            self._export_counters(n_kc)
        if dec.rewind is not None:
            await self._rewound(cur, reader, *dec.rewind)

    async def _emit(self, events: list[Any], checkpoints: dict[str, bytes]) -> None:
        """bus.emit; while it waits on backpressure (journal slow or full) keep beating: capture
        is not stuck, the journal is (readiness reports that)."""
        bus = self._ctx.bus
        if getattr(bus, "pending", 0) < getattr(bus, "max_pending", 1 << 62):
            await bus.emit(events, checkpoints=checkpoints)
            return
        task = asyncio.ensure_future(bus.emit(events, checkpoints=checkpoints))
        try:
            while True:
                done, _ = await asyncio.wait([task], timeout=1.0)
                if done:
                    task.result()
                    return
                self._beat()
        except asyncio.CancelledError:
            task.cancel()
            raise

    def _checkpoint(self, cur: _Tail, reader: WalReader) -> bytes:
        n = self.numbering
        return encode_checkpoint(
            WalCheckpoint(
                cur.number,
                reader.offset,
                self.last_seq,
                reader.compression,
                tuple(reader.ts_sizes.items()),
                n.scheme,
                n.strong,
            )
        )

    def _gap(self, a: int, b: int, reason: str) -> None:
        self.gaps += 1
        self.gap_seqs += b - a + 1
        log.warning("%s", reason)
        self._set_cond("readiness", "capture_gap", False, reason)
        self._gap_until = time.monotonic() + self.gap_hold_s
        m = getattr(self._ctx, "metrics", None)
        if m is not None:
            _metric_inc(m, "capture_gaps", 1)

    async def _check_missing_resume(self) -> None:
        """The checkpointed WAL was gone and nothing newer was read: ask the MANIFEST."""
        await self._reload_manifest(force=True)
        ms = self.manifest_last_seq
        if self._resume_missing and ms > self.last_seq >= 0:
            a, b = self.last_seq + 1, ms
            reason = f"gap in sequence numbers {a}..{b}: the WALs holding them were deleted before they were read"
            self._gap(a, b, reason)
            self.last_seq = ms
            self.last_seq_wal = -1
            cp = self._checkpoint(self.cur, self.reader) if self.cur and self.reader else encode_checkpoint(
                WalCheckpoint(self.floor, 0, ms, 0)
            )
            await self._emit(
                [CaptureGap(timestamp=self._now_ms(), from_seq=a, to_seq=b, reason=reason)],
                checkpoints={CHECKPOINT_NAME: cp, IDENTITY_CHECKPOINT: self._identity_cp()},
            )
        self._resume_missing = False

    # ------------------------------------------------------------------ sealing / corruption

    async def _try_seal(self, cur: _Tail, reader: WalReader) -> bool:
        """At the end of current: move to the next WAL if current is complete. True if moved."""
        nxt = self._next_tail(cur.number)
        sealed = False
        why = ""
        if cur.gone:
            sealed, why = True, "deleted or archived"
        elif nxt is not None and self._has_complete_record(nxt):
            sealed, why = True, f"WAL {nxt.number:06d} has data"
        elif nxt is not None:
            if self._manifest_dirty or self._manifest_changed():
                await self._reload_manifest()
            if cur.number < self.manifest_keep:
                sealed, why = True, "obsolete per MANIFEST"
        if not sealed:
            if self._manifest_dirty and self._manifest_changed():
                await self._reload_manifest()
            return False
        # make sure nothing was appended between our last read and the seal decision
        if cur.size() > self.pos:
            return True
        err = reader.close()
        if err is not None:
            if self._torn_tail_continues(cur):
                log.info(
                    "WAL %06d ends with a torn record (%s) and WAL %06d continues at seq %d: "
                    "the normal end of a WAL the writer crashed in (nothing lost)",
                    cur.number,
                    err.reason,
                    nxt.number if nxt is not None else -1,
                    self.last_seq + 1,
                )
            else:
                self._decode_error(err, f"WAL {cur.number:06d} ends with an incomplete record ({why}): {err}")
        log.debug("WAL %06d done (%s) at offset %d", cur.number, why, reader.offset)
        self.tails.pop(cur.number, None)
        self._close_tail(cur)
        self.cur = None
        self.reader = None
        self.floor = cur.number + 1
        return await self._move_on()

    async def _move_on(self) -> bool:
        """Open the next WAL (lowest number >= floor) as current. Unless a directory scan saw
        that WAL (and so every lower-numbered one: numbers grow with time), rescan the WAL dir
        and ``archive/`` first: a WAL created and archived while capture was not looking (paused,
        busy) must not be jumped over because the inotify thread already opened a later one."""
        nxt = self._next_tail(self.floor - 1)
        if nxt is not None and nxt.scanned:
            # a scan saw it, and WAL numbers grow with time: that scan saw every WAL below it too
            self._open_current(nxt, 0, 0)
        else:
            self._dir_dirty = False
            self._scan()  # picks the lowest WAL >= floor as current
        if self.cur is not None and self.reader is not None:
            await self._emit([], checkpoints={CHECKPOINT_NAME: self._checkpoint(self.cur, self.reader)})
            return True
        self._dir_dirty = True
        return False

    def _next_tail(self, number: int) -> _Tail | None:
        if self._grabbed:
            self._take_grabbed()
        higher = [n for n in self.tails if n > number]
        return self.tails[min(higher)] if higher else None

    def _first_seq(self, tail: _Tail) -> int | None:
        """Header sequence number of the first record of a (higher) WAL, or None."""
        probe = WalReader(tail.number, leveldb=self._leveldb)
        try:
            probe.feed(os.pread(tail.fd, min(tail.size(), 1 << 20), 0))
        except OSError:
            return None
        batches = probe.read()
        return batches[0].seq if batches else None

    def _torn_tail_continues(self, cur: _Tail) -> bool:
        """Current ended with a torn record and the next WAL starts at the next sequence number.

        That is what a writer crash mid-write followed by a reopen looks like (RocksDB's recovery
        stops at the torn record and the new WAL continues after the last good one): the normal
        end of that WAL, not damage. A jump (or no next WAL yet) is not.
        """
        nxt = self._next_tail(cur.number)
        if nxt is None or self.last_seq < 0:
            return False
        return self._first_seq(nxt) == self.last_seq + 1

    def _has_complete_record(self, tail: _Tail) -> bool:
        """Does this (higher) WAL hold a complete data record? (cached per file size)"""
        if tail.has_record:
            return True
        try:
            size = tail.size()
        except OSError:
            return False
        if size == tail.peek_size or size == 0:
            return False
        tail.peek_size = size
        probe = WalReader(tail.number, leveldb=self._leveldb)
        try:
            probe.feed(os.pread(tail.fd, min(size, self.chunk_bytes), 0))
        except OSError:
            return False
        if probe.read():
            tail.has_record = True
        return tail.has_record

    async def _at_bad_record(self, cur: _Tail, reader: WalReader) -> bool:
        """Reader stopped at a bad record ("corrupt") or an old recycled record ("end").

        Returns True when reading can continue at once (resynced), False to wait.
        """
        if reader.state == "end":
            # Live end of a recycled file: re-read from the last good offset when it grows,
            # or move on when it is sealed.
            nxt = self._next_tail(cur.number)
            if cur.gone or (nxt is not None and self._has_complete_record(nxt)):
                return await self._try_seal_end(cur, reader)
            self._rewind(cur, reader.offset, reader.compression)
            self._mark_caught_up()  # the live end of a recycled WAL
            return False
        err = reader.error
        assert err is not None
        off = err.offset if err.offset >= 0 else reader.offset
        key = (cur.number, off)
        now = time.monotonic()
        if self._corrupt_key != key:
            self._corrupt_key = key
            self._corrupt_since = now
            log.debug("bad record in WAL %06d @%d (%s): retrying", cur.number, off, err)
            self._rewind(cur, reader.offset, reader.compression)
            return False
        block_end = (off // BLOCK_SIZE + 1) * BLOCK_SIZE
        try:
            size = cur.size()
        except OSError:
            size = 0
        waited = now - self._corrupt_since >= self.corrupt_retry_s
        persistent = waited and (size > block_end or cur.gone or self._next_tail(cur.number) is not None)
        if not persistent:
            if waited:
                self._set_cond(
                    "readiness",
                    "capture_decode",
                    False,
                    f"WAL {cur.number:06d} @{off}: bad record at the end of the file ({err.reason}); waiting for the writer",
                )
                self._corrupt_until = now + self.corrupt_hold_s
                self._mark_caught_up()  # as far as it can get: readiness tells the rest
            self._rewind(cur, reader.offset, reader.compression)
            return False
        self._corrupt_key = None
        if size <= block_end and self._torn_tail_continues(cur):
            # a torn last record (nothing after it in this WAL) and the next WAL continues: its end
            log.info(
                "WAL %06d ends with a torn record @%d (%s) and the next WAL continues at seq %d: "
                "the normal end of a WAL the writer crashed in (nothing lost)",
                cur.number,
                off,
                err.reason,
                self.last_seq + 1,
            )
            reason = self._cond_reasons.get(("readiness", "capture_decode"), "")
            if self._conds.get(("readiness", "capture_decode")) is False and reason.startswith(
                f"WAL {cur.number:06d} @{off}: bad record at the end of the file"
            ):
                self._corrupt_until = 0.0  # only the wait for this record was reported: clear it
                self._set_cond("readiness", "capture_decode", True, "")
            return await self._try_seal_end(cur, reader)
        resume = self._skip_orphan_fragments(cur, block_end)
        self._decode_error(err, f"corrupt WAL {cur.number:06d} @{off}: {err.reason}; skipped to offset {resume}")
        self._rewind(cur, resume, reader.compression)
        return True

    def _skip_orphan_fragments(self, cur: _Tail, offset: int) -> int:
        """After a resync at a block start, step over MIDDLE/LAST fragments of the lost record.

        (A record that started in the skipped block may end in this one; its tail alone cannot
        be decoded and would otherwise count as a second corruption.)
        """

        def read_at(off: int, n: int) -> bytes:
            try:
                return os.pread(cur.fd, n, off)
            except OSError:
                return b""

        return skip_orphan_fragments(read_at, offset)

    async def _try_seal_end(self, cur: _Tail, reader: WalReader) -> bool:
        self.tails.pop(cur.number, None)
        self._close_tail(cur)
        self.cur = None
        self.reader = None
        self.floor = cur.number + 1
        return await self._move_on()

    def _rewind(self, cur: _Tail, offset: int, compression: int) -> None:
        old = self.reader
        ts_sizes = old.ts_sizes if old is not None else None  # sizes announced earlier in this WAL stay in force
        self.reader = WalReader(cur.number, offset=offset, leveldb=self._leveldb, compression=compression, ts_sizes=ts_sizes)
        self.pos = offset

    def _decode_error(self, err: FormatError, reason: str) -> None:
        self.decode_errors += 1
        log.warning("%s", reason)
        self._set_cond("readiness", "capture_decode", False, reason)
        self._corrupt_until = time.monotonic() + self.corrupt_hold_s
        m = getattr(self._ctx, "metrics", None)
        if m is not None:
            _metric_inc(m, "decode_errors", 1)

    # ------------------------------------------------------------------ MANIFEST

    def _manifest_changed(self) -> bool:
        sig = self._read_manifest_sig()
        return sig != self._manifest_sig

    def _read_manifest_sig(self) -> tuple[int, ...] | None:
        try:
            st = os.stat(os.path.join(self._db_dir, "CURRENT"))
            name = read_store_file(os.path.join(self._db_dir, "CURRENT"), 256).strip().decode("utf-8", "replace")
            mt = os.stat(os.path.join(self._db_dir, name))
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, mt.st_ino, mt.st_size, mt.st_mtime_ns)

    async def _reload_manifest(self, force: bool = False) -> None:
        sig = self._read_manifest_sig()
        if not force and sig == self._manifest_sig:
            self._manifest_dirty = False
            return
        try:
            state = await asyncio.to_thread(load_manifest, self._db_dir, leveldb=self._leveldb)
        except (OSError, CdcError) as exc:
            log.warning("cannot read the MANIFEST of %s: %s", self._db_dir, _short(exc))
            return
        except Exception as exc:  # noqa: BLE001 - never die on a file's content
            log.warning("cannot decode the MANIFEST of %s: %s", self._db_dir, _short(exc))
            return
        self._manifest_sig = sig
        self._manifest_dirty = False
        names = dict(getattr(state, "cf_names", {}) or {0: "default"})
        for cf_id, name in (getattr(state, "dropped_cfs", {}) or {}).items():
            names.setdefault(cf_id, name)
        names.setdefault(0, "default")
        self.cf_names = names
        self.manifest_last_seq = int(getattr(state, "last_sequence", -1) or -1)
        keep = int(getattr(state, "min_log_number_to_keep", 0) or 0)
        lognums = getattr(state, "log_number", {}) or {}
        live = [v for k, v in lognums.items() if k in state.cf_names] if lognums else []
        if live:
            keep = max(keep, min(live))
        self.manifest_keep = keep
        self.manifest_next_file = int(getattr(state, "next_file_number", 0) or 0)
        self.manifest_db_id = getattr(state, "db_id", None) or None
        if self.last_seq >= 0 and self.manifest_last_seq > self.last_seq:
            self.lag_seq = self.manifest_last_seq - self.last_seq
        else:
            self.lag_seq = 0

    # ------------------------------------------------------------------ health / metrics

    def _check_startup_target(self) -> None:
        """Initial catch-up = the WAL bytes present at start; done once read past them."""
        if self.caught_up or self._startup_target is None or self.cur is None or self.reader is None:
            return
        number, size = self._startup_target
        if self.cur.number > number or (self.cur.number == number and self.reader.offset >= size):
            self._mark_caught_up()

    def _mark_caught_up(self) -> None:
        self.idle_at = time.monotonic()  # capture_lag_ms in stats frames counts from here
        if not self.caught_up:
            self.caught_up = True
            log.info("capture caught up (last seq %d)", self.last_seq)
            self._set_cond("startup", "capture", True, "")

    def _beat(self) -> None:
        h = getattr(self._ctx, "health", None)
        if h is not None:
            try:
                h.beat("capture")
            except Exception:  # noqa: BLE001 - health is best effort
                log.debug("health.beat failed", exc_info=True)

    def _set_cond(self, probe: str, name: str, ok: bool, reason: str) -> None:
        """Report a health condition to ``ctx.health`` on transitions (and reason changes) only."""
        key = (probe, name)
        prev = self._conds.get(key)
        if ok and (prev is None or prev) and probe != "startup":
            self._conds[key] = True
            return
        if prev == ok and self._cond_reasons.get(key) == reason:
            return
        self._conds[key] = ok
        self._cond_reasons[key] = reason
        h = getattr(self._ctx, "health", None)
        if h is not None:
            try:
                h.set(probe, name, ok=ok, reason=reason)
            except Exception:  # noqa: BLE001 - health is best effort
                log.debug("health.set failed", exc_info=True)

    def _export_counters(self, n_events: int) -> None:
        m = getattr(self._ctx, "metrics", None)
        if m is not None:
            _metric_inc(m, "events_captured", n_events)

    def _export(self) -> None:
        lag = 0
        try:
            if self.cur is not None:
                lag = max(0, self.cur.size() - (self.reader.offset if self.reader else self.pos))
                for t in self.tails.values():
                    if t.number > self.cur.number:
                        lag += t.size()
        except OSError:
            pass
        self.lag_bytes = lag
        limit = self._ctx.config.readiness_max_lag_bytes
        if lag > limit:
            self._set_cond("readiness", "capture_lag", False, f"capture is {lag} bytes behind the WAL (limit {limit})")
        elif self._conds.get(("readiness", "capture_lag")) is False:
            self._set_cond("readiness", "capture_lag", True, "")
        m = getattr(self._ctx, "metrics", None)
        if m is not None:
            _metric_set(m, "capture_lag_bytes", lag)
            _metric_set(m, "capture_lag_seq", self.lag_seq)
            _metric_set(m, "capture_last_seq", self.last_seq)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:197] + "..."


def _metric_inc(m: Any, name: str, n: int) -> None:
    fn = getattr(m, "inc", None)
    if fn is not None:
        try:
            fn(name, n)
        except Exception:  # noqa: BLE001 - metrics are best effort
            pass


def _metric_set(m: Any, name: str, value: float) -> None:
    fn = getattr(m, "set", None)
    if fn is not None:
        try:
            fn(name, value)
        except Exception:  # noqa: BLE001 - metrics are best effort
            pass
