"""The set of WALs capture holds open: directory scans, picking the next WAL, probing WALs.

``WalSetMixin`` (part of :class:`cdc.capture.component.WalCapture`) owns ``tails`` (WAL number
-> :class:`Tail`, an open fd per WAL >= ``floor``), ``cur`` / ``reader`` / ``pos`` (the WAL
being read) and ``_startup_target``; ``_scan`` lists the WAL dir and ``archive/``
(``cdc.sources.store.list_wal_files``), opens new WALs, and notices deleted / archived /
recycled / replaced ones.

Invariant: WALs are read strictly in number order, one at a time; every WAL >= current is
opened as soon as it is seen and its fd kept until it is done, so a WAL the store deletes or
archives after a flush stays readable through the fd. A WAL name that now holds another inode
is never read as the old WAL (``gone``; for a number capture still needs, the store was
replaced: ``_replaced_hint``). Read-only on the store.
"""

from __future__ import annotations

import logging
import os

from cdc.capture.health import short_error
from cdc.errors import CdcError
from cdc.format.blocks import skip_orphan_fragments as _skip_orphans
from cdc.format.wal import WalReader
from cdc.sources.store import list_wal_files, open_readonly

__all__ = ["Tail", "WalSetMixin", "skip_orphan_fragments"]

log = logging.getLogger("cdc.capture")

class Tail:
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


def skip_orphan_fragments(fd: int, offset: int) -> int:
    """After a resync at a block start, step over MIDDLE/LAST fragments of the lost record
    (the framing rules are :func:`cdc.format.blocks.skip_orphan_fragments`'s; this reads the
    open WAL for it). Returns the offset to read on from."""

    def read_at(off: int, n: int) -> bytes:
        try:
            return os.pread(fd, n, off)
        except OSError:
            return b""

    return _skip_orphans(read_at, offset)


class WalSetMixin:
    """Open WALs, scans, the current WAL (see module docstring)."""

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
                "readiness", "capture_store", False, f"WAL directory {self._wal_dir} is not readable: {short_error(exc)}"
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

    def _open_wal(self, number: int, path: str, inodes: dict[int, Tail] | None = None) -> bool:
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
        tail = Tail(number, path, fd, ino)
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
        self, tail: Tail, offset: int, compression: int, ts_sizes: dict[int, int] | None = None
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

    def _close_tail(self, tail: Tail) -> None:
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

    def _next_tail(self, number: int) -> Tail | None:
        if self._grabbed:
            self._take_grabbed()
        higher = [n for n in self.tails if n > number]
        return self.tails[min(higher)] if higher else None

    def _first_seq(self, tail: Tail) -> int | None:
        """Header sequence number of the first record of a (higher) WAL, or None."""
        probe = WalReader(tail.number, leveldb=self._leveldb)
        try:
            probe.feed(os.pread(tail.fd, min(tail.size(), 1 << 20), 0))
        except OSError:
            return None
        batches = probe.read()
        return batches[0].seq if batches else None

    def _has_complete_record(self, tail: Tail) -> bool:
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
