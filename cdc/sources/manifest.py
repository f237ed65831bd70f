"""One MANIFEST follower per store, shared by capture and the ops watchers.

:class:`ManifestFollower` follows the MANIFEST named by ``CURRENT`` incrementally: each
:meth:`~ManifestFollower.refresh` reads only the bytes appended since the last one, decodes the
new VersionEdits and applies them to one :class:`~cdc.format.manifest.ManifestState`. A new
MANIFEST (``CURRENT`` switched, or the file under the name is another inode, or it shrank,
or its first / last bytes read differ: a store created again at the same path) starts over from
its first byte. Consumers:

- capture reads the state (column family names, last sequence, log numbers, next file number,
  DB id) after :meth:`refresh`, gated by the cheap :meth:`signature` (stat of CURRENT and the
  MANIFEST);
- the compaction fallback subscribes a :class:`ManifestCursor` and gets every edit once, in
  order, with the SST sizes the edit deleted (as they were before it), and a ``fresh`` flag
  when a new MANIFEST started (its earlier edits are then not delivered one by one).

Invariant: read-only, regular files only (``open_readonly``); the state is exactly
``decode_manifest`` of the complete records read so far (an incomplete last record waits);
thread-safe (refreshes run in worker threads from both consumers; one lock). A corrupt record
raises :class:`~cdc.errors.FormatError` and the next refresh starts the file over.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from typing import NamedTuple, TypeVar

from cdc.errors import FormatError, StoreError
from cdc.format.blocks import LogReader
from cdc.format.manifest import (
    CorruptRecord,
    ManifestState,
    VersionEdit,
    decode_version_edit,
)
from cdc.sources.store import open_readonly, read_store_file

__all__ = ["ManifestFollower", "ManifestCursor", "ManifestEdit", "ManifestUpdate"]

T = TypeVar("T")
_MANIFEST_RE = re.compile(r"^MANIFEST-(\d+)$")
_MAX_READ = 4 << 20
_FINGERPRINT = 256


class ManifestEdit(NamedTuple):
    """One VersionEdit as read: its record offset, the edit, and the SSTs it deleted as
    ``(number, level, cf id, size before the edit)``."""

    offset: int
    edit: VersionEdit
    deleted: list[tuple[int, int, int, int]]


class ManifestUpdate(NamedTuple):
    """What a cursor got since its last poll."""

    name: str  # MANIFEST-NNNNNN
    fresh: bool  # a new MANIFEST started since the last poll (``edits`` start at its first byte)
    edits: list[ManifestEdit]
    offset: int  # end of the last complete record read (where the next edit starts)
    view: object  # what the poll's ``view`` function made of the state (under the lock)


class ManifestCursor:
    """A consumer's view of the edits (see :meth:`ManifestFollower.subscribe`)."""

    def __init__(self, follower: ManifestFollower) -> None:
        self._follower = follower
        self._pending: list[ManifestEdit] = []
        self._fresh = False
        self._seen_name = ""

    def poll(self, view: Callable[[ManifestState], object] = lambda state: None) -> ManifestUpdate | None:
        """Refresh the follower, then take the edits read since the last poll (None: nothing
        new) and ``view(state)``, computed under the lock (the state is shared: read it only
        there). Blocking I/O: run it in a worker thread. Raises like :meth:`ManifestFollower.refresh`
        on a corrupt record; an unreadable CURRENT / MANIFEST is None."""
        f = self._follower
        with f._lock:
            state = f._refresh_locked()
            if state is None or f.name is None:
                return None
            if not self._pending and not self._fresh and self._seen_name == f.name:
                return None
            edits, self._pending = self._pending, []
            fresh, self._fresh = self._fresh or self._seen_name != f.name, False
            self._seen_name = f.name
            assert f._reader is not None
            return ManifestUpdate(f.name, fresh, edits, f._reader.offset, view(state))


