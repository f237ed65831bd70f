"""The journal's lock: one cdc process (one :class:`~cdc.journal.lmdb_journal.Journal`) per journal.

Two daemons on one journal would both assign event ids. ``<journal dir>/journal.lock`` carries an
exclusive ``flock`` held by the Journal for as long as it is open (tied to the open file
description: a second Journal in the same process conflicts too; exiting or ``kill -9``
releases it) and the holder's pid, so that a refused start names it. The one lock of a journal:
``cdc serve``'s preflight, ``cdc edge``'s mirror and the Journal all take this one.
"""

from __future__ import annotations

import errno
import fcntl
import os

from cdc.errors import JournalError, JournalLocked

__all__ = ["LOCK_FILE", "lock_journal", "unlock_journal"]

LOCK_FILE = "journal.lock"


def lock_journal(path: str) -> int:
    """Take the exclusive lock of the journal directory ``path`` (it must exist); return its fd.

    Raises:
        JournalLocked: another holder has it (the message names its pid when known): exit 3.
        JournalError: the lock file cannot be created or locked.
    """
    lock_path = os.path.join(path, LOCK_FILE)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise JournalError(f"cannot open journal lock {lock_path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = b""
        try:
            holder = os.pread(fd, 32, 0)
        except OSError:
            pass
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            text = holder.decode("ascii", "replace").strip()
            raise JournalLocked(path, int(text) if text.isdigit() else None) from None
        raise JournalError(f"cannot lock journal {path}: {exc.strerror or exc}") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:  # pragma: no cover - the lock holds without the pid
        pass
    return fd


def unlock_journal(fd: int) -> None:
    """Release a lock taken by :func:`lock_journal` (closing the fd releases the flock)."""
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:  # pragma: no cover
            pass
