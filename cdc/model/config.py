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
from typing import Annotated, Any, Literal, get_args, get_type_hints

import msgspec
import msgspec.inspect as mi

from cdc.errors import ConfigError

__all__ = [
    "Config",
    "OPTIONS",
    "ConfigError",
    "load_config",
    "effective_config",
    "render_effective",
]


def _doc(help: str, *, kind: str | None = None, secret_path: bool = False, **constraints: Any) -> msgspec.Meta:
    """A Config field's metadata: its help text (``cdc serve --help``, ``cdc config``), msgspec
    constraints (``ge``/``le``/``pattern``) and, in ``extra``, how it is read from text."""
    extra: dict[str, Any] = {}
    if kind is not None:
        extra["kind"] = kind
    if secret_path:
        extra["secret_path"] = True
    return msgspec.Meta(description=help, extra=extra or None, **constraints)


_Path = str  # a path (extra kind "path": non-empty, no NUL byte)
_GIB = 1 << 30


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """The configuration. Each field's ``Annotated`` metadata is the one source of its help text,
    range, pattern or choices: :data:`OPTIONS` (the CLI, ``CDC_*`` parsing, the messages naming
    the option) is derived from it, and ``msgspec.convert`` enforces it."""

    # --- store
    db: Annotated[_Path, _doc("store directory (RocksDB or LevelDB) to follow, read-only", kind="path")]
    wal_dir: Annotated[_Path | None, _doc("WAL directory when the store keeps it elsewhere (default: db)", kind="path")] = None
    snapshots_dir: Annotated[_Path | None, _doc("directory of checkpoints/backups to report as snapshot_event", kind="path")] = None
    # --- state
    state_dir: Annotated[_Path, _doc("where the LMDB journal lives (default: $STATE_DIRECTORY, else ./cdc-state)", kind="path")] = "./cdc-state"
    # --- network
    host: Annotated[str, _doc("address to listen on")] = "127.0.0.1"
    port: Annotated[int, _doc("TCP port to listen on (0: any free port)", ge=0, le=65535)] = 8765
    allow_origin: Annotated[tuple[str, ...], _doc("allowed browser Origin (repeatable; unset: any)")] = ()
    # extra Host names accepted with --insecure-no-auth (DNS rebinding guard)
    allow_host: Annotated[
        tuple[str, ...],
        _doc("with --insecure-no-auth: a Host name (or name:port) to accept besides IP literals, localhost and --host (repeatable)"),
    ] = ()
    # --- auth
    tokens_file: Annotated[
        _Path | None, _doc("file of opaque tokens, one per line (lines starting with # are comments)", kind="path", secret_path=True)
    ] = None
    jwt_secret_file: Annotated[_Path | None, _doc("file holding the HS256 JWT secret", kind="path", secret_path=True)] = None
    insecure_no_auth: Annotated[bool, _doc("serve without authentication (logged loudly)")] = False
    # --- journal
    journal_map_size: Annotated[int, _doc("LMDB map size in bytes", ge=1 << 20, le=1 << 44)] = _GIB
    retention_count: Annotated[int, _doc("keep at most this many events", ge=1, le=1 << 62)] = 10_000_000
    retention_bytes: Annotated[int, _doc("keep at most this many bytes of event data", ge=1 << 10, le=1 << 44)] = 512 << 20
    retention_age_s: Annotated[float, _doc("keep events at most this many seconds", ge=1, le=10 * 365 * 86400)] = 7 * 24 * 3600.0
    # "commit": each journal commit fsyncs its data pages before its events are delivered
    # (LMDB sync on, metasync off): a power loss can undo at most the last commit, whose events
    # capture then journals again from the previous checkpoint (same WAL records, same ids);
    # the journal stays consistent. "off": no fsync (the OS writes back when it likes): kill -9
    # is still exactly-once, but a power loss can undo the last seconds of commits and, on a
    # file system that reorders writes, damage the journal (delete it to start over).
    journal_fsync: Annotated[
        Literal["commit", "off"], _doc("fsync journal commits: commit (durable across power loss) | off (kill -9 safe only)")
    ] = "commit"
    max_pending_bytes: Annotated[
        int, _doc("bytes of events held uncommitted (journal full) before capture waits", ge=1 << 20, le=1 << 40)
    ] = 256 << 20
    # --- delivery limits
    max_subscribers: Annotated[int, _doc("max concurrent subscribers", ge=1, le=10_000_000)] = 10_000
    max_pending_connections: Annotated[
        int, _doc("max connections still sending their request; the oldest is closed at the cap", ge=1, le=10_000_000)
    ] = 1024
    max_pending_per_ip: Annotated[
        int, _doc("the same per client address (raise it behind a reverse proxy or for connection storms)", ge=1, le=10_000_000)
    ] = 64
    max_message_bytes: Annotated[int, _doc("max inbound WebSocket frame / POST body", ge=256, le=64 << 20)] = 64 * 1024
    subscriber_queue: Annotated[int, _doc("events buffered per subscriber before close 4429", ge=1, le=10_000_000)] = 10_000
    heartbeat_ms: Annotated[int, _doc("heartbeat frame interval", ge=100, le=3_600_000)] = 15_000
    stats_interval_ms: Annotated[
        int, _doc("interval of stats frames (types=stats) and of the stats they count", ge=100, le=3_600_000)
    ] = 1000
    max_poll_timeout_s: Annotated[float, _doc("longest GET /events long-poll", ge=0, le=3600)] = 30.0
    # --- capture
    rescan_interval_s: Annotated[float, _doc("periodic rescan of the store's files", ge=0.01, le=3600)] = 1.0
    readiness_max_lag_bytes: Annotated[int, _doc("capture lag above which readiness fails", ge=0, le=1 << 50)] = 64 << 20
    ops_manifest_grace_s: Annotated[
        float, _doc("info LOG silence before flush/compaction come from the MANIFEST", ge=0.1, le=3600)
    ] = 11.0
    # --- scale-out (NATS JetStream; cdc/delivery/natsbus.py, cdc/daemon/edge.py)
    nats_url: Annotated[
        tuple[str, ...],
        _doc("NATS server URL(s) (nats://host:4222, comma list): serve publishes to JetStream, edge reads from it"),
    ] = ()
    nats_stream: Annotated[
        str, _doc("JetStream stream name (subjects cdc.<stream>.<type>.<cf>)", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    ] = "CDC"
    nats_creds: Annotated[_Path | None, _doc("NATS credentials file (JWT + NKey seed)", kind="path", secret_path=True)] = None
    nats_replicas: Annotated[int, _doc("replicas of the stream when cdc creates it", ge=1, le=5)] = 1
    nats_max_lag_events: Annotated[
        int, _doc("readiness fails (nats_lag) when NATS publishing / the edge is this many events behind", ge=1, le=1 << 62)
    ] = 10_000
    nats_max_down_s: Annotated[float, _doc("readiness fails (nats_lag) when NATS is unreachable this long", ge=0.1, le=86400)] = 10.0
    # --- process
    shutdown_timeout_s: Annotated[float, _doc("bound on graceful shutdown", ge=0.1, le=3600)] = 10.0
    log_format: Annotated[Literal["text", "json"], _doc("log line format")] = "text"
    log_level: Annotated[Literal["debug", "info", "warning", "error", "critical"], _doc("log level")] = "info"

    @property
    def effective_wal_dir(self) -> str:
        return self.wal_dir or self.db


class Option(msgspec.Struct, frozen=True):
    """How one Config field is read from text (env) and checked: derived from the field's type
    and ``Annotated`` metadata (see :func:`_option`).

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
    pattern: str | None = None


def _option(field: mi.Field) -> Option:
    """The :class:`Option` of one Config field, from its type and metadata."""
    t: Any = field.type
    help_text, extra = "", {}
    if isinstance(t, mi.Metadata):
        help_text = (t.extra_json_schema or {}).get("description", "")
        extra = t.extra or {}
        t = t.type
    if isinstance(t, mi.UnionType):  # X | None
        t = next(x for x in t.types if not isinstance(x, mi.NoneType))
    lo = hi = None
    pattern = None
    choices: tuple[str, ...] = ()
    if isinstance(t, mi.BoolType):
        kind = "bool"
    elif isinstance(t, mi.IntType | mi.FloatType):
        kind = "int" if isinstance(t, mi.IntType) else "float"
        lo, hi = t.ge, t.le
    elif isinstance(t, mi.LiteralType):  # in declaration order (messages list them so)
        kind, choices = "choice", get_args(get_args(get_type_hints(Config, include_extras=True)[field.name])[0])
    elif isinstance(t, mi.VarTupleType):
        kind = "list"
    elif isinstance(t, mi.StrType):
        kind = extra.get("kind", "str")
        pattern = t.pattern
    else:  # a new field type: teach this function how to read it
        raise TypeError(f"Config.{field.name}: no option kind for {t!r}")
    return Option(field.name, kind, help_text, lo, hi, choices, bool(extra.get("secret_path")), pattern)


OPTIONS: dict[str, Option] = {f.name: _option(f) for f in mi.type_info(Config).fields}  # type: ignore[union-attr]
"""Every Config field, in declaration order: derived from the Struct (one source of truth)."""

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
    if opt.pattern is not None and not re.search(opt.pattern, value):  # nats_stream
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
    except msgspec.ValidationError as exc:  # the Struct's own constraints (after _coerce's checks)
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