class ManifestFollower:
    """Follow one store's MANIFEST (see module docstring). ``db_dir`` may be bound late
    (:meth:`bind`): the daemon builds one follower before it knows the store's kind."""

    def __init__(self, db_dir: str | None = None, *, leveldb: bool = False) -> None:
        self.db_dir = db_dir
        self.leveldb = leveldb
        self.name: str | None = None  # MANIFEST-NNNNNN followed
        self.state = ManifestState()
        self.reads = 0  # bytes read (tests / metrics: the I/O the consumers share)
        self._ino = -1
        self._pos = 0
        self._head = self._tail = b""  # first / last bytes read (see _same_prefix)
        self._reader: LogReader | None = None
        self._cursors: list[ManifestCursor] = []
        self._lock = threading.Lock()

    def bind(self, db_dir: str, *, leveldb: bool) -> None:
        """Set the store (idempotent for the same one; another one starts over)."""
        with self._lock:
            same = self.db_dir is not None and os.path.realpath(db_dir) == os.path.realpath(self.db_dir)
            if not same or leveldb != self.leveldb:
                self.db_dir, self.leveldb = db_dir, leveldb
                self._restart("", -1)

    def subscribe(self) -> ManifestCursor:
        """A cursor that gets every edit of the followed MANIFEST from its first byte (its first
        poll says ``fresh``). When the follower already read some of it (another consumer
        refreshed first), it reads the file again from 0 on the next refresh, so that the new
        cursor sees every edit (earlier cursors then see ``fresh`` too)."""
        cur = ManifestCursor(self)
        with self._lock:
            if self._pos > 0:
                self._restart("", -1)
            self._cursors.append(cur)
        return cur

    def signature(self) -> tuple[int, ...] | None:
        """Cheap change detector: (CURRENT inode, mtime; MANIFEST inode, size, mtime); None when
        unreadable. A different signature means :meth:`refresh` has something to read."""
        if self.db_dir is None:
            return None
        try:
            cur = os.path.join(self.db_dir, "CURRENT")
            st = os.stat(cur)
            name = read_store_file(cur, 256).strip().decode("utf-8", "replace")
            mt = os.stat(os.path.join(self.db_dir, name))
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, mt.st_ino, mt.st_size, mt.st_mtime_ns)

    def refresh(self) -> ManifestState:
        """Read what was appended (or the new MANIFEST) and return the state. Blocking I/O.

        Raises:
            StoreError: no readable CURRENT / MANIFEST (the state keeps the last good read).
            FormatError: a corrupt record (the next refresh reads the file again from 0).
        """
        with self._lock:
            state = self._refresh_locked(strict=True)
            assert state is not None
            return state

    def read(self, fn: Callable[[ManifestState], T]) -> T:
        """:meth:`refresh`, then ``fn(state)`` under the lock (a consistent snapshot: another
        consumer's refresh cannot change the state while ``fn`` reads it)."""
        with self._lock:
            state = self._refresh_locked(strict=True)
            assert state is not None
            return fn(state)

    # ------------------------------------------------------------------ internals (lock held)

    def _restart(self, name: str, ino: int) -> None:
        self.name = name or None
        self._ino = ino
        self._pos = 0
        self.state = ManifestState()
        m = _MANIFEST_RE.match(name)
        self._reader = LogReader(int(m.group(1)) if m else -1, leveldb=self.leveldb)
        for c in self._cursors:
            c._pending.clear()
            c._fresh = True

    def _refresh_locked(self, strict: bool = False) -> ManifestState | None:
        """strict: raise StoreError when CURRENT / the MANIFEST cannot be read (else None)."""
        db = self.db_dir
        if db is None:
            if strict:
                raise StoreError("the MANIFEST follower is not bound to a store")
            return None
        for _attempt in range(20):
            try:
                current = read_store_file(os.path.join(db, "CURRENT"), 256)
            except OSError as exc:
                if strict:
                    raise StoreError(f"{db}/CURRENT: cannot read: {exc.strerror or exc}") from None
                return None
            name = current.strip().decode("ascii", "replace")
            if not current.endswith(b"\n") or _MANIFEST_RE.match(name) is None:
                if strict:
                    raise StoreError(f"{db}/CURRENT does not name a MANIFEST ({current[:64]!r})")
                return None
            try:
                fd = open_readonly(os.path.join(db, name))
            except FileNotFoundError:
                continue  # CURRENT was switched between our two reads: read it again
            except OSError as exc:
                if strict:
                    raise StoreError(f"{db}/{name}: cannot read: {exc.strerror or exc}") from None
                return None
            try:
                st = os.fstat(fd)
                if name != self.name or st.st_ino != self._ino or st.st_size < self._pos or not self._same_prefix(fd):
                    self._restart(name, st.st_ino)
                self._read(fd, st.st_size)
            except FormatError:
                self._restart("", -1)  # start the file over next time
                raise
            finally:
                os.close(fd)
            return self.state
        if strict:
            raise StoreError(f"{db}: MANIFEST named by CURRENT keeps disappearing")
        return None

    def _same_prefix(self, fd: int) -> bool:
        """Do the bytes already read still start and end as they did? (A store deleted and
        created again can get a MANIFEST of the same name on a reused inode.)"""
        if self._pos == 0:
            return True
        n = min(_FINGERPRINT, self._pos)
        try:
            return os.pread(fd, n, 0) == self._head and os.pread(fd, n, self._pos - n) == self._tail
        except OSError:
            return False

    def _read(self, fd: int, size: int) -> None:
        reader, state = self._reader, self.state
        assert reader is not None
        while self._pos < size:
            chunk = os.pread(fd, min(_MAX_READ, size - self._pos), self._pos)
            if not chunk:
                break
            self._pos += len(chunk)
            self.reads += len(chunk)
            reader.feed(chunk)
            for rec in reader.read():
                try:
                    edit = decode_version_edit(rec.payload)
                except FormatError as exc:
                    raise CorruptRecord(exc.reason, log_number=reader.log_number, offset=rec.offset) from None
                if self._cursors:
                    files = state.files
                    deleted = []
                    for level, number in edit.deleted_files:
                        meta = files.get(number)
                        deleted.append((number, level, edit.cf_id, meta.size if meta is not None else 0))
                    item = ManifestEdit(rec.offset, edit, deleted)
                    for c in self._cursors:
                        c._pending.append(item)
                state.apply(edit)
            if reader.state == "corrupt":
                assert reader.error is not None
                raise reader.error
        if self._pos:
            n = min(_FINGERPRINT, self._pos)
            self._head = os.pread(fd, n, 0)
            self._tail = os.pread(fd, n, self._pos - n)
