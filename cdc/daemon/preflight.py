"""Start-up checks of a Config against the machine: paths, secret files, state dir, port.

Rule: everything here is I/O and runs once before the daemon starts, so that a user's mistake
ends with one clear line instead of a failure deep inside start-up.

Invariants:
- every failure raises :class:`ConfigError` (user-fixable: exit 2) or :class:`StartupError`
  (the environment, e.g. port in use: exit 3) with one line naming the option;
- the contents of token/secret files are read only to check that they are usable and never
  appear in a message;
- nothing is written except a probe file in the state dir (created and removed).
"""

from __future__ import annotations

import errno
import os
import resource
import socket
import stat

from cdc.errors import CdcError, ConfigError, StartupError
from cdc.model.config import Config, cli_name
from cdc.sources.store import detect_store

__all__ = [
    "StartupError",
    "check_config",
    "check_journal",
    "check_port",
    "check_store_dir",
    "raise_nofile_limit",
    "read_jwt_secret",
    "read_secret_file",
    "read_tokens_file",
    "require_auth_source",
]

NO_AUTH_SOURCE = (
    "no auth source: give --tokens-file and/or --jwt-secret-file (or --insecure-no-auth for a trusted local test)"
)


def require_auth_source(config: Config) -> None:
    """ConfigError unless a tokens file, a JWT secret file or ``insecure_no_auth`` is given
    (the one check, for ``serve``, ``edge`` and the in-process App)."""
    if not (config.tokens_file or config.jwt_secret_file or config.insecure_no_auth):
        raise ConfigError(NO_AUTH_SOURCE)


def _os_problem(option: str, path: str, exc: OSError, missing: str) -> ConfigError:
    """The one line for an OSError on a path an option names (``missing``: "no such file"...)."""
    if isinstance(exc, FileNotFoundError):
        why = missing
    elif isinstance(exc, PermissionError):
        why = "permission denied"
    else:
        why = exc.strerror or str(exc)
    return ConfigError(f"{option}: {path}: {why}")


def _dir_ok(path: str, option: str, *, write: bool = False) -> None:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _os_problem(option, path, exc, "no such directory") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{option}: {path}: not a directory")
    mode = os.R_OK | os.X_OK | (os.W_OK if write else 0)
    if not os.access(path, mode):
        what = "writable" if write else "readable"
        raise ConfigError(f"{option}: {path}: directory is not {what} by this user")


