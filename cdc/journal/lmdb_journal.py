"""The LMDB journal: the source of truth for event ids, replay and capture checkpoints.

Invariants:
- Event ids are assigned in commit order, start at 1 and are strictly increasing across
  restarts (the next id is persisted in ``meta`` in the same transaction as the events, so
  pruning every event never makes an id come back).
- ``append(events, checkpoints)`` writes the events *and* the checkpoints in ONE write
  transaction: after a ``kill -9`` either both are on disk or neither is.
- Events are stored in chunks (:mod:`cdc.model.chunk`): one LMDB record per run of up to
  CHUNK_EVENTS consecutive events of one commit, holding each event's wire JSON *with* its id
  and *without* its value (comma-separated: the run's ``batch=1`` frame is one slice), its ix
  record (filter fields + the JSON fragment of its value) and a summary (types, cfs, key range)
  that lets the fan-out accept or reject a whole chunk for a filter. Nothing is re-encoded on
  replay or fan-out: JSON with value = ``wire[:-1] + value_fragment + b"}"``.
- Retention (count, bytes, age) prunes the oldest events, in bounded batches, inside append
  transactions (a chunk partly over the count/bytes limit is rewritten without its oldest events).
- A full LMDB map or a full disk raises :class:`~cdc.errors.JournalFull`; the transaction is
  aborted, nothing half-written remains, and the journal stays usable.

Layout (LMDB named databases):
- ``ch``:   ``>Q`` first id + ``>I`` count -> chunk value (:mod:`cdc.model.chunk`)
- ``meta``: ``next_id`` (u64), ``bytes`` (u64: stored bytes of the chunks), ``count`` (u64:
  retained events), ``format`` (u64: 2), ``cp:<name>`` -> checkpoint, ``epoch`` (the journal's
  identity: 16 hex characters, random, written when the journal is created)
- a journal of format 1 (``ev``: id -> wire, ``ix``: id -> ix record) is migrated to chunks when
  opened, in bounded transactions that each move records and delete them (crash-safe, resumable).

Integrity (README "Recovering the journal"): before LMDB maps ``data.mdb``, :func:`check_journal_file`
reads its two meta pages and refuses a file shorter than the last page they record (mapping it would
SIGBUS) or without valid meta pages; after opening, every page of the tree is walked read-only
(:func:`verify_env`). Damage found later (``MDB_CORRUPTED`` while reading or writing) raises
:class:`~cdc.errors.JournalCorrupt` and sets :attr:`Journal.damaged`. ``<state dir>/journal.identity``
remembers the epoch and last id outside the journal, so a journal that was deleted or emptied is
noticed (:attr:`Journal.replaced`).
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import lmdb
import msgspec

from cdc.errors import JournalCorrupt, JournalError, JournalFull
from cdc.format import speedups
from cdc.journal.lock import lock_journal, unlock_journal
from cdc.model.chunk import (
    Chunk,
    Committed,
    assemble_chunk,
    chunk_key,
    chunk_of_stored,
    encode_chunk,
    first_key,
    parse_key,
)
from cdc.model.events import Event
from cdc.model.wire import PreEncoded, Record, encode_event

__all__ = ["CHUNK_EVENTS", "Journal", "check_journal_file", "verify_env"]

_ID = struct.Struct(">Q")
_U64 = struct.Struct("<Q")
_json_encoder = msgspec.json.Encoder()

_log = logging.getLogger("cdc.journal")

PRUNE_BATCH = 50_000
"""Most events pruned by one append transaction (bounds the time of a write txn)."""
CHUNK_EVENTS = 1000
"""Most events per stored chunk (one LMDB record; also the live ``batch=1`` frame)."""
CHUNK_BYTES = 1 << 20
"""A chunk is closed after the event that reaches this many stored bytes."""
MIGRATE_BATCH = 100_000
"""Events moved per transaction when a format-1 journal is migrated."""
FORMAT = 2
"""Journal layout version (``meta`` ``format``): 2 = chunks (``ch``); 1 = one ``ev`` + one ``ix``
record per event (migrated to chunks when opened, see :meth:`Journal._migrate`)."""

_C_CHUNK: Any = speedups.C  # encode_run: the per-event loop of encode_chunk in C (None: the Python reference)


def _encode_chunk_c(items: list[Any], start: int, first_id: int, ts: int, max_events: int, max_bytes: int) -> tuple[bytes, int]:
    """:func:`cdc.model.chunk.encode_chunk` with the per-event loop in C (same bytes); items the
    C loop does not take (unusual types) go through the Python reference."""
    r = _C_CHUNK.encode_run(items, start, first_id, ts, max_events, max_bytes)
    if r is None:
        return encode_chunk(items, start, first_id, ts, max_events, max_bytes)
    ev, ix, ev_ends, ix_ends, n, types, cfs, kmin, kmax, flags = r
    return assemble_chunk(ts, flags, n, ev, ix, ev_ends, ix_ends, types, cfs, kmin, kmax), n


_encode_chunk = _encode_chunk_c if _C_CHUNK is not None else encode_chunk


_ALL_PRE = {PreEncoded}


def _check_encoded(item: PreEncoded) -> None:
    """Raise if an encoded event cannot be laid out in a chunk."""
    core, value, _etype, _cf, _key, _end_key = item
    if not (isinstance(core, bytes) and isinstance(value, bytes) and core[:1] == b"{"):
        raise TypeError("bad pre-encoded event")
    encode_chunk([item], 0, 1, 0, 1, 1)  # the wire JSON, the ix record and the chunk around them


class Journal:
    """The LMDB journal (one writer at a time; reads from any thread).

    Args:
        path: directory of the LMDB environment (created if missing).
        map_size: LMDB map size in bytes (an existing larger map is kept).
        retention_count / retention_bytes / retention_age_s: what is kept (0 = unlimited).
    """

    def __init__(
        self,
        path: str,
        *,
        map_size: int = 1 << 30,
        retention_count: int = 10_000_000,
        retention_bytes: int = 512 << 20,
        retention_age_s: float = 7 * 24 * 3600.0,
        sync: bool = True,
    ) -> None:
        self._lock_fd = -1
        self.epoch = ""  # set below once read or created; close() only writes an identity that has one
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"cannot open journal at {path}: {exc.strerror or exc}") from exc
        self._lock_fd = lock_journal(path)
        try:
            check_journal_file(path)  # before LMDB maps the file: a truncated one would SIGBUS
        except JournalError:
            self._unlock()
            raise
        try:
            self.env = lmdb.open(
                path,
                map_size=map_size,
                max_dbs=4,
                metasync=False,
                sync=sync,
                readahead=False,
                max_readers=512,
            )
        except (OSError, lmdb.Error) as exc:
            self._unlock()
            raise JournalError(f"cannot open journal at {path}: {exc}") from exc
        self.path = path
        self.sync = sync
        self.damaged = ""  # set (reason) once damage was found while reading or writing
        self.replaced: dict[str, Any] | None = None  # set when this new journal replaced another one
        self.retention_count = retention_count
        self.retention_bytes = retention_bytes
        self.retention_age_s = retention_age_s
        try:
            self._ch = self.env.open_db(b"ch")
            self._meta = self.env.open_db(b"meta")
            verify_env(self.env, path)
            self._write_lock = threading.Lock()
            self._last_age_check = 0.0
            self.full = False  # set while the last append failed with JournalFull
            self._psize = int(self.env.stat()["psize"])
            self._file_size = 0
            self._migrate()
            self._cover_last_page()
            with self.env.begin() as txn:
                raw = txn.get(b"next_id", db=self._meta)
                self._next_id = _U64.unpack(raw)[0] if raw else 1
                raw = txn.get(b"bytes", db=self._meta)
                self._bytes = _U64.unpack(raw)[0] if raw else 0
                raw = txn.get(b"count", db=self._meta)
                self._count = _U64.unpack(raw)[0] if raw else 0
                cur = txn.cursor(db=self._ch)
                self._oldest = parse_key(cur.key())[0] if cur.first() else self._next_id
                raw = txn.get(b"epoch", db=self._meta)
                epoch = bytes(raw).decode("ascii", "replace") if raw else ""
            if not epoch:
                created = self._next_id == 1 and self._count == 0
                epoch = secrets.token_hex(8)
                with self.env.begin(write=True) as txn:
                    txn.put(b"epoch", epoch.encode(), db=self._meta)
                if created:
                    self._note_replacement(epoch)
            self.epoch = epoch
            """The journal's identity (sent in ``hello``): a cursor is only valid with its epoch."""
            self._write_identity()
        except JournalCorrupt:
            self.close()
            raise
        except lmdb.Error as exc:
            self.close()
            raise JournalCorrupt(path, f"{type(exc).__name__}: {exc}") from None

    # ------------------------------------------------------------------ properties

    @property
    def latest_id(self) -> int:
        """Id of the last committed event (0 when nothing was ever committed)."""
        return self._next_id - 1

    @property
    def oldest_id(self) -> int:
        """Id of the oldest retained event (``latest_id + 1`` when the journal is empty)."""
        return self._oldest

    @property
    def count(self) -> int:
        """Number of retained events."""
        return self._count

    @property
    def size_bytes(self) -> int:
        """Stored bytes of the retained events."""
        return self._bytes

    @property
    def map_size(self) -> int:
        return int(self.env.info()["map_size"])

    # ------------------------------------------------------------------ identity

    @property
    def identity_path(self) -> str:
        """``<state dir>/journal.identity``: the epoch and last id, kept outside the journal."""
        return os.path.join(os.path.dirname(os.path.abspath(self.path)), os.path.basename(os.path.normpath(self.path)) + ".identity")

    def _note_replacement(self, epoch: str) -> None:
        """A brand-new journal: if the identity file names another one, say so loudly."""
        try:
            with open(self.identity_path, "rb") as f:
                old = msgspec.json.decode(f.read())
        except (OSError, msgspec.DecodeError):
            return
        if not isinstance(old, dict) or not old.get("epoch") or old.get("epoch") == epoch:
            return
        last = old.get("latest_id") if isinstance(old.get("latest_id"), int) else None
        self.replaced = {"previous_epoch": str(old["epoch"])[:64], "previous_latest_id": last, "epoch": epoch}
        _log.warning(
            "journal %s is NEW but this state dir had another journal (epoch %s, ids up to %s): event ids restart at 1; "
            "clients resuming with an old cursor get a reset (epoch_changed)",
            self.path, self.replaced["previous_epoch"], "?" if last is None else last,
        )

    def set_epoch(self, epoch: str) -> None:
        """Adopt another journal's identity (a mirror of it, e.g. an edge node's copy)."""
        epoch = str(epoch)[:64]
        if not epoch or epoch == self.epoch:
            return
        with self._write_lock:
            try:
                with self.env.begin(write=True) as txn:
                    txn.put(b"epoch", epoch.encode(), db=self._meta)
            except lmdb.Error as exc:
                raise JournalError(f"journal write failed: {exc}") from exc
        self.epoch = epoch
        self._write_identity()

    def _write_identity(self) -> None:
        data = _json_encoder.encode({"epoch": self.epoch, "latest_id": self.latest_id})
        tmp = self.identity_path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data + b"\n")
            os.replace(tmp, self.identity_path)
        except OSError as exc:  # not fatal: only the replaced-journal warning depends on it
            _log.debug("cannot write %s: %s", self.identity_path, exc)

    def _corrupt(self, exc: BaseException) -> JournalCorrupt:
        """Record damage found while reading or writing; the exception to raise."""
        reason = f"{type(exc).__name__}: {exc}"[:200] if not isinstance(exc, lmdb.CorruptedError) else "MDB_CORRUPTED: a page is not what the tree says"
        if not self.damaged:
            self.damaged = reason
        return JournalCorrupt(self.path, reason)

    # ------------------------------------------------------------------ writing

    def append(
        self,
        events: Sequence[Event | dict[str, Any]],
        checkpoints: dict[str, bytes] | None = None,
        *,
        now_ms: int | None = None,
    ) -> list[Record]:
        """Commit events and checkpoints in one transaction; return the committed records.

        Never raises because of an event's content: events that cannot be encoded or stored
        (a dict with an invalid type, a type over 64 KiB, a field msgspec cannot encode, a key
        over 2 GiB, ...) are skipped, counted in ``rejected``, listed in ``last_skipped`` and
        logged once per event type (the type only, never the content); the other events of the
        call are committed. Validate before emitting to get a clear error.

        Raises:
            JournalFull: the map or the disk is full (nothing was written).
            JournalError: any other LMDB failure (nothing was written).
        """
        if now_ms is None:
            now_ms = int(time.time() * 1000)
        encoded: list[PreEncoded] = []
        skipped: list[int] = []
        enc_append = encoded.append
        todo: Sequence[Any] = events
        if events and set(map(type, events)) == _ALL_PRE:  # capture's hot path: nothing to encode
            encoded = events if type(events) is list else list(events)  # type: ignore[assignment]
            todo = ()
        for i, ev in enumerate(todo):
            if type(ev) is PreEncoded:  # pre-encoded by capture (cdc.model.wire)
                enc_append(ev)
                continue
            try:
                enc_append(encode_event(ev, now_ms))
            except Exception as exc:  # noqa: BLE001 - content must never break a commit
                self._reject(ev, exc)
                skipped.append(i)
        try:
            records = self._commit(encoded, checkpoints, now_ms)
        except (JournalError, lmdb.Error):
            self.last_skipped = skipped
            raise
        except Exception:  # noqa: BLE001 - an event the ix/wire layout cannot hold: find and skip it
            keep: list[PreEncoded] = []
            skip_set = set(skipped)
            positions = [i for i in range(len(events)) if i not in skip_set]
            for pos, item in zip(positions, encoded, strict=True):
                try:
                    _check_encoded(item)
                except Exception as exc:  # noqa: BLE001
                    self._reject(events[pos], exc)
                    skipped.append(pos)
                else:
                    keep.append(item)
            skipped.sort()
            records = self._commit(keep, checkpoints, now_ms)
        self.last_skipped = skipped
        return records

    _rejected_types: set[str] = set()

    def _reject(self, ev: Any, exc: BaseException) -> None:
        """Count a skipped event; log once per event type (type and error class, not content)."""
        self.rejected += 1
        if isinstance(ev, tuple) and len(ev) > 2:
            etype = ev[2]
        elif isinstance(ev, dict):
            etype = ev.get("type")
        elif isinstance(ev, msgspec.Struct):
            etype = ev.__struct_config__.tag or type(ev).__name__
        else:
            etype = type(ev).__name__
        name = etype[:64] if isinstance(etype, str) else type(etype).__name__
        if name not in self._rejected_types and len(self._rejected_types) < 1024:
            self._rejected_types = self._rejected_types | {name}
            _log.error("journal: skipped an event of type %r that cannot be stored (%s); further ones are only counted", name, type(exc).__name__)

    def _commit(
        self,
        encoded: list[PreEncoded],
        checkpoints: dict[str, bytes] | None,
        now_ms: int,
    ) -> Committed:
        """One write transaction (see :meth:`append`); any exception leaves nothing written."""
        with self._write_lock:
            next_id = self._next_id
            chunks: list[Chunk] = []
            added = 0
            try:
                with self.env.begin(write=True) as txn:
                    ch_put = txn.cursor(db=self._ch).put
                    pos, n_all = 0, len(encoded)
                    encode = _encode_chunk
                    while pos < n_all:
                        blob, taken = encode(encoded, pos, next_id, now_ms, CHUNK_EVENTS, CHUNK_BYTES)
                        ch_put(chunk_key(next_id, taken), blob, append=True)
                        chunks.append(Chunk(next_id, blob, verify=False))
                        added += len(blob)
                        next_id += taken
                        pos += taken
                    put = txn.put
                    if checkpoints:
                        for name, data in checkpoints.items():
                            put(b"cp:" + name.encode(), data, db=self._meta)
                    total = self._bytes + added
                    count = self._count + n_all
                    pruned_n, pruned_b, oldest = self._prune(txn, count, total, now_ms)
                    total -= pruned_b
                    count -= pruned_n
                    if n_all or pruned_n:
                        put(b"next_id", _U64.pack(next_id), db=self._meta)
                        put(b"bytes", _U64.pack(total), db=self._meta)
                        put(b"count", _U64.pack(count), db=self._meta)
            except lmdb.MapFullError as exc:
                self.full = True
                raise JournalFull(
                    f"journal map full ({self.map_size} bytes at {self.path}): raise journal_map_size or lower retention_bytes"
                ) from exc
            except _DAMAGE as exc:
                raise self._corrupt(exc) from None
            except lmdb.Error as exc:
                if getattr(exc, "errno", None) == errno.ENOSPC or "No space" in str(exc):
                    self.full = True
                    raise JournalFull(f"disk full under journal {self.path}") from exc
                raise JournalError(f"journal write failed: {exc}") from exc
            first = chunks[0].first if self._count == 0 and chunks else None
            self._committed(next_id, total, count, oldest if pruned_n else None, first)
            return Committed(chunks)

    rejected = 0
    """Events skipped because they could not be encoded (since open)."""
    last_skipped: list[int] = []
    """Indices (in the events argument) skipped by the last append."""

    def _prune(self, txn: lmdb.Transaction, count: int, total: int, now_ms: int) -> tuple[int, int, int | None]:
        """Delete the oldest events over the retention limits (at most about PRUNE_BATCH).

        Whole chunks go while every event in them is over a limit (or older than the age
        limit: a chunk's time is its newest event's); the chunk the count or bytes limit falls
        into is rewritten without its oldest events. Returns (events, bytes, new oldest id)."""
        over_count = self.retention_count and count > self.retention_count
        over_bytes = self.retention_bytes and total > self.retention_bytes
        check_age = False
        if self.retention_age_s:
            mono = time.monotonic()
            if mono - self._last_age_check >= 1.0:
                self._last_age_check = mono
                check_age = True
        if not (over_count or over_bytes or check_age):
            return 0, 0, None
        cutoff = now_ms - int(self.retention_age_s * 1000) if check_age else None
        cur = txn.cursor(db=self._ch)
        n = 0
        nbytes = 0
        if not cur.first():
            return 0, 0, None
        while n < PRUNE_BATCH:
            first, size = parse_key(cur.key())
            blob = cur.value()
            need_n = count - n - self.retention_count if self.retention_count else 0
            need_b = total - nbytes - self.retention_bytes if self.retention_bytes else 0
            aged = cutoff is not None and Chunk(first, blob, verify=False).ts < cutoff
            if not aged and need_n <= 0 and need_b <= 0:
                break
            if aged or need_n >= size or need_b >= len(blob):
                n += size
                nbytes += len(blob)
                if not cur.delete() or not cur.key():
                    break
                continue
            # the limit falls inside this chunk: drop its oldest events, keep the rest (checked
            # first: a damaged chunk must not be rewritten under a fresh checksum)
            try:
                old = Chunk(first, blob)
            except ValueError as exc:
                raise self._corrupt(exc) from None
            wires, ixs = old.wires(), old.ixs()
            k = max(need_n, 0)
            if need_b > 0:
                freed = 0
                for j in range(size):
                    freed += len(wires[j]) + len(ixs[j]) + 9
                    if freed >= need_b:
                        k = max(k, j + 1)
                        break
            k = min(max(k, 1), size - 1)
            rest = chunk_of_stored(first + k, wires[k:], ixs[k:])
            cur.delete()
            txn.put(chunk_key(first + k, size - k), rest, db=self._ch)
            n += k
            nbytes += len(blob) - len(rest)
            break
        cur = txn.cursor(db=self._ch)
        return n, nbytes, parse_key(cur.key())[0] if cur.first() else None

    def prune(self) -> int:
        """Apply the retention limits now (age included); returns the number of events deleted."""
        with self._write_lock:
            self._last_age_check = 0.0
            try:
                with self.env.begin(write=True) as txn:
                    n, b, oldest = self._prune(txn, self._count, self._bytes, int(time.time() * 1000))
                    if n:
                        txn.put(b"bytes", _U64.pack(self._bytes - b), db=self._meta)
                        txn.put(b"count", _U64.pack(self._count - n), db=self._meta)
                if n:
                    # LMDB reuses the pages a txn freed only from the txn after next: commit one
                    # small txn now, or a full map stays full for big values (needing runs of
                    # free pages) although retention just freed plenty.
                    with self.env.begin(write=True) as txn:
                        txn.put(b"bytes", _U64.pack(self._bytes - b), db=self._meta)
            except lmdb.Error as exc:
                raise JournalError(f"journal prune failed: {exc}") from exc
            if n:
                self._count -= n
                self._bytes -= b
                self._oldest = oldest if oldest is not None and self._count else self._next_id
                self._cover_last_page()
            return n

    def append_raw(self, items: Sequence[tuple[int, bytes, bytes]]) -> tuple[Committed | list[Record], int]:
        """Mirror path (``cdc edge``): store records that already carry their ids.

        ``items`` are ``(id, ev value, ix value)`` exactly as another journal stores them (see
        :meth:`read_raw`), in increasing id order. Ids at or below :attr:`latest_id` are
        duplicates and skipped (an id proves it). When the first new id is not ``latest_id + 1``
        the ids in between are not available any more (pruned upstream): every older event is
        deleted in the same transaction, so :attr:`oldest_id` moves past the hole and a cursor
        before it gets ``reset`` instead of a silent gap. Returns (committed records, number
        of ids missing in front of them).

        Raises:
            ValueError: ids not strictly increasing within ``items``.
            JournalFull / JournalError: as :meth:`append` (nothing written).
        """
        with self._write_lock:
            next_id = self._next_id
            fresh = [it for it in items if it[0] >= next_id]
            if not fresh:
                return [], 0
            for a, b in zip(fresh, fresh[1:], strict=False):
                if b[0] <= a[0]:
                    raise ValueError("append_raw: ids must be strictly increasing")
            missing = sum(b[0] - a[0] - 1 for a, b in zip(fresh, fresh[1:], strict=False))
            if missing:
                raise ValueError("append_raw: ids must be consecutive within one call")
            hole = fresh[0][0] - next_id if self._count or next_id > 1 else 0
            chunks: list[Chunk] = []
            try:
                with self.env.begin(write=True) as txn:
                    count, total = self._count, self._bytes
                    if hole and count:
                        txn.drop(self._ch, delete=False)
                        count, total = 0, 0
                    ch_put = txn.cursor(db=self._ch).put
                    added = 0
                    for a in range(0, len(fresh), CHUNK_EVENTS):
                        part = fresh[a : a + CHUNK_EVENTS]
                        first = part[0][0]
                        blob = chunk_of_stored(first, [bytes(p[1]) for p in part], [bytes(p[2]) for p in part])
                        ch_put(chunk_key(first, len(part)), blob, append=True)
                        chunks.append(Chunk(first, blob, verify=False))
                        added += len(blob)
                    next_id = fresh[-1][0] + 1
                    total += added
                    count += len(fresh)
                    pruned_n, pruned_b, oldest = self._prune(txn, count, total, int(time.time() * 1000))
                    total -= pruned_b
                    count -= pruned_n
                    txn.put(b"next_id", _U64.pack(next_id), db=self._meta)
                    txn.put(b"bytes", _U64.pack(total), db=self._meta)
                    txn.put(b"count", _U64.pack(count), db=self._meta)
            except lmdb.MapFullError as exc:
                self.full = True
                raise JournalFull(f"journal map full ({self.map_size} bytes at {self.path})") from exc
            except lmdb.Error as exc:
                raise JournalError(f"journal write failed: {exc}") from exc
            first_new = chunks[0].first if chunks and (hole or count == len(fresh)) else None
            self._committed(next_id, total, count, oldest if pruned_n else None, first_new)
            return Committed(chunks), hole

    # ------------------------------------------------------------------ migration

    def _migrate(self) -> None:
        """Move a format-1 journal's ``ev``/``ix`` records into chunks (see the module doc).

        Each transaction moves up to MIGRATE_BATCH events and deletes them, so a crash in the
        middle leaves a journal that the next open finishes migrating."""
        try:
            ev_db = self.env.open_db(b"ev", create=False)
            ix_db = self.env.open_db(b"ix", create=False)
        except lmdb.NotFoundError:
            return
        moved = 0
        t0 = time.monotonic()
        while True:
            with self.env.begin(write=True) as txn:
                ev_cur = txn.cursor(db=ev_db)
                ix_cur = txn.cursor(db=ix_db)
                if not ev_cur.first():
                    txn.drop(ev_db, delete=True)
                    txn.drop(ix_db, delete=True)
                    total = count = 0
                    for k, v in txn.cursor(db=self._ch):
                        count += parse_key(k)[1]
                        total += len(v)
                    txn.put(b"bytes", _U64.pack(total), db=self._meta)
                    txn.put(b"count", _U64.pack(count), db=self._meta)
                    txn.put(b"format", _U64.pack(FORMAT), db=self._meta)
                    break
                ix_cur.first()
                run: list[tuple[int, bytes, bytes]] = []
                while len(run) < MIGRATE_BATCH and ev_cur.key():
                    id_ = _ID.unpack(ev_cur.key())[0]
                    if _ID.unpack(ix_cur.key())[0] != id_:
                        raise JournalCorrupt(self.path, f"format-1 journal: event {id_} has no index record")
                    run.append((id_, ev_cur.value(), ix_cur.value()))
                    ev_cur.delete()
                    ix_cur.delete()
                start = 0
                for i in range(1, len(run) + 1):
                    if i == len(run) or run[i][0] != run[i - 1][0] + 1 or i - start >= CHUNK_EVENTS:
                        part = run[start:i]
                        txn.put(chunk_key(part[0][0], len(part)), chunk_of_stored(part[0][0], [p[1] for p in part], [p[2] for p in part]), db=self._ch)
                        start = i
                moved += len(run)
        if moved:
            _log.warning("journal %s: migrated %d events to the chunked layout (format %d) in %.1f s", self.path, moved, FORMAT, time.monotonic() - t0)

    # ------------------------------------------------------------------ reading

    def _chunks(self, txn: Any, since_id: int) -> Iterable[Chunk]:
        """The stored chunks holding ids after ``since_id``, in id order (the first as a view
        starting after ``since_id``)."""
        cur = txn.cursor(db=self._ch)
        target = since_id + 1
        found = cur.set_range(first_key(target))
        if not found or parse_key(cur.key())[0] > target:
            # the chunk before the one found (or the last chunk) may hold ``target``
            back = txn.cursor(db=self._ch)
            ok = (back.set_range(first_key(target)) and back.prev()) if found else back.last()
            if ok:
                first, n = parse_key(back.key())
                if first + n > target:
                    cur, found = back, True
        if not found:
            return
        for k, v in cur:
            first, _n = parse_key(k)
            c = Chunk(first, v)
            yield c.view(target, c.last) if first < target else c

    def read_chunks(self, since_id: int, limit: int = 10_000) -> list[Chunk]:
        """Chunks (views) of up to about ``limit`` events with ``id > since_id``, in id order
        (the replay path: each chunk's frames are prebuilt slices).

        Raises:
            JournalCorrupt: a damaged page or chunk was met (also sets :attr:`damaged`).
        """
        try:
            out: list[Chunk] = []
            n = 0
            with self.env.begin(buffers=False) as txn:
                for c in self._chunks(txn, since_id):
                    if n + len(c) >= limit:
                        out.append(c.view(c.first, c.first + limit - n - 1))
                        break
                    out.append(c)
                    n += len(c)
            return out
        except (*_DAMAGE, ValueError, struct.error, IndexError) as exc:
            raise self._corrupt(exc) from None

    def read_columns(self, since_id: int, limit: int = 1000, max_bytes: int = 1 << 20) -> tuple[int, list[bytes], list[bytes]] | None:
        """Up to ``limit`` stored records with ``id > since_id`` as columns ``(first id, ev values,
        ix values)`` (ids first, first+1, ...), stopping after a chunk that passes ``max_bytes``;
        ``(since_id + 1, [], [])`` when there is none; None when the ids there are not
        consecutive (use :meth:`read_raw`). The NATS publisher's source (no per-record work)."""
        evs: list[bytes] = []
        ixs: list[bytes] = []
        first = since_id + 1
        size = 0
        with self.env.begin(buffers=False) as txn:
            for c in self._chunks(txn, since_id):
                if not evs:
                    first = c.first
                elif c.first != first + len(evs):
                    break
                if len(evs) + len(c) > limit:
                    c = c.view(c.first, c.first + limit - len(evs) - 1)
                w, x = c.wires(), c.ixs()
                evs += w
                ixs += x
                size += sum(map(len, w)) + sum(map(len, x))
                if len(evs) >= limit or size > max_bytes:
                    break
        return first, evs, ixs

    def read_raw(self, since_id: int, limit: int = 1000, max_bytes: int = 1 << 20) -> list[tuple[int, bytes, bytes]]:
        """Up to ``limit`` stored ``(id, ev value, ix value)`` with ``id > since_id``, oldest
        first (about ``max_bytes`` at most): what :meth:`append_raw` takes."""
        out: list[tuple[int, bytes, bytes]] = []
        size = 0
        with self.env.begin(buffers=False) as txn:
            for c in self._chunks(txn, since_id):
                for item in zip(range(c.first, c.last + 1), c.wires(), c.ixs(), strict=True):
                    size += len(item[1]) + len(item[2])
                    if out and size > max_bytes:
                        return out
                    out.append(item)
                    if len(out) >= limit:
                        return out
        return out

    def get_checkpoint(self, name: str) -> bytes | None:
        """Last checkpoint committed under ``name`` (None if never)."""
        with self.env.begin() as txn:
            raw = txn.get(b"cp:" + name.encode(), db=self._meta)
            return bytes(raw) if raw is not None else None

    def read(self, since_id: int, limit: int = 1000) -> list[Record]:
        """Up to ``limit`` retained records with ``id > since_id``, oldest first.

        Raises:
            JournalCorrupt: a damaged page or record was met (also sets :attr:`damaged`).
        """
        try:
            out: list[Record] = []
            with self.env.begin(buffers=False) as txn:
                for c in self._chunks(txn, since_id):
                    if len(out) + len(c) > limit:
                        c = c.view(c.first, c.first + limit - len(out) - 1)
                    out += c.records()
                    if len(out) >= limit:
                        break
            return out
        except (*_DAMAGE, ValueError, struct.error, IndexError, UnicodeDecodeError) as exc:
            raise self._corrupt(exc) from None

    def read_wire(self, since_id: int, limit: int = 10_000) -> tuple[list[bytes], int]:
        """Wire JSON (no values) of up to ``limit`` events with ``id > since_id``.

        Returns (frames, id of the last frame or ``since_id`` when none).

        Raises:
            JournalCorrupt: a damaged page or record was met (also sets :attr:`damaged`).
        """
        out: list[bytes] = []
        last = since_id
        for c in self.read_chunks(since_id, limit):  # at most ``limit`` events
            out += c.wires()
            last = c.last
        return out, last

    def iter_all(self) -> Iterable[Record]:  # pragma: no cover - debugging aid
        since = 0
        while True:
            batch = self.read(since, 1000)
            if not batch:
                return
            yield from batch
            since = batch[-1].id

    def _committed(self, next_id: int, total: int, count: int, pruned_oldest: int | None, first_new: int | None) -> None:
        """The counters after a commit: the oldest id is the next one when empty, else the
        oldest left by pruning, else ``first_new`` (the first appended when the journal was
        empty before), else unchanged."""
        if pruned_oldest is not None:
            self._cover_last_page()
        self.full = False
        self._next_id = next_id
        self._bytes = total
        self._count = count
        if count == 0:
            self._oldest = next_id
        elif pruned_oldest is not None:
            self._oldest = pruned_oldest
        elif first_new is not None:
            self._oldest = first_new

    def _cover_last_page(self) -> None:
        """Keep ``data.mdb`` at least as long as the last page LMDB's meta records.

        Pages a transaction allocates and frees again (events pruned in the transaction that
        wrote them) are never written, so the file can end before ``last_pgno``: harmless to
        LMDB (those pages are free) but indistinguishable from a truncated file for
        :func:`check_journal_file`. Extending the file (sparse, zeros: free pages) keeps that
        check meaningful. Called after commits that pruned."""
        try:
            need = (self.env.info()["last_pgno"] + 1) * self._psize
            if need > self._file_size:
                data = os.path.join(self.path, "data.mdb")
                self._file_size = os.path.getsize(data)
                if need > self._file_size:
                    os.truncate(data, need)
                    self._file_size = need
        except OSError as exc:  # not fatal: only the next start's truncation check can be fooled
            _log.debug("cannot extend %s: %s", self.path, exc)

    def close(self) -> None:
        """Close the environment and release the directory lock (idempotent)."""
        if self.epoch and self._lock_fd >= 0:
            self._write_identity()
        try:
            self.env.close()  # __init__ calls close() only once ``env`` is open (before that: _unlock)
        except lmdb.Error:  # pragma: no cover
            pass
        self._unlock()

    def _unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, -1
        unlock_journal(fd)


