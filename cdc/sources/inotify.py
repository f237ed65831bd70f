"""Linux inotify: open each new WAL the moment the store creates it (a thread, no GIL while waiting).

:class:`WalGrabber` blocks in poll(2)/read(2) on an inotify fd watching one directory; for every
``NNNNNN.log`` created or moved in it opens the file read-only at once and hands ``(number,
path, fd)`` to ``on_open`` (called in the thread: it must only queue and wake the event loop);
with ``on_modify`` it also reports writes to ``*.log`` (at most once per read of the inotify fd).

Invariant: purely an accelerator, read-only on the store. Without inotify (another OS, limits)
construction raises OSError and the caller works from watchfiles hints and rescans alone. An fd
handed to ``on_open`` belongs to the receiver (it must close it).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from cdc.sources.store import open_readonly

__all__ = ["WalGrabber"]

_IN_CREATE = 0x100
_IN_MOVED_TO = 0x80
_IN_MODIFY = 0x2
_IN_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)


class WalGrabber:
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
