"""Capture: follow the store's WAL files and turn every record into ``key_change`` events.

This module holds the component (:class:`WalCapture`: the loop, the pump, delivery, the MANIFEST
view); its concerns live in sibling modules, each stating its invariant: ``checkpoint`` (codecs),
``build`` (batches -> events, the hot loop), ``twophase`` (prepared sections), ``walset`` (open
WALs, scans), ``watching`` (notifications, inotify), ``sealing`` (seal / corruption state
machine), ``identity`` (store identity, ``store_reset``), ``health`` (conditions, timers).

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
(``sealing._move_on``): a WAL created and archived while capture was paused must not be jumped over
just because a later one was already opened by the inotify thread.

WAL archiving off (newest ``OPTIONS-*``: ``WAL_ttl_seconds`` = ``WAL_size_limit_MB`` = 0): one
warning, gauge ``cdc_wal_archiving_enabled`` 0 and readiness warning ``wal_archiving`` (the
probe stays healthy); checked at start and when CURRENT changes.

Limits
------
On Linux an inotify thread (``cdc.sources.inotify.WalGrabber``) opens every new WAL the moment it is created, so a
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
import collections
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from cdc.capture.build import MAX_ORIGIN_BYTES, Decoded, build_events, cf_json_map
from cdc.capture.checkpoint import (
    CHECKPOINT_NAME,
    IDENTITY_CHECKPOINT,
    PREPARED_CHECKPOINT_NAME,
    WalCheckpoint,
    decode_checkpoint,
    decode_prepared,
    encode_checkpoint,
)
from cdc.capture.health import HealthMixin, short_error
from cdc.capture.identity import StoreHistoryMixin
from cdc.capture.sealing import SealMixin
from cdc.capture.twophase import PreparedSections
from cdc.capture.walset import Tail, WalSetMixin
from cdc.capture.watching import WatchMixin
from cdc.errors import CdcError
from cdc.format.manifest import ManifestState
from cdc.model.context import Context, MetricsSink
from cdc.format.wal import Batch, SeqNumbering, WalReader
from cdc.sources.inotify import WalGrabber
from cdc.sources.manifest import ManifestFollower

__all__ = ["WalCapture"]

log = logging.getLogger("cdc.capture")



EXPORT_EVERY_S = 0.02
"""While capture steps back to back (thousands of small writes per second), its lag, gauges and
readiness are exported at most this often (an fstat per WAL and a dozen metric updates per step
otherwise); an idle capture exports its last state within this delay."""

def _queued_size(dec: Decoded) -> int:
    """The bus's byte count of a read's events (``EventBus.emit(size=)``) from capture's own
    per-cf counters (key + value bytes) instead of a pass over every event: twice the raw
    bytes (JSON escaping, base64) plus 256 per event (ids, names, punctuation)."""
    raw = 0
    if dec.counts:
        for c in dec.counts.values():
            raw += c[1] + c[3] + c[5] + c[7]
    return 2 * raw + 256 * len(dec.events)

class WalCapture(WatchMixin, WalSetMixin, SealMixin, StoreHistoryMixin, HealthMixin):
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
        manifest: the MANIFEST follower shared with the ops watchers (default: its own).
        now_ms: the clock stamped on events (ms since the epoch; default: wall clock).
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
        manifest: ManifestFollower | None = None,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        self.chunk_bytes = chunk_bytes
        self._export_at = 0.0  # next time the step exports lag/gauges/readiness (throttled while busy)
        self._export_dirty = False
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
        self._manifest = manifest if manifest is not None else ManifestFollower()
        # state (valid while running)
        self.tails: dict[int, Tail] = {}
        self.cur: Tail | None = None
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
        self._ctx: Context | None = None  # set by run(); the pure parts (tests) run without one
        self._metrics: MetricsSink | None = None
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
        self._grabber: WalGrabber | None = None
        self._prepared = PreparedSections()  # 2PC: xid -> (scheme, prepared ops); checkpoint wal_2pc
        self._unmatched_reported = 0  # PreparedSections.unmatched_commits already counted in metrics
        self._grabbed: collections.deque[tuple[int, str, int]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._now_ms: Callable[[], int] = now_ms if now_ms is not None else _wall_ms
        self._modify_pending = False
        self._cf_json_cache: tuple[dict[int, str], dict[int, tuple[str, bytes]]] | None = None
        self._seq_pos: tuple[int, int] = (-1, 0)  # (WAL, offset) just after the last delivered record
        self._seq_ino = 0  # inode of WAL last_seq_wal (0: unknown)
        self._replaced_hint = ""  # a WAL name now holds another file: the store was replaced
        self._ident_dirty = False  # CURRENT changed (a store was opened): check the identity
        self._shorter_hint = ""  # the checkpointed WAL was shorter than the checkpoint at start

    # ------------------------------------------------------------------ public surface (tests, stats)

    @property
    def retrying_bad_record(self) -> bool:
        """A bad record at the live tail is being retried (torn write or corruption, undecided)."""
        return self._corrupt_key is not None

    def close(self) -> None:
        """Release every WAL fd (idempotent; ``run`` does it when it ends)."""
        self._close_all()

    # ------------------------------------------------------------------ component

    async def run(self, ctx: Context) -> None:
        """Capture until ``ctx.stop`` is set. Never raises on the store's content."""
        assert ctx.store is not None, "capture needs a store"
        self._ctx = ctx
        self._metrics = ctx.metrics
        self._leveldb = ctx.store.kind == "leveldb"
        self._wal_dir = ctx.store.wal_dir
        self._db_dir = ctx.store.db_dir
        self._manifest.bind(self._db_dir, leveldb=self._leveldb)
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
            self._prepared = PreparedSections(prepared)
            self._unmatched_reported = 0
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

    async def _wait(self) -> None:
        now = time.monotonic()
        if self._hot_until > now and self.hot_poll_s > 0 and not self._write_wakes:
            timeout = self.hot_poll_s
        else:
            timeout = max(0.0, self._next_rescan - now)
            timeout = min(timeout, self._timer_deadline(now))
        if self._export_dirty:  # the last step's state is exported by a step at _export_at at the latest
            timeout = min(timeout, max(0.0, self._export_at - now))
        if not self._wake.is_set() and timeout > 0:
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass
        self._wake.clear()

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
        now = time.monotonic()
        self._timers(now)
        if now >= self._export_at:  # lag, gauges, readiness: at most every EXPORT_EVERY_S while busy
            self._export()
            self._export_at = now + EXPORT_EVERY_S
            self._export_dirty = False
        else:
            self._export_dirty = True

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
                self._set_cond("readiness", "capture_store", False, f"reading WAL {cur.number:06d} failed: {short_error(exc)}")
                return
            if data:
                self._beat()  # a long catch-up is progress too
                self.pos += len(data)
                self.bytes_read += len(data)
                self._count("wal_bytes_read", len(data))
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

    def _decode(self, reader: WalReader, data: bytes) -> Decoded:
        """Feed + decode + build events (pure CPU; may run in a worker thread)."""
        reader.feed(data)
        batches = reader.read()
        return self.build(batches)

    def build(self, batches: list[Batch]) -> Decoded:
        """Batches -> events with capture's current state (see :func:`cdc.capture.build.build_events`).

        Pure CPU; public for tests and the micro-benchmark. Advances ``numbering``, the 2PC
        sections and ``seq_guesses``; the position (``last_seq`` ...) moves only at delivery.
        """
        names = self.cf_names
        cached = self._cf_json_cache
        if cached is None or cached[0] is not names:
            cached = self._cf_json_cache = (names, cf_json_map(names))
        dec = build_events(
            batches,
            names=names,
            cf_json=cached[1],
            ts=self._now_ms(),
            last_seq=self.last_seq,
            last_wal=self.last_seq_wal,
            done=self._done,
            numbering=self.numbering,
            txns=self._prepared,
        )
        if dec.guesses:
            self.seq_guesses += dec.guesses
        return dec

    async def _deliver(self, dec: Decoded, cur: Tail, reader: WalReader) -> None:
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
            self._count("origin_markers_ignored", dec.bad_origins)
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
        unmatched = self._prepared.unmatched_commits
        if unmatched != self._unmatched_reported:
            self._count("capture_unmatched_commits", unmatched - self._unmatched_reported)
            self._unmatched_reported = unmatched
        if self.seq_guesses != self._guesses_reported:
            n = self.seq_guesses - self._guesses_reported
            self._guesses_reported = self.seq_guesses
            log.warning(
                "WAL %06d: %d record(s) numbered without evidence of the store's sequence numbering "
                "(per key assumed; their seq may be off if this is a WritePrepared TransactionDB)",
                cur.number,
                n,
            )
            self._count("capture_seq_guesses", n)
        for a, b in dec.gaps:
            self._gap(a, b, f"gap in sequence numbers {a}..{b}")
        if dec.batches or dec.events:
            n_kc = len(dec.events) - len(dec.gaps)
            self.events_captured += n_kc
            self.batches_captured += dec.batches
            cps = {CHECKPOINT_NAME: self._checkpoint(cur, reader)}
            if seq_wal_moved:
                cps[IDENTITY_CHECKPOINT] = self._identity_cp()
            prepared = self._prepared.take_checkpoint()
            if prepared is not None:
                cps[PREPARED_CHECKPOINT_NAME] = prepared
            await self._emit(dec.events, checkpoints=cps, size=_queued_size(dec))
            self._export_counters(n_kc)
        if dec.rewind is not None:
            await self._rewound(cur, reader, *dec.rewind)

    async def _emit(self, events: list[Any], checkpoints: dict[str, bytes], size: int | None = None) -> None:
        """bus.emit; while it waits on backpressure (journal slow or full) keep beating: capture
        is not stuck, the journal is (readiness reports that)."""
        assert self._ctx is not None
        bus = self._ctx.bus
        if bus.pending < bus.max_pending:
            await bus.emit(events, checkpoints=checkpoints, size=size)
            return
        task = asyncio.ensure_future(bus.emit(events, checkpoints=checkpoints, size=size))
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

    def _checkpoint(self, cur: Tail, reader: WalReader) -> bytes:
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

    def _manifest_changed(self) -> bool:
        return self._manifest.signature() != self._manifest_sig

    async def _reload_manifest(self, force: bool = False) -> None:
        """Catch up with the MANIFEST (through the follower shared with the ops watchers)."""
        sig = self._manifest.signature()
        if not force and sig == self._manifest_sig:
            self._manifest_dirty = False
            return
        try:
            view = await asyncio.to_thread(self._manifest.read, _manifest_view)
        except (OSError, CdcError) as exc:
            log.warning("cannot read the MANIFEST of %s: %s", self._db_dir, short_error(exc))
            return
        except Exception as exc:  # noqa: BLE001 - never die on a file's content
            log.warning("cannot decode the MANIFEST of %s: %s", self._db_dir, short_error(exc))
            return
        self._manifest_sig = sig
        self._manifest_dirty = False
        self.cf_names, self.manifest_last_seq, self.manifest_keep, self.manifest_next_file, self.manifest_db_id = view
        if self.last_seq >= 0 and self.manifest_last_seq > self.last_seq:
            self.lag_seq = self.manifest_last_seq - self.last_seq
        else:
            self.lag_seq = 0


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _manifest_view(state: ManifestState) -> tuple[dict[int, str], int, int, int, str | None]:
    """What capture needs from the MANIFEST: (cf names, dropped ones included; last sequence
    (-1: none); the lowest WAL still needed (obsolete below); next file number; DB id)."""
    names = dict(state.cf_names or {0: "default"})
    for cf_id, name in state.dropped_cfs.items():
        names.setdefault(cf_id, name)
    names.setdefault(0, "default")
    keep = state.min_log_number_to_keep or 0
    live = [v for k, v in state.log_number.items() if k in state.cf_names]
    if live:
        keep = max(keep, min(live))
    return names, state.last_sequence or -1, keep, state.next_file_number or 0, state.db_id or None