# ---------------------------------------------------------------------- integrity

_DAMAGE: tuple[type[BaseException], ...] = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError, lmdb.BadValsizeError, lmdb.BadTxnError)
"""LMDB errors that mean the file's pages are not what its tree says."""

_META_MAGIC = 0xBEEFC0DE
_META_VERSION = 1  # MDB_DATA_VERSION of LMDB 0.9
# MDB_meta inside a meta page, after the 16-byte page header: magic u32 @16, version u32 @20,
# mm_dbs[FREE_DBI].md_pad (= page size) u32 @40, mm_last_pg u64 @136, mm_txnid u64 @144.
_META_MAGIC_OFF = 16
_META_PSIZE_OFF = 40
_META_LAST_OFF = 136
_META_END = 152
_P_META = 0x08


def _meta(page: bytes) -> tuple[int, int, int] | None:
    """(page size, last page, txnid) of an LMDB meta page, None when it is not one."""
    if len(page) < _META_END:
        return None
    flags = struct.unpack_from("<H", page, 10)[0]
    magic, version = struct.unpack_from("<II", page, _META_MAGIC_OFF)
    if not flags & _P_META or magic != _META_MAGIC or version != _META_VERSION:
        return None
    psize = struct.unpack_from("<I", page, _META_PSIZE_OFF)[0]
    last, txnid = struct.unpack_from("<QQ", page, _META_LAST_OFF)
    return psize, last, txnid


