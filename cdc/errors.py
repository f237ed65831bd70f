"""The exception hierarchy of cdc, documented in one place.

CdcError
├─ FormatError            pure decoders: bytes that are not what the format says
│   ├─ CorruptRecord      checksum / length / type / framing mismatch
│   └─ UnsupportedRecord  a valid record cdc cannot decode (says what to turn off)
├─ StoreError             a directory that is not a readable RocksDB/LevelDB store
├─ JournalError           LMDB journal: map full, disk full, schema mismatch
│   ├─ JournalFull
│   └─ JournalCorrupt     the LMDB file cannot be trusted (truncated, garbage pages)
├─ ConfigError            a user-fixable configuration problem (CLI: one line, exit 2)
└─ AuthError              a token that is missing, invalid, expired or not allowed
"""

from __future__ import annotations


class CdcError(Exception):
    """Root of every error cdc raises on purpose."""


class FormatError(CdcError):
    """Bytes that do not follow the on-disk format.

    Attributes:
        log_number: number of the file (WAL / MANIFEST) the bytes came from, or -1.
        offset: byte offset in that file where the problem starts.
        reason: short lowercase description.
    """

    def __init__(self, reason: str, *, log_number: int = -1, offset: int = -1) -> None:
        self.reason = reason
        self.log_number = log_number
        self.offset = offset
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.log_number >= 0:
            where.append(f"file {self.log_number:06d}")
        if self.offset >= 0:
            where.append(f"@{self.offset:#x}")
        return f"{' '.join(where)}: {self.reason}" if where else self.reason

    def __reduce__(self):  # keep picklable with keyword-only args
        return (_rebuild_format_error, (type(self), self.reason, self.log_number, self.offset))


def _rebuild_format_error(cls, reason, log_number, offset):  # pragma: no cover - pickling helper
    return cls(reason, log_number=log_number, offset=offset)


class CorruptRecord(FormatError):
    """A checksum, length, record type or fragment sequence that is wrong."""


class UnsupportedRecord(FormatError):
    """A well-formed record that cdc cannot decode; the message says what to turn off."""


class StoreError(CdcError):
    """A directory that is missing, unreadable, or neither a RocksDB nor a LevelDB store."""


class JournalError(CdcError):
    """The LMDB journal cannot be opened or written."""


class JournalFull(JournalError):
    """The LMDB map or the disk is full."""


class JournalCorrupt(JournalError):
    """The journal's LMDB file is damaged (truncated, garbage pages, a missing header record).

    Attributes:
        path: the journal directory.
        reason: short lowercase description of what was found.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f'journal {path} is damaged ({reason}): move it away or restore it; see README "Recovering the journal"'
        )


class ConfigError(CdcError):
    """A configuration value a user can fix."""


class AuthError(CdcError):
    """A token that is missing, invalid, expired, or lacks the scope asked for.

    Attributes:
        code: WebSocket close code to use (4401 or 4403).
    """

    def __init__(self, message: str, code: int = 4401) -> None:
        self.code = code
        super().__init__(message)
