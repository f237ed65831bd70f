"""Store discovery (I/O): which store a directory holds, its WAL files and its MANIFEST.

Rules:

* Every user-facing problem (missing directory, not a store, unreadable file) is a
  :class:`StoreError` with a one-line message; content problems are :class:`FormatError`.
* WAL files are ``NNNNNN.log`` in the WAL directory and in ``<wal_dir>/archive/``; they are
  ordered by number (numbers come from one counter shared with other files, so gaps are normal).
* The MANIFEST is found through CURRENT; a concurrent MANIFEST switch (CURRENT names a file that
  was just replaced) is retried a few times.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from typing import NamedTuple

from cdc.errors import FormatError, StoreError
from cdc.format.manifest import ManifestState, decode_manifest

_WAL_NAME = re.compile(r"^(\d+)\.log$")
_MANIFEST_NAME = re.compile(r"^MANIFEST-(\d+)$")
_LEVELDB_MANIFEST_TAGS = frozenset(range(1, 10))


class StoreInfo(NamedTuple):
    """What :func:`detect_store` found.

    Attributes:
        kind: ``"rocksdb"`` or ``"leveldb"``.
        db_dir: the DB directory (absolute).
        wal_dir: the WAL directory (absolute; the DB directory unless given).
    """

    kind: str
    db_dir: str
    wal_dir: str


def open_readonly(path: str) -> int:
    """Open one of the store's files for reading without ever blocking or following into a device.

    A FIFO, socket or device that happens to carry a store file name (``000123.log``, ``LOG``,
    ``CURRENT``) would block ``open``/``read`` forever and stall capture; it is refused with
    ``OSError(EINVAL)`` instead, like any other unreadable file. Regular files behave as usual
    (``O_NONBLOCK`` has no effect on them).

    Returns:
        A file descriptor the caller owns (close it).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_store_file(path: str, limit: int = -1) -> bytes:
    """Read a regular store file (or its first ``limit`` bytes) through :func:`open_readonly`."""
    with os.fdopen(open_readonly(path), "rb") as f:
        return f.read(limit)


def _read_current(db_dir: str) -> str:
    path = os.path.join(db_dir, "CURRENT")
    try:
        text = read_store_file(path)
    except FileNotFoundError:
        raise StoreError(
            f"{db_dir}: not a RocksDB or LevelDB directory (no CURRENT file)"
        ) from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read: {exc.strerror or exc}") from None
    name = text.decode("utf-8", "replace").strip()
    if not _MANIFEST_NAME.match(name):
        raise StoreError(f"{path}: does not name a MANIFEST file ({name[:40]!r})")
    return name


def _looks_like_leveldb(db_dir: str, names: list[str]) -> bool:
    """LevelDB writes no OPTIONS files and only VersionEdit tags 1-9."""
    if any(n.startswith("OPTIONS-") for n in names):
        return False
    try:
        manifest = _read_current(db_dir)
        data = read_store_file(os.path.join(db_dir, manifest), 1 << 20)
    except (StoreError, OSError):
        return not any(n.endswith(".sst") for n in names)
    from cdc.format.blocks import LogReader
    from cdc.format.manifest import decode_version_edit

    reader = LogReader(0)
    reader.feed(data)
    for rec in reader.read():
        try:
            edit = decode_version_edit(rec.payload)
        except FormatError:
            return False
        if (
            edit.cf_id
            or edit.cf_add is not None
            or edit.db_id is not None
            or edit.min_log_number_to_keep is not None
            or edit.wal_deletion is not None
            or edit.max_column_family is not None
            or edit.ignored_tags
        ):
            return False
    return True


def detect_store(db_dir: str, wal_dir: str | None = None) -> StoreInfo:
    """Find out whether ``db_dir`` holds a RocksDB or a LevelDB store.

    Args:
        db_dir: the DB directory.
        wal_dir: RocksDB ``wal_dir`` when it differs from the DB directory.

    Raises:
        StoreError: missing or unreadable directory, or neither store.
    """
    db_dir = os.path.abspath(db_dir)
    if not os.path.exists(db_dir):
        raise StoreError(f"{db_dir}: no such directory")
    if not os.path.isdir(db_dir):
        raise StoreError(f"{db_dir}: not a directory")
    try:
        names = os.listdir(db_dir)
    except OSError as exc:
        raise StoreError(f"{db_dir}: cannot list: {exc.strerror or exc}") from None
    _read_current(db_dir)
    kind = "leveldb" if _looks_like_leveldb(db_dir, names) else "rocksdb"
    wal = os.path.abspath(wal_dir) if wal_dir else db_dir
    if wal_dir and not os.path.isdir(wal):
        raise StoreError(f"{wal}: WAL directory does not exist")
    return StoreInfo(kind, db_dir, wal)


