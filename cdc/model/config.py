"""Configuration: one frozen Struct that every part of the daemon reads.

Rule: this module is pure apart from reading the TOML file named by the user. Checks that touch
the filesystem or the network (store detection, writable state dir, free port) live in
``cdc/preflight.py``.

Precedence: command line > ``CDC_<OPTION>`` environment variables > ``--config`` TOML file >
defaults. Option names in TOML use the CLI spelling with dashes or underscores
(``allow-origin`` / ``allow_origin``).

Invariants of :func:`load_config`:
- every value in the returned Config has the field's type and lies in its documented range;
- an unknown option name, a wrong type or an out-of-range value raises :class:`ConfigError`
  whose message is one line naming the option and where it came from (``--port``,
  ``CDC_PORT``, ``cdc.toml: port``);
- secrets are never part of a message: only paths to secret files are configuration.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from typing import Any

import msgspec

from cdc.errors import ConfigError

__all__ = [
    "Config",
    "OPTIONS",
    "ConfigError",
    "load_config",
    "effective_config",
    "render_effective",
]


class Config(msgspec.Struct, frozen=True, kw_only=True):
    # --- store
    db: str
    wal_dir: str | None = None  # default: db
    snapshots_dir: str | None = None
    # --- state
    state_dir: str = "./cdc-state"  # default: $STATE_DIRECTORY (systemd) else ./cdc-state
    # --- network
    host: str = "127.0.0.1"
    port: int = 8765
    allow_origin: tuple[str, ...] = ()
    allow_host: tuple[str, ...] = ()  # extra Host names accepted with --insecure-no-auth (DNS rebinding guard)
    # --- auth
    tokens_file: str | None = None
    jwt_secret_file: str | None = None
    insecure_no_auth: bool = False
    # --- journal
    journal_map_size: int = 1 << 30  # bytes of LMDB map
    retention_count: int = 10_000_000  # events
    retention_bytes: int = 512 << 20  # bytes of event data
    retention_age_s: float = 7 * 24 * 3600.0
    # "commit": each journal commit fsyncs its data pages before its events are delivered
    # (LMDB sync on, metasync off): a power loss can undo at most the last commit, whose events
    # capture then journals again from the previous checkpoint (same WAL records, same ids);
    # the journal stays consistent. "off": no fsync (the OS writes back when it likes): kill -9
    # is still exactly-once, but a power loss can undo the last seconds of commits and, on a
    # file system that reorders writes, damage the journal (delete it to start over).
    journal_fsync: str = "commit"
    max_pending_bytes: int = 256 << 20  # bytes of events held while the journal cannot commit before capture waits
    # --- delivery limits
    max_subscribers: int = 10_000
    max_pending_connections: int = 1024  # connections still sending their request (all clients)
    max_pending_per_ip: int = 64  # the same, per client address (raise it behind a proxy)
    max_message_bytes: int = 64 * 1024  # inbound WebSocket frames / POST bodies
    subscriber_queue: int = 10_000  # events buffered per subscriber before close 4429
    heartbeat_ms: int = 15_000
    stats_interval_ms: int = 1000  # stats frames (types=stats)
    max_poll_timeout_s: float = 30.0
    # --- capture
    rescan_interval_s: float = 1.0  # periodic rescan in case watch events are lost
    readiness_max_lag_bytes: int = 64 << 20
    ops_manifest_grace_s: float = 11.0  # info LOG quiet this long -> MANIFEST fallback for flush/compaction
    # --- scale-out (NATS JetStream; cdc/natsbus.py, cdc/edge.py)
    nats_url: tuple[str, ...] = ()  # serve: publish to JetStream; edge: read from it
    nats_stream: str = "CDC"
    nats_creds: str | None = None
    nats_replicas: int = 1  # replicas of the stream when cdc creates it
    nats_max_lag_events: int = 10_000  # readiness nats_lag: publisher (or edge) this far behind
    nats_max_down_s: float = 10.0  # readiness nats_lag: NATS unreachable this long
    # --- process
    shutdown_timeout_s: float = 10.0
    log_format: str = "text"  # text | json
    log_level: str = "info"

    @property
    def effective_wal_dir(self) -> str:
        return self.wal_dir or self.db


class Option(msgspec.Struct, frozen=True):
    """How one Config field is read from text (env) and checked.

    ``kind`` is one of ``str``, ``path``, ``int``, ``float``, ``bool``, ``list``, ``choice``.
    ``lo``/``hi`` bound numbers (inclusive); ``choices`` bounds ``choice``.
    """

    name: str
    kind: str
    help: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    secret_path: bool = False  # a path to a file holding secrets (contents never printed)


_GIB = 1 << 30
OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option("db", "path", "store directory (RocksDB or LevelDB) to follow, read-only"),
        Option("wal_dir", "path", "WAL directory when the store keeps it elsewhere (default: db)"),
        Option("snapshots_dir", "path", "directory of checkpoints/backups to report as snapshot_event"),
        Option("state_dir", "path", "where the LMDB journal lives (default: $STATE_DIRECTORY, else ./cdc-state)"),
        Option("host", "str", "address to listen on"),
        Option("port", "int", "TCP port to listen on (0: any free port)", 0, 65535),
        Option("allow_origin", "list", "allowed browser Origin (repeatable; unset: any)"),
        Option("allow_host", "list", "with --insecure-no-auth: a Host name (or name:port) to accept besides IP literals, localhost and --host (repeatable)"),
        Option("tokens_file", "path", "file of opaque tokens, one per line (lines starting with # are comments)", secret_path=True),
        Option("jwt_secret_file", "path", "file holding the HS256 JWT secret", secret_path=True),
        Option("insecure_no_auth", "bool", "serve without authentication (logged loudly)"),
        Option("journal_map_size", "int", "LMDB map size in bytes", 1 << 20, 1 << 44),
        Option("retention_count", "int", "keep at most this many events", 1, 1 << 62),
        Option("retention_bytes", "int", "keep at most this many bytes of event data", 1 << 10, 1 << 44),
        Option("retention_age_s", "float", "keep events at most this many seconds", 1, 10 * 365 * 86400),
        Option(
            "journal_fsync",
            "choice",
            "fsync journal commits: commit (durable across power loss) | off (kill -9 safe only)",
            choices=("commit", "off"),
        ),
        Option("max_pending_bytes", "int", "bytes of events held uncommitted (journal full) before capture waits", 1 << 20, 1 << 40),
        Option("max_subscribers", "int", "max concurrent subscribers", 1, 10_000_000),
        Option("max_pending_connections", "int", "max connections still sending their request; the oldest is closed at the cap", 1, 10_000_000),
        Option("max_pending_per_ip", "int", "the same per client address (raise it behind a reverse proxy or for connection storms)", 1, 10_000_000),
        Option("max_message_bytes", "int", "max inbound WebSocket frame / POST body", 256, 64 << 20),
        Option("subscriber_queue", "int", "events buffered per subscriber before close 4429", 1, 10_000_000),
        Option("heartbeat_ms", "int", "heartbeat frame interval", 100, 3_600_000),
        Option("stats_interval_ms", "int", "interval of stats frames (types=stats) and of the stats they count", 100, 3_600_000),
        Option("max_poll_timeout_s", "float", "longest GET /events long-poll", 0, 3600),
        Option("rescan_interval_s", "float", "periodic rescan of the store's files", 0.01, 3600),
        Option("readiness_max_lag_bytes", "int", "capture lag above which readiness fails", 0, 1 << 50),
        Option("ops_manifest_grace_s", "float", "info LOG silence before flush/compaction come from the MANIFEST", 0.1, 3600),
        Option("nats_url", "list", "NATS server URL(s) (nats://host:4222, comma list): serve publishes to JetStream, edge reads from it"),
        Option("nats_stream", "str", "JetStream stream name (subjects cdc.<stream>.<type>.<cf>)"),
        Option("nats_creds", "path", "NATS credentials file (JWT + NKey seed)", secret_path=True),
        Option("nats_replicas", "int", "replicas of the stream when cdc creates it", 1, 5),
        Option("nats_max_lag_events", "int", "readiness fails (nats_lag) when NATS publishing / the edge is this many events behind", 1, 1 << 62),
        Option("nats_max_down_s", "float", "readiness fails (nats_lag) when NATS is unreachable this long", 0.1, 86400),
        Option("shutdown_timeout_s", "float", "bound on graceful shutdown", 0.1, 3600),
        Option("log_format", "choice", "log line format", choices=("text", "json")),
        Option(
            "log_level",
            "choice",
            "log level",
            choices=("debug", "info", "warning", "error", "critical"),
        ),
    )
}
assert set(OPTIONS) == set(Config.__struct_fields__), "every Config field needs an Option"

_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def env_name(name: str) -> str:
    """``allow_origin`` -> ``CDC_ALLOW_ORIGIN``."""
    return "CDC_" + name.upper()


def cli_name(name: str) -> str:
    """``allow_origin`` -> ``--allow-origin``."""
    return "--" + name.replace("_", "-")


def _from_text(opt: Option, text: str, where: str) -> Any:
    """Parse an environment variable's text into the option's type (not range-checked)."""
    t = text.strip()
    if opt.kind == "bool":
        low = t.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{where}: expected true/false, got {t!r}")
    if opt.kind == "int":
        try:
            return int(t.replace("_", ""), 0)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {t!r}") from None
    if opt.kind == "float":
        try:
            return float(t)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {t!r}") from None
    if opt.kind == "list":
        return tuple(p for p in (s.strip() for s in t.replace(",", " ").split()) if p)
    return t


def _coerce(opt: Option, value: Any, where: str) -> Any:
    """Check a typed value (TOML / CLI / parsed env) against the option; return the Config value."""
    if opt.kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if opt.kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if opt.kind == "int":
            if isinstance(value, float):
                if not value.is_integer():
                    raise ConfigError(f"{where}: expected an integer, got {value!r}")
                value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        if opt.lo is not None and value < opt.lo or opt.hi is not None and value > opt.hi:
            raise ConfigError(f"{where}: {value} is out of range [{_num(opt.lo)}, {_num(opt.hi)}]")
        return value
    if opt.kind == "list":
        if isinstance(value, str):
            value = _from_text(opt, value, where)
        if opt.name == "nats_url" and isinstance(value, list | tuple):
            for v in value:
                if isinstance(v, str) and v.strip() and not v.strip().startswith(("nats://", "tls://", "ws://", "wss://")):
                    raise ConfigError(f"{where}: expected nats://host:port (or tls://, ws://, wss://), got {v.strip()[:80]!r}")
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        out = tuple(v.strip() for v in value if v.strip())
        for v in out:
            if any(c.isspace() for c in v):
                raise ConfigError(f"{where}: {v!r} must not contain whitespace")
        return out
    # str / path / choice
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    value = value.strip()
    if opt.kind == "choice":
        low = value.lower()
        if low not in opt.choices:
            raise ConfigError(f"{where}: expected one of {', '.join(opt.choices)}, got {value!r}")
        return low
    if opt.kind == "path":
        if not value:
            raise ConfigError(f"{where}: empty path")
        if "\0" in value:
            raise ConfigError(f"{where}: path contains a NUL byte")
    if opt.name == "host" and not value:
        raise ConfigError(f"{where}: empty host")
    if opt.name == "nats_stream" and not _STREAM_NAME.fullmatch(value):
        raise ConfigError(f"{where}: a stream name is 1-64 letters, digits, '-' or '_', got {value[:80]!r}")
    return value


def _num(x: float | None) -> str:
    if x is None:
        return "inf"
    return str(int(x)) if float(x).is_integer() else str(x)


def read_toml(path: str) -> dict[str, Any]:
    """Read a TOML config file into ``{field_name: value}`` (dashes -> underscores).

    Accepts the options at the top level or under a ``[cdc]`` / ``[serve]`` table.

    Raises:
        ConfigError: the file is missing, unreadable, not TOML, or names an unknown option.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"--config: {path}: no such file") from None
    except PermissionError:
        raise ConfigError(f"--config: {path}: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"--config: {path}: is a directory") from None
    except OSError as exc:
        raise ConfigError(f"--config: {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config: {path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--config: {path}: invalid TOML: not UTF-8") from None
    for table in ("cdc", "serve"):
        sub = data.get(table)
        if isinstance(sub, dict) and table not in OPTIONS:
            rest = {k: v for k, v in data.items() if k != table}
            data = {**rest, **sub}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in OPTIONS or name == "config":
            raise ConfigError(f"{path}: unknown option {key!r}")
        out[name] = value
    return out


def load_config(
    cli_values: Mapping[str, Any],
    environ: Mapping[str, str],
    config_path: str | None = None,
    *,
    require_db: bool = True,
) -> Config:
    """Merge the sources (CLI > ``CDC_*`` env > TOML > defaults) into a checked Config.

    Args:
        cli_values: options given on the command line, by field name (absent = not given).
        environ: the process environment (``CDC_<OPTION>``, ``STATE_DIRECTORY``).
        config_path: the ``--config`` TOML file, if any.

    Raises:
        ConfigError: one line naming the option and its source.
    """
    values: dict[str, Any] = {}
    if config_path:
        for name, value in read_toml(config_path).items():
            values[name] = _coerce(OPTIONS[name], value, f"{config_path}: {name}")
    for name, opt in OPTIONS.items():
        ev = env_name(name)
        if ev in environ:
            if environ[ev].strip() == "" and opt.kind != "bool":
                continue  # an empty variable means unset (systemd EnvironmentFile habit)
            values[name] = _coerce(opt, _from_text(opt, environ[ev], ev), ev)
    for name, value in cli_values.items():
        if name not in OPTIONS:
            raise ConfigError(f"unknown option {cli_name(name)}")
        if value is None:
            continue
        values[name] = _coerce(OPTIONS[name], value, cli_name(name))
    if "state_dir" not in values:
        sd = environ.get("STATE_DIRECTORY", "").split(":")[0].strip()
        if sd:
            values["state_dir"] = sd
    if not require_db:  # cdc edge: no store
        values.setdefault("db", "")
    elif not values.get("db"):
        raise ConfigError("--db is required (the store directory to follow; or CDC_DB, or db in --config)")
    try:
        return msgspec.convert(values, Config)
    except msgspec.ValidationError as exc:  # pragma: no cover - _coerce already checked types
        raise ConfigError(f"invalid configuration: {exc}") from None


def effective_config(config: Config) -> dict[str, Any]:
    """The effective configuration as plain data, safe to print.

    Secret *files* appear by path only (their contents are never read here); nothing else in
    Config is secret.
    """
    out = msgspec.to_builtins(config)
    out["wal_dir"] = config.effective_wal_dir
    return out


def render_effective(config: Config) -> str:
    """Render :func:`effective_config` as TOML that ``--config`` accepts (modulo ``db`` etc.)."""
    lines = ["# effective cdc configuration (secret files by path; contents never shown)"]
    for name, value in effective_config(config).items():
        opt = OPTIONS[name]
        if value is None:
            lines.append(f"# {name.replace('_', '-')} = (unset)")
            continue
        lines.append(f"{name.replace('_', '-')} = {_toml_value(value)}" + ("  # secret file" if opt.secret_path else ""))
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return msgspec.json.encode(str(value)).decode()