def check_store_dir(db: str, wal_dir: str | None = None) -> str:
    """Check that ``db`` is a readable RocksDB or LevelDB directory; return its kind.

    Uses ``cdc.sources.store.detect_store``.
    """
    _dir_ok(db, "--db")
    if wal_dir:
        _dir_ok(wal_dir, "--wal-dir")
    try:
        return str(detect_store(db, wal_dir).kind)
    except CdcError as exc:
        raise ConfigError(f"--db: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"--db: {db}: {exc.strerror or exc}") from None


def read_secret_file(path: str, option: str) -> str:
    """Read a secret/token file, stripped; ConfigError (never quoting contents) when unusable."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{option}: {path}: is a directory")
        with open(path, "rb") as f:
            raw = f.read((1 << 20) + 1)
    except OSError as exc:
        raise _os_problem(option, path, exc, "no such file") from None
    if len(raw) > 1 << 20:
        raise ConfigError(f"{option}: {path}: larger than 1 MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{option}: {path}: not UTF-8 text") from None
    return text.strip()


def read_tokens_file(path: str, option: str = "--tokens-file") -> list[str]:
    """The tokens of a tokens file (at least one), parsed by the one parser (``parse_tokens``);
    ConfigError naming ``option`` and never quoting a token otherwise."""
    from cdc.delivery.auth import parse_tokens

    text = read_secret_file(path, option)
    try:
        tokens = parse_tokens(text)
    except ValueError as exc:
        raise ConfigError(f"{option}: {path}: {exc}") from None
    if not tokens:
        raise ConfigError(f"{option}: {path}: contains no token (one per line; lines starting with # are comments)")
    return tokens


def read_jwt_secret(path: str, option: str = "--jwt-secret-file") -> str:
    """The JWT secret of a secret file (not empty); ConfigError naming ``option`` otherwise."""
    secret = read_secret_file(path, option)
    if not secret:
        raise ConfigError(f"{option}: {path}: the file is empty")
    return secret


def _check_tokens_file(path: str) -> None:
    read_tokens_file(path)


def _check_secret_file(path: str) -> None:
    read_jwt_secret(path)


def _check_state_dir(path: str) -> None:
    if not os.path.exists(path):
        parent = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except PermissionError:
            raise ConfigError(f"--state-dir: {path}: cannot create (permission denied in {parent})") from None
        except OSError as exc:
            raise ConfigError(f"--state-dir: {path}: cannot create ({exc.strerror or exc})") from None
    _dir_ok(path, "--state-dir", write=True)
    probe = os.path.join(path, f".cdc-write-probe-{os.getpid()}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"--state-dir: {path}: not writable ({exc.strerror or exc})") from None


def check_journal(path: str, *, in_use_ok: bool = True) -> None:
    """Refuse a journal that cannot be trusted before the daemon maps it (StartupError, exit 3).

    A ``data.mdb`` shorter than the last page its meta pages record would kill the process with
    SIGBUS when mapped; garbage pages would fail every replay later. Both are found here: the meta
    pages are read with plain reads, then (when no other cdc holds the journal's lock) every tree
    is walked read-only. A missing journal is fine (it is created). A journal another cdc holds
    is refused (StartupError naming its pid) unless ``in_use_ok`` (``cdc config`` on a running
    daemon's configuration).
    """
    from cdc.errors import JournalError, JournalLocked
    from cdc.journal.lmdb_journal import check_journal_file, verify_env
    from cdc.journal.lock import lock_journal, unlock_journal

    if not os.path.exists(os.path.join(path, "data.mdb")):
        return
    try:
        check_journal_file(path)
    except JournalError as exc:
        raise StartupError(str(exc)) from None
    try:
        fd = lock_journal(path)
    except JournalLocked as exc:
        if in_use_ok:
            return
        raise StartupError(f"--state-dir: {exc}") from None
    except JournalError:
        return  # the daemon's own open reports it
    try:
        import lmdb

        try:
            env = lmdb.open(path, readonly=True, lock=False, max_dbs=4, readahead=False)
        except lmdb.Error as exc:
            raise StartupError(str(_corrupt(path, exc))) from None
        try:
            verify_env(env, path)
        except JournalError as exc:
            raise StartupError(str(exc)) from None
        except lmdb.Error as exc:
            raise StartupError(str(_corrupt(path, exc))) from None
        finally:
            env.close()
    finally:
        unlock_journal(fd)


def _corrupt(path: str, exc: BaseException) -> Exception:
    from cdc.errors import JournalCorrupt

    return JournalCorrupt(path, f"{type(exc).__name__}: {str(exc)[:120]}")


def check_port(host: str, port: int) -> None:
    """Raise StartupError when ``host:port`` cannot be bound (in use, bad address)."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host: {host}: cannot resolve ({exc.strerror})") from None
    family, socktype, proto, _, addr = infos[0]
    s = socket.socket(family, socktype, proto)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"--port: {host}:{port} is already in use") from None
        if exc.errno == errno.EACCES:
            raise StartupError(f"--port: {host}:{port}: permission denied (ports below 1024 need privileges)") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"--host: {host}: not an address of this machine") from None
        raise StartupError(f"--port: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    finally:
        s.close()


def check_config(config: Config, *, bind: bool = True) -> str:
    """Run every start-up check; return the store kind ("rocksdb" | "leveldb").

    Raises:
        ConfigError: a user-fixable problem (exit 2).
        StartupError: the port cannot be bound (exit 3).
    """
    kind = check_store_dir(config.db, config.wal_dir)
    if config.snapshots_dir:
        _dir_ok(config.snapshots_dir, cli_name("snapshots_dir"))
    if config.tokens_file:
        _check_tokens_file(config.tokens_file)
    if config.jwt_secret_file:
        _check_secret_file(config.jwt_secret_file)
    require_auth_source(config)
    _check_state_dir(config.state_dir)
    check_journal(os.path.join(config.state_dir, "journal"), in_use_ok=not bind)
    if bind:
        check_port(config.host, config.port)
    return kind


_NR_OPEN_FALLBACK = 1 << 20


def raise_nofile_limit() -> tuple[int, int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return (soft before, soft now, hard).

    Every subscriber, half-open connection and tailed file costs a descriptor; the usual soft
    default (1024) lets a few hundred idle connections blind the capture (EMFILE). An unlimited
    hard limit is capped at ``/proc/sys/fs/nr_open`` (the kernel's ceiling). Never raises: when
    the limit cannot be changed the current one is kept and returned.
    """
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):  # pragma: no cover - no such resource on this platform
        return -1, -1, -1
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            with open("/proc/sys/fs/nr_open") as f:
                target = int(f.read().strip())
        except (OSError, ValueError):
            target = _NR_OPEN_FALLBACK
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            return soft, soft, hard
        return soft, target, hard
    return soft, soft, hard
