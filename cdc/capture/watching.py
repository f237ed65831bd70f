"""Watching the store's directories: what wakes capture's loop, and the inotify grabber wiring.

``WatchMixin`` (part of :class:`cdc.capture.component.WalCapture`): ``watchfiles.awatch`` on the
WAL dir (and ``archive/``, and the DB dir for CURRENT/MANIFEST) only *wakes* the loop and marks
what to look at (``_dir_dirty``, ``_manifest_dirty``, ``_ident_dirty``); the inotify thread
(:class:`cdc.sources.inotify.WalGrabber`) opens each new WAL the moment it is created and wakes
the loop on WAL writes (one wake-up in flight). State it owns: ``_grabber``, ``_grabbed`` (fds
handed over by the thread), ``_loop``, ``_modify_pending``, ``_watch_restart``, ``_dir_ino``.

Invariant: hints only. A lost notification costs latency, never data: the periodic rescan
finds everything again. The thread only queues fds and wakes the loop; the loop adopts them
(``_take_grabbed``) and closes those it does not need.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from cdc.capture.walset import Tail
from cdc.sources.inotify import WalGrabber

log = logging.getLogger("cdc.capture")


WATCH_GROUPING_MS = (100, 20)
"""(debounce, step) of the watchfiles loop while the inotify thread wakes capture on writes: a
change is reported at most 100 ms after it (20 ms after the last of a burst)."""


class WatchMixin:
    """Notifications -> wake-ups (see module docstring)."""

    async def _wake_on_stop(self) -> None:
        await self._ctx.stop.wait()
        self._wake.set()
        if self._watch_restart is not None:
            self._watch_restart.set()

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
            # With the inotify thread waking capture on WAL writes and opening new WALs, these
            # notifications are only hints for the rest (CURRENT/MANIFEST, dir changes): group
            # them over longer windows, or a busy WAL costs a thread hop per write (step) or
            # every 5 ms (debounce) for nothing.
            debounce, step = WATCH_GROUPING_MS if self._write_wakes else (5, 1)
            try:
                async for changes in watchfiles.awatch(
                    *paths,
                    watch_filter=self._watch_filter,
                    debounce=debounce,
                    step=step,
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
            self._grabber = WalGrabber(self._wal_dir, self._on_grab, self._on_modify if self.wake_on_write else None)
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
                self.tails[number] = Tail(number, path, fd, ino)
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