def list_wal_files(wal_dir: str) -> list[tuple[int, str]]:
    """WAL files of a directory (and its ``archive/``), oldest first.

    A number present in both places (a move in progress) is listed once, live copy first.

    Raises:
        StoreError: the directory cannot be listed.
    """
    found: dict[int, str] = {}
    # The live directory is listed before archive/: a WAL that RocksDB moves into archive/
    # between the two listings is then seen in one of them (the other order can miss it).
    for sub in ("", "archive"):
        d = os.path.join(wal_dir, sub) if sub else wal_dir
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            if sub:
                continue
            raise StoreError(f"{wal_dir}: no such directory") from None
        except OSError as exc:
            raise StoreError(f"{d}: cannot list: {exc.strerror or exc}") from None
        for name in names:
            m = _WAL_NAME.match(name)
            if m:
                found.setdefault(int(m.group(1)), os.path.join(d, name))
    return sorted(found.items())


def read_identity(db_dir: str) -> str | None:
    """The store's DB id from its ``IDENTITY`` file (RocksDB), or None (LevelDB, absent, unreadable).

    The id is the same for every open of one store and differs between two stores; RocksDB
    9.7+ also keeps it in the MANIFEST (``ManifestState.db_id``).
    """
    try:
        text = read_store_file(os.path.join(db_dir, "IDENTITY"), 256)
    except OSError:
        return None
    ident = text.decode("utf-8", "replace").strip()
    return ident or None


_OPTIONS_NAME = re.compile(r"^OPTIONS-(\d+)$")


def read_wal_archiving(db_dir: str) -> dict[str, int] | None:
    """WAL archiving settings from the newest ``OPTIONS-NNNNNN`` file of a RocksDB directory.

    Returns:
        ``{"WAL_ttl_seconds": n, "WAL_size_limit_MB": m}`` (a missing key counts as 0), or None
        when there is no readable OPTIONS file (LevelDB, a store being created). RocksDB moves
        obsolete WALs to ``archive/`` only when one of the two is > 0; otherwise it deletes them.
    """
    try:
        names = os.listdir(db_dir)
    except OSError:
        return None
    numbered = sorted(((int(m.group(1)), n) for n in names if (m := _OPTIONS_NAME.match(n))), reverse=True)
    for _number, name in numbered:
        try:
            text = read_store_file(os.path.join(db_dir, name), 1 << 20).decode("utf-8", "replace")
        except OSError:
            continue  # replaced by a newer one meanwhile: try the next
        out = {"WAL_ttl_seconds": 0, "WAL_size_limit_MB": 0}
        section = ""
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line
                continue
            if section != "[DBOptions]" or "=" not in line:
                continue
            key, _, value = line.partition("=")
            key = key.strip()
            if key in out:
                try:
                    out[key] = int(value.strip())
                except ValueError:
                    pass
        return out
    return None


def load_manifest(db_dir: str, *, leveldb: bool | None = None) -> ManifestState:
    """Read CURRENT and decode the MANIFEST it names.

    Args:
        db_dir: the DB directory.
        leveldb: LevelDB framing; None = RocksDB framing (LevelDB MANIFESTs decode the same way).

    Raises:
        StoreError: no CURRENT, or the MANIFEST keeps disappearing / cannot be read.
        FormatError: the MANIFEST is corrupt.
    """
    last_exc: OSError | None = None
    for _attempt in range(20):
        name = _read_current(db_dir)
        path = os.path.join(db_dir, name)
        try:
            data = read_store_file(path)
        except FileNotFoundError as exc:
            # CURRENT was switched between our two reads: read it again.
            last_exc = exc
            continue
        except OSError as exc:
            raise StoreError(f"{path}: cannot read: {exc.strerror or exc}") from None
        number = int(name.split("-", 1)[1])
        return decode_manifest(data, leveldb=bool(leveldb), number=number)
    raise StoreError(f"{db_dir}: MANIFEST named by CURRENT keeps disappearing ({last_exc})")
