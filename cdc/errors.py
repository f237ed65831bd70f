"""The exception hierarchy of cdc, documented in one place.

CdcError
├─ FormatError            pure decoders: bytes that are not what the format says
│   ├─ CorruptRecord      checksum / length / type / framing mismatch
│   └─ UnsupportedRecord  a valid record cdc cannot decode (says what to turn off)
├─ StoreError             a directory that is not a readable RocksDB/LevelDB store
├─ JournalError           LMDB journal: map full, disk full, schema mismatch
│   ├─ JournalFull
│   └─ JournalCorrupt     the LMDB file cannot be trusted (truncated, garbage pages)
│   └─ JournalLocked      another cdc holds the journal (the message names its pid)
├─ ConfigError            a user-fixable configuration problem (CLI: one line, exit 2)
├─ AuthError              a token that is missing, invalid, expired or not allowed
├─ StartupError           the environment prevents start-up (port in use, ...)
└─ UserError              a CLI command's failure with the exit code it chose

Every class carries the process exit code it ends ``cdc`` with (``exit_code``); the CLI
(``cdc.cli.errors``) prints the one line and exits with it -- the only place that maps errors
to exit codes. The codes (README "Troubleshooting", ``cdc --help``): 0 ok, 1 unexpected
(a bug), 2 usage/configuration, 3 start-up/environment, 130 interrupted.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_UNEXPECTED = 1  # a bug (or dump-wal: a corrupt/truncated WAL)
EXIT_USAGE = 2  # usage or configuration: the user can fix it
EXIT_STARTUP = 3  # the environment: port in use, daemon unreachable, journal locked or damaged
EXIT_INTERRUPTED = 130


class CdcError(Exception):
    """Root of every error cdc raises on purpose.

    Attributes:
        exit_code: the process exit code when this error ends ``cdc`` (default: the environment).
    """

    exit_code: int = EXIT_STARTUP


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

    exit_code = EXIT_USAGE


class JournalError(CdcError):
    """The LMDB journal cannot be opened or written."""


class JournalFull(JournalError):
    """The LMDB map or the disk is full."""


class JournalLocked(JournalError):
    """Another process (or another Journal object) holds the journal's lock.

    Attributes:
        path: the journal directory.
        pid: the holder's pid as it wrote it in the lock file, or None when unknown.
    """

    def __init__(self, path: str, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        who = f" (pid {pid})" if pid is not None else ""
        super().__init__(f"journal {path} is in use by another cdc{who}")


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

    exit_code = EXIT_USAGE


class AuthError(CdcError):
    """A token that is missing, invalid, expired, or lacks the scope asked for.

    Attributes:
        code: WebSocket close code to use (4401 or 4403).
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, code: int = 4401) -> None:
        self.code = code
        super().__init__(message)


class StartupError(CdcError):
    """The environment prevents start-up (port in use, state dir locked, ...): exit 3."""

    exit_code = EXIT_STARTUP


class UserError(CdcError):
    """A command's failure reported as one line with the exit code the command chose.

    Attributes:
        exit_code: the code (``code`` is the same value, kept for callers that read it).
    """

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        self.exit_code = code
        super().__init__(message)

    @property
    def code(self) -> int:
        return self.exit_code
