"""When the current WAL is complete, and what to do at a bad record (the seal / corruption state machine).

``SealMixin`` (part of :class:`cdc.capture.component.WalCapture`) owns ``_corrupt_key`` /
``_corrupt_since`` (the bad record being retried) and decides, at the end of the bytes
written so far: seal current and move on (reference §6.3: a higher WAL holds a complete data
record; current was deleted / archived / recycled and read to its end; or the MANIFEST says it
is obsolete), wait, re-read (a torn write at the live tail), or skip to the next 32 KiB block
(persistent corruption: counted, readiness ``capture_decode``).

Invariant: merely "a higher WAL exists" never seals (RocksDB creates WAL N+1 before the last
write to N is flushed); nothing appended after the last read is left behind when sealing; a
torn last record followed by a WAL that continues at the next sequence number is the normal
end of a WAL (no error); data skipped for corruption always shows up (decode error, and the
sequence gap it leaves). Before moving on, a WAL dir rescan makes sure no WAL is jumped over.
"""

from __future__ import annotations

import logging
import time

from cdc.capture.checkpoint import CHECKPOINT_NAME
from cdc.capture.walset import Tail, skip_orphan_fragments
from cdc.errors import FormatError
from cdc.format.blocks import BLOCK_SIZE
from cdc.format.wal import WalReader

log = logging.getLogger("cdc.capture")


class SealMixin:
    """Sealing and bad records (see module docstring)."""

    async def _try_seal(self, cur: Tail, reader: WalReader) -> bool:
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
        return await self._try_seal_end(cur, reader)

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

    def _torn_tail_continues(self, cur: Tail) -> bool:
        """Current ended with a torn record and the next WAL starts at the next sequence number.

        That is what a writer crash mid-write followed by a reopen looks like (RocksDB's recovery
        stops at the torn record and the new WAL continues after the last good one): the normal
        end of that WAL, not damage. A jump (or no next WAL yet) is not.
        """
        nxt = self._next_tail(cur.number)
        if nxt is None or self.last_seq < 0:
            return False
        return self._first_seq(nxt) == self.last_seq + 1

    async def _at_bad_record(self, cur: Tail, reader: WalReader) -> bool:
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
        resume = skip_orphan_fragments(cur.fd, block_end)
        self._decode_error(err, f"corrupt WAL {cur.number:06d} @{off}: {err.reason}; skipped to offset {resume}")
        self._rewind(cur, resume, reader.compression)
        return True

    async def _try_seal_end(self, cur: Tail, reader: WalReader) -> bool:
        """Current is complete: close it and move on to the next WAL. True if moved."""
        self.tails.pop(cur.number, None)
        self._close_tail(cur)
        self.cur = None
        self.reader = None
        self.floor = cur.number + 1
        return await self._move_on()

    def _rewind(self, cur: Tail, offset: int, compression: int) -> None:
        old = self.reader
        ts_sizes = old.ts_sizes if old is not None else None  # sizes announced earlier in this WAL stay in force
        self.reader = WalReader(cur.number, offset=offset, leveldb=self._leveldb, compression=compression, ts_sizes=ts_sizes)
        self.pos = offset

    def _decode_error(self, err: FormatError, reason: str) -> None:
        self.decode_errors += 1
        log.warning("%s", reason)
        self._set_cond("readiness", "capture_decode", False, reason)
        self._corrupt_until = time.monotonic() + self.corrupt_hold_s
        self._count("decode_errors", 1)