def check_journal_file(path: str) -> None:
    """Refuse a ``data.mdb`` that LMDB must not map: shorter than the last page its meta pages
    record (a truncated file SIGBUSes the process on first touch) or without two valid meta
    pages. A missing or empty file is a new journal (not an error). Reads 2 pages, no mmap.

    Raises:
        JournalCorrupt: the file cannot be trusted (one-line message with the way out).
        JournalError: the file cannot be read at all.
    """
    data = os.path.join(path, "data.mdb")
    try:
        with open(data, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return
            head = f.read(_META_END)
            m0 = _meta(head)
            if m0 is None:
                raise JournalCorrupt(path, f"data.mdb has no valid LMDB meta page ({size} bytes)")
            psize = m0[0]
            if psize < 512 or psize > 1 << 16 or psize & (psize - 1):
                raise JournalCorrupt(path, f"data.mdb meta page records an impossible page size {psize}")
            f.seek(psize)
            m1 = _meta(f.read(_META_END))
    except FileNotFoundError:
        return
    except JournalCorrupt:
        raise
    except OSError as exc:
        raise JournalError(f"cannot read journal {data}: {exc.strerror or exc}") from None
    if m1 is None:
        raise JournalCorrupt(path, "data.mdb's second LMDB meta page is not valid")
    live = m0 if m0[2] >= m1[2] else m1
    need = (live[1] + 1) * psize
    if size < need:
        raise JournalCorrupt(path, f"data.mdb is truncated: {size} bytes, its last page ends at {need}")


def verify_env(env: lmdb.Environment, path: str) -> None:
    """Walk every page of the journal's trees read-only and check the journal's own records:
    chunk keys well formed, ids increasing without overlap, all below ``next_id``, as many
    events as ``count`` says, every chunk value whole (layout and CRC32C: LMDB does not look
    inside a large value's pages). A format-1 journal's ``ev`` and ``ix`` trees (not migrated
    yet) must hold the same ids. About 0.1 s per million events (every byte is read).

    Raises:
        JournalCorrupt: a page or record is not what it should be.
    """
    try:
        dbs = {}
        for name in (b"ch", b"meta", b"ev", b"ix"):
            try:
                dbs[name] = env.open_db(name, create=False)
            except lmdb.NotFoundError:
                pass
        if b"meta" not in dbs:
            return  # created but never used
        with env.begin() as txn:
            meta = dbs[b"meta"]
            for _k in txn.cursor(db=meta).iternext(keys=True, values=False):
                pass
            raw = txn.get(b"next_id", db=meta)
            next_id = _U64.unpack(raw)[0] if raw is not None and len(raw) == 8 else None
            total = 0
            end = 0
            if b"ch" in dbs:
                n_keys = 0
                for k, v in txn.cursor(db=dbs[b"ch"]).iternext(keys=True, values=True):
                    if len(k) != 12:
                        raise JournalCorrupt(path, "a chunk key is not 12 bytes")
                    first, n = parse_key(k)
                    if n == 0 or first < end:
                        raise JournalCorrupt(path, f"chunk {first}+{n} overlaps the one before it")
                    try:
                        if Chunk(first, v).size != n:
                            raise ValueError("chunk holds another number of events than its key says")
                    except ValueError as exc:
                        raise JournalCorrupt(path, f"chunk {first}+{n}: {exc}") from None
                    end = first + n
                    total += n
                    n_keys += 1
                if n_keys != txn.stat(dbs[b"ch"])["entries"]:
                    raise JournalCorrupt(path, "a tree holds fewer entries than its header says")
                raw = txn.get(b"count", db=meta)
                if raw is not None and b"ev" not in dbs and _U64.unpack(raw)[0] != total:
                    raise JournalCorrupt(path, f"{total} events in chunks but the count record says {_U64.unpack(raw)[0]}")
            if b"ev" in dbs and b"ix" in dbs:
                counts = []
                for db in (dbs[b"ev"], dbs[b"ix"]):
                    n = 0
                    for k in txn.cursor(db=db).iternext(keys=True, values=False):
                        if len(k) != 8:
                            raise JournalCorrupt(path, "an event key is not 8 bytes")
                        n += 1
                    counts.append(n)
                    if n != txn.stat(db)["entries"]:
                        raise JournalCorrupt(path, "a tree holds fewer entries than its header says")
                if counts[0] != counts[1]:
                    raise JournalCorrupt(path, f"{counts[0]} events but {counts[1]} index records")
                cur = txn.cursor(db=dbs[b"ev"])
                if cur.last():
                    end = max(end, _ID.unpack(cur.key())[0] + 1)
            if end:
                if next_id is None:
                    raise JournalCorrupt(path, "the next_id record is missing")
                if end > next_id:
                    raise JournalCorrupt(path, "an event id is not below next_id")
    except JournalCorrupt:
        raise
    except _DAMAGE as exc:
        reason = "MDB_CORRUPTED: a page is not what the tree says" if isinstance(exc, lmdb.CorruptedError) else f"{type(exc).__name__}: {exc}"
        raise JournalCorrupt(path, reason) from None
