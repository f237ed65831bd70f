"""The LMDB journal: the source of truth for event ids, replay and capture checkpoints.

Invariants:
- Event ids are assigned in commit order, start at 1 and are strictly increasing across
  restarts (the next id is persisted in ``meta`` in the same transaction as the events, so
  pruning every event never makes an id come back).
- ``append(events, checkpoints)`` writes the events *and* the checkpoints in ONE write
  transaction: after a ``kill -9`` either both are on disk or neither is.
- Each event is stored as its wire JSON *with* its id and *without* its value (``ev`` db), and
  its filter fields + the JSON fragment of its value (``ix`` db), so that replay and fan-out
  never re-encode: JSON with value = ``wire[:-1] + value_fragment + b"}"``.
- Retention (count, bytes, age) prunes the oldest events, in bounded batches, inside append
  transactions.
- A full LMDB map or a full disk raises :class:`~cdc.errors.JournalFull`; the transaction is
  aborted, nothing half-written remains, and the journal stays usable.

Layout (LMDB named databases, keys are 8-byte big-endian ids):
- ``ev``:   id -> wire JSON (``{"id":N,"type":...}``) without ``value``/``value_encoding``
- ``ix``:   id -> ``_IX`` header (commit ms, lengths) + type + cf + key + end_key + value fragment
- ``meta``: ``next_id`` (u64), ``bytes`` (u64: stored bytes of ev+ix), ``cp:<name>`` -> checkpoint,
  ``epoch`` (the journal's identity: 16 hex characters, random, written when the journal is created)

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
from itertools import islice
from typing import Any

import lmdb
import msgspec

from cdc.errors import JournalCorrupt, JournalError, JournalFull
from cdc.journal.lock import lock_journal, unlock_journal
from cdc.model.events import Event
from cdc.model.wire import PreEncoded, Record, encode_event

__all__ = ["Journal", "check_journal_file", "verify_env"]

_ID = struct.Struct(">Q")
_U64 = struct.Struct("<Q")
# commit time ms, len(type), len(cf) (0xFFFF: none, 0xFFFE: long cf), len(key) (-1: none), len(end_key) (-1: none)
_IX = struct.Struct("<qHHii")
_NO_CF = 0xFFFF
_LONG_CF = 0xFFFE
"""cf length field of a cf of >= 0xFFFE bytes: its real length follows the type bytes as a u32
(so every cf length is unambiguous and 0xFFFF always means "no cf")."""
_U32 = struct.Struct("<I")
MAX_TYPE_BYTES = 0xFFFF
"""Longest storable event type (UTF-8 bytes); a longer type is rejected (skipped and counted)."""
_IX_HEAD = struct.Struct("<qHH")  # the first three fields of _IX
_KL = struct.Struct("<ii")  # the last two
_NO_KEYS = _KL.pack(-1, -1)
_json_encoder = msgspec.json.Encoder()

_log = logging.getLogger("cdc.journal")

PRUNE_BATCH = 50_000
"""Most events pruned by one append transaction (bounds the time of a write txn)."""


_utf8_cache: dict[str, bytes] = {}


def _utf8(text: str) -> bytes:
    b = _utf8_cache.get(text)
    if b is None:
        b = text.encode()
        if len(_utf8_cache) < 4096:
            _utf8_cache[text] = b
    return b


_ix_pack = _IX.pack


_tc_cache: dict[tuple[str, str | None], tuple[bytes, int, int]] = {}


def _type_cf(etype: str, cf: str | None) -> tuple[bytes, int, int]:
    """(type bytes + cf bytes, len(type), cf length field) for the ix header, cached."""
    tc = _tc_cache.get((etype, cf))
    if tc is None:
        t = _utf8(etype)
        if len(t) > MAX_TYPE_BYTES:
            raise ValueError(f"event type longer than {MAX_TYPE_BYTES} bytes")
        c = b"" if cf is None else _utf8(cf)
        if cf is None:
            tc = (t, len(t), _NO_CF)
        elif len(c) >= _LONG_CF:
            tc = (t + _U32.pack(len(c)) + c, len(t), _LONG_CF)
        else:
            tc = (t + c, len(t), len(c))
        if len(_tc_cache) < 4096:
            _tc_cache[(etype, cf)] = tc
    return tc


def _pack_ix(ts: int, etype: str, cf: str | None, key: bytes | None, end_key: bytes | None, value: bytes) -> bytes:
    tc, tl, cl = _type_cf(etype, cf)
    if end_key is None:
        if key is None:
            return _ix_pack(ts, tl, cl, -1, -1) + tc + value
        return b"".join((_ix_pack(ts, tl, cl, len(key), -1), tc, key, value))
    return b"".join((_ix_pack(ts, tl, cl, -1 if key is None else len(key), len(end_key)), tc, key or b"", end_key, value))


def _check_encoded(item: PreEncoded) -> None:
    """Raise if an encoded event cannot be laid out as ``ev`` + ``ix`` values."""
    core, value, etype, cf, key, end_key = item
    if not (isinstance(core, bytes) and isinstance(value, bytes) and core[:1] == b"{"):
        raise TypeError("bad pre-encoded event")
    b'{"id":%d,%b' % (0, core[1:])
    _pack_ix(0, etype, cf, key, end_key, value)


def _unpack_record(id_: int, wire: bytes, ix: bytes) -> Record:
    ts, tl, cl, kl, el = _IX.unpack_from(ix)
    p = _IX.size
    etype = ix[p : p + tl].decode()
    p += tl
    cf: str | None = None
    if cl != _NO_CF:
        if cl == _LONG_CF:
            cl = _U32.unpack_from(ix, p)[0]
            p += 4
        cf = ix[p : p + cl].decode()
        p += cl
    key: bytes | None = None
    if kl >= 0:
        key = ix[p : p + kl]
        p += kl
    end_key: bytes | None = None
    if el >= 0:
        end_key = ix[p : p + el]
        p += el
    return Record(id_, etype, cf, key, end_key, ts, wire, ix[p:])


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
            self._ev = self.env.open_db(b"ev")
            self._ix = self.env.open_db(b"ix")
            self._meta = self.env.open_db(b"meta")
            verify_env(self.env, path, self._ev, self._ix, self._meta)
            self._write_lock = threading.Lock()
            self._last_age_check = 0.0
            self.full = False  # set while the last append failed with JournalFull
            with self.env.begin() as txn:
                raw = txn.get(b"next_id", db=self._meta)
                self._next_id = _U64.unpack(raw)[0] if raw else 1
                raw = txn.get(b"bytes", db=self._meta)
                self._bytes = _U64.unpack(raw)[0] if raw else 0
                self._count = txn.stat(self._ev)["entries"]
                cur = txn.cursor(db=self._ev)
                self._oldest = _ID.unpack(cur.key())[0] if cur.first() else self._next_id
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
        for i, ev in enumerate(events):
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
    ) -> list[Record]:
        """One write transaction (see :meth:`append`); any exception leaves nothing written."""
        with self._write_lock:
            next_id = self._next_id
            records: list[Record] = []
            added = 0
            try:
                with self.env.begin(write=True) as txn:
                    ev_cur = txn.cursor(db=self._ev)
                    ix_cur = txn.cursor(db=self._ix)
                    ev_put = ev_cur.put
                    ix_put = ix_cur.put
                    id_pack = _ID.pack
                    kl_pack = _KL.pack
                    rec_append = records.append
                    R = Record
                    last_t: str | None = None
                    last_cf: str | None = None
                    head = tc = b""
                    for core, value, etype, cf, key, end_key in encoded:
                        wire = b'{"id":%d,%b' % (next_id, core[1:])
                        if etype is not last_t or cf is not last_cf:  # same objects in a run: no lookup
                            tc, tl, cl = _type_cf(etype, cf)
                            head = _IX_HEAD.pack(now_ms, tl, cl)
                            last_t, last_cf = etype, cf
                        if end_key is None:
                            if key is None:
                                ix = b"%b%b%b%b" % (head, _NO_KEYS, tc, value)
                            else:
                                ix = b"%b%b%b%b%b" % (head, kl_pack(len(key), -1), tc, key, value)
                        else:
                            ix = b"".join(
                                (head, kl_pack(-1 if key is None else len(key), len(end_key)), tc, key or b"", end_key, value)
                            )
                        k = id_pack(next_id)
                        ev_put(k, wire, append=True)
                        ix_put(k, ix, append=True)
                        added += len(wire) + len(ix)
                        rec_append(R(next_id, etype, cf, key, end_key, now_ms, wire, value))
                        next_id += 1
                    put = txn.put
                    if checkpoints:
                        for name, data in checkpoints.items():
                            put(b"cp:" + name.encode(), data, db=self._meta)
                    total = self._bytes + added
                    count = self._count + len(records)
                    pruned_n, pruned_b, oldest = self._prune(txn, count, total, now_ms)
                    total -= pruned_b
                    count -= pruned_n
                    put(b"next_id", _U64.pack(next_id), db=self._meta)
                    put(b"bytes", _U64.pack(total), db=self._meta)
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
            first = records[0].id if self._count == 0 and records else None
            self._committed(next_id, total, count, oldest if pruned_n else None, first)
            return records

    rejected = 0
    """Events skipped because they could not be encoded (since open)."""
    last_skipped: list[int] = []
    """Indices (in the events argument) skipped by the last append."""

    def _prune(self, txn: lmdb.Transaction, count: int, total: int, now_ms: int) -> tuple[int, int, int | None]:
        """Delete the oldest events over the retention limits (at most PRUNE_BATCH)."""
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
        ev_cur = txn.cursor(db=self._ev)
        ix_cur = txn.cursor(db=self._ix)
        n = 0
        nbytes = 0
        if not ev_cur.first():
            return 0, 0, None
        ix_cur.first()
        while n < PRUNE_BATCH:
            drop = (self.retention_count and count - n > self.retention_count) or (
                self.retention_bytes and total - nbytes > self.retention_bytes
            )
            ix = ix_cur.value()
            if not drop and cutoff is not None and ix:
                drop = _IX.unpack_from(ix)[0] < cutoff
            if not drop:
                break
            nbytes += len(ev_cur.value()) + len(ix)
            n += 1
            ev_cur.delete()
            ix_cur.delete()
            if not ev_cur.key():
                break
        key = ev_cur.key()
        return n, nbytes, _ID.unpack(key)[0] if key else None

    def prune(self) -> int:
        """Apply the retention limits now (age included); returns the number of events deleted."""
        with self._write_lock:
            self._last_age_check = 0.0
            try:
                with self.env.begin(write=True) as txn:
                    n, b, oldest = self._prune(txn, self._count, self._bytes, int(time.time() * 1000))
                    if n:
                        txn.put(b"bytes", _U64.pack(self._bytes - b), db=self._meta)
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
            return n

    def append_raw(self, items: Sequence[tuple[int, bytes, bytes]]) -> tuple[list[Record], int]:
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
            records: list[Record] = []
            try:
                with self.env.begin(write=True) as txn:
                    count, total = self._count, self._bytes
                    if hole and count:
                        for db in (self._ev, self._ix):
                            txn.drop(db, delete=False)
                        count, total = 0, 0
                    ev_put = txn.cursor(db=self._ev).put
                    ix_put = txn.cursor(db=self._ix).put
                    added = 0
                    for id_, wire, ix in fresh:
                        k = _ID.pack(id_)
                        ev_put(k, wire, append=True)
                        ix_put(k, ix, append=True)
                        added += len(wire) + len(ix)
                        records.append(_unpack_record(id_, bytes(wire), bytes(ix)))
                    next_id = fresh[-1][0] + 1
                    total += added
                    count += len(records)
                    pruned_n, pruned_b, oldest = self._prune(txn, count, total, int(time.time() * 1000))
                    total -= pruned_b
                    count -= pruned_n
                    txn.put(b"next_id", _U64.pack(next_id), db=self._meta)
                    txn.put(b"bytes", _U64.pack(total), db=self._meta)
            except lmdb.MapFullError as exc:
                self.full = True
                raise JournalFull(f"journal map full ({self.map_size} bytes at {self.path})") from exc
            except lmdb.Error as exc:
                raise JournalError(f"journal write failed: {exc}") from exc
            first = records[0].id if records and (hole or count == len(records)) else None
            self._committed(next_id, total, count, oldest if pruned_n else None, first)
            return records, hole

    # ------------------------------------------------------------------ reading

    def read_columns(self, since_id: int, limit: int = 1000, max_bytes: int = 1 << 20) -> tuple[int, list[bytes], list[bytes]] | None:
        """Up to ``limit`` stored records with ``id > since_id`` as columns ``(first id, ev values,
        ix values)`` (ids first, first+1, ...), stopping after a chunk of 256 that passes
        ``max_bytes``; ``(since_id + 1, [], [])`` when there is none; None when the ids there are
        not consecutive (use :meth:`read_raw`). The NATS publisher's source (no per-record work)."""
        with self.env.begin(buffers=False) as txn:
            ev_cur = txn.cursor(db=self._ev)
            ix_cur = txn.cursor(db=self._ix)
            start = _ID.pack(since_id + 1)
            if not ev_cur.set_range(start) or not ix_cur.set_range(start):
                return since_id + 1, [], []
            first = _ID.unpack(ev_cur.key())[0]
            evs_it = ev_cur.iternext(keys=False, values=True)
            ixs_it = ix_cur.iternext(keys=False, values=True)
            evs: list[bytes] = []
            ixs: list[bytes] = []
            size = 0
            while len(evs) < limit and size <= max_bytes:
                n = min(256, limit - len(evs))
                ev_chunk = list(islice(evs_it, n))
                if not ev_chunk:
                    break
                ix_chunk = list(islice(ixs_it, len(ev_chunk)))
                evs += ev_chunk
                ixs += ix_chunk
                size += sum(map(len, ev_chunk)) + sum(map(len, ix_chunk))
                if len(ev_chunk) < n:
                    break
        if not evs:
            return first, [], []
        last = evs[-1]
        if len(ixs) != len(evs) or int(last[6 : last.index(b",", 6)]) != first + len(evs) - 1:
            return None
        return first, evs, ixs

    def read_raw(self, since_id: int, limit: int = 1000, max_bytes: int = 1 << 20) -> list[tuple[int, bytes, bytes]]:
        """Up to ``limit`` stored ``(id, ev value, ix value)`` with ``id > since_id``, oldest
        first (about ``max_bytes`` at most): what :meth:`append_raw` takes."""
        cols = self.read_columns(since_id, limit, max_bytes)
        if cols is not None:
            first, evs, ixs = cols
            return list(zip(range(first, first + len(evs)), evs, ixs, strict=True))
        out: list[tuple[int, bytes, bytes]] = []
        with self.env.begin(buffers=False) as txn:
            size = 0
            for item in self._after(txn, since_id):
                size += len(item[1]) + len(item[2])
                if out and size > max_bytes:
                    break
                out.append(item)
                if len(out) >= limit:
                    break
        return out

    def _after(self, txn: Any, since_id: int) -> Iterable[tuple[int, bytes, bytes]]:
        """``(id, ev value, ix value)`` of the records after ``since_id``, in id order (the two
        trees walked together)."""
        ev_cur = txn.cursor(db=self._ev)
        ix_cur = txn.cursor(db=self._ix)
        start = _ID.pack(since_id + 1)
        if not ev_cur.set_range(start) or not ix_cur.set_range(start):
            return ()
        unpack = _ID.unpack
        return ((unpack(k)[0], wire, ix) for (k, wire), ix in zip(ev_cur, ix_cur.iternext(keys=False, values=True), strict=False))

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
            return self._read(since_id, limit)
        except (*_DAMAGE, ValueError, struct.error, IndexError) as exc:
            raise self._corrupt(exc) from None

    def _read(self, since_id: int, limit: int) -> list[Record]:
        out: list[Record] = []
        with self.env.begin(buffers=False) as txn:
            for id_, wire, ix in self._after(txn, since_id):
                out.append(_unpack_record(id_, wire, ix))
                if len(out) >= limit:
                    break
        return out

    def read_wire(self, since_id: int, limit: int = 10_000) -> tuple[list[bytes], int]:
        """Fast path: wire JSON (no values) of up to ``limit`` events with ``id > since_id``.

        Returns (frames, id of the last frame or ``since_id`` when none).

        Raises:
            JournalCorrupt: a damaged page or record was met (also sets :attr:`damaged`).
        """
        try:
            return self._read_wire(since_id, limit)
        except (*_DAMAGE, ValueError, IndexError) as exc:
            raise self._corrupt(exc) from None

    def _read_wire(self, since_id: int, limit: int) -> tuple[list[bytes], int]:
        with self.env.begin(buffers=False) as txn:
            cur = txn.cursor(db=self._ev)
            if not cur.set_range(_ID.pack(since_id + 1)):
                return [], since_id
            out: list[bytes] = []
            append = out.append
            for wire in cur.iternext(keys=False, values=True):
                append(wire)
                if len(out) >= limit:
                    break
            if not out:
                return out, since_id
            last = out[-1]
            return out, int(last[6 : last.index(b",", 6)])

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

