"""Store identity and the store going back in time (``store_reset``), WAL archiving, lost WALs.

``StoreHistoryMixin`` (part of :class:`cdc.capture.component.WalCapture`) owns ``db_id``,
``wal_archiving``, ``store_resets``, ``_replaced_hint``, ``_ident_dirty``, ``_shorter_hint``,
``_resume_missing`` and the checkpoint ``"wal.store"`` (:class:`cdc.capture.checkpoint.StoreIdentity`).

- ``replaced``: another DB id at start or on a rescan / CURRENT change, a WAL number that now
  names another file, or a MANIFEST whose next file number is below the WAL capture reached:
  capture drains what the old current WAL still holds, then starts over at the new store's
  oldest WAL with no sequence baseline.
- ``recovered_earlier`` (same store): a newer WAL starts at or below the last delivered
  sequence number: capture goes on from that record.
- The checkpointed WAL is gone and nothing newer holds data: the MANIFEST's last sequence
  number reveals the gap at once.

Invariant: never silent. Every reset commits one ``store_reset`` event (old and new position,
old and new DB id) together with the new position, counts ``cdc_store_resets_total`` and keeps
readiness ``capture_reset`` unhealthy for ``gap_hold_s``; WALs lost while cdc was away are a
``capture_gap``. Journal ids simply continue.
"""

from __future__ import annotations

import logging
import os
import time

from cdc.capture.checkpoint import (
    CHECKPOINT_NAME,
    IDENTITY_CHECKPOINT,
    PREPARED_CHECKPOINT_NAME,
    StoreIdentity,
    WalCheckpoint,
    decode_identity,
    encode_checkpoint,
    encode_identity,
)
from cdc.capture.walset import Tail
from cdc.format.wal import SeqNumbering, WalReader
from cdc.model.context import Context
from cdc.model.events import CaptureGap, StoreReset
from cdc.sources.store import read_identity, read_wal_archiving

log = logging.getLogger("cdc.capture")


class StoreHistoryMixin:
    """Identity, resets, archiving, lost WALs (see module docstring)."""

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

    def _read_db_id(self) -> str | None:
        """The store's DB id now: ``IDENTITY``, else the MANIFEST's db id (None for LevelDB)."""
        if self._leveldb:
            return None
        return read_identity(self._db_dir) or self.manifest_db_id

    async def _start_identity(self, ctx: Context, cp: WalCheckpoint | None) -> None:
        """Compare the store with the identity the checkpoint belongs to; remember it."""
        ident = decode_identity(ctx.journal.get_checkpoint(IDENTITY_CHECKPOINT))
        saved = ident.db_id if ident is not None else None
        if cp is not None and ident is not None and ident.seq_wal is not None:
            self.last_seq_wal = ident.seq_wal
            self._seq_ino = ident.ino
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
        return encode_identity(StoreIdentity(self.db_id, self.last_seq_wal, self._seq_ino))

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
            self._metrics.set("wal_archiving_enabled", 1 if on else 0)
        h = self._ctx.health if self._ctx is not None else None
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
        if h is not None:
            h.warn("readiness", "wal_archiving", text)

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
        self._count("store_resets", 1)
        ev = StoreReset(
            timestamp=self._now_ms(), reason=reason, old_wal=old_wal, old_offset=old_off, old_seq=old_seq,
            new_wal=new_wal, new_offset=new_off, new_seq=new_seq, old_db_id=old_id, new_db_id=self.db_id, message=text,
        )
        cps = {CHECKPOINT_NAME: cp}
        if self.db_id:
            cps[IDENTITY_CHECKPOINT] = self._identity_cp()
        prepared = self._prepared.take_checkpoint()
        if prepared is not None:
            cps[PREPARED_CHECKPOINT_NAME] = prepared
        await self._emit([ev], checkpoints=cps)

    async def _rewound(self, cur: Tail, reader: WalReader, wal: int, offset: int, seq: int) -> None:
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