_DAMAGE: tuple[type[BaseException], ...] = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError, lmdb.BadValsizeError)
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


def verify_env(env: lmdb.Environment, path: str, ev: Any, ix: Any, meta: Any) -> None:
    """Walk every branch and leaf page of the journal's trees read-only (keys only) and check
    the journal's own records: ``ev`` and ``ix`` hold the same ids, all below ``next_id``.
    About 0.1 s per million events.

    Raises:
        JournalCorrupt: a page or record is not what it should be.
    """
    try:
        with env.begin() as txn:
            counts = []
            for db in (ev, ix):
                cur = txn.cursor(db=db)
                n = 0
                for k in cur.iternext(keys=True, values=False):
                    if len(k) != 8:
                        raise JournalCorrupt(path, "an event key is not 8 bytes")
                    n += 1
                counts.append(n)
                if n != txn.stat(db)["entries"]:
                    raise JournalCorrupt(path, "a tree holds fewer entries than its header says")
            for _k in txn.cursor(db=meta).iternext(keys=True, values=False):
                pass
            if counts[0] != counts[1]:
                raise JournalCorrupt(path, f"{counts[0]} events but {counts[1]} index records")
            raw = txn.get(b"next_id", db=meta)
            if counts[0]:
                if raw is None or len(raw) != 8:
                    raise JournalCorrupt(path, "the next_id record is missing")
                cur = txn.cursor(db=ev)
                cur.last()
                if _ID.unpack(cur.key())[0] >= _U64.unpack(raw)[0]:
                    raise JournalCorrupt(path, "an event id is not below next_id")
    except JournalCorrupt:
        raise
    except _DAMAGE as exc:
        reason = "MDB_CORRUPTED: a page is not what the tree says" if isinstance(exc, lmdb.CorruptedError) else f"{type(exc).__name__}: {exc}"
        raise JournalCorrupt(path, reason) from None
