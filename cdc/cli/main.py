"""Command line: ``cdc serve | config | dump-wal | tail | token | publish | demo`` (CONTRACT.md §1).

Commands end with sys.exit (only cdc.cli does); every failure ends with one line on stderr and a
non-zero exit code, never a traceback (the mapping: cdc.cli.errors; the codes: cdc.errors):

====  ==========================================================================
code  meaning
====  ==========================================================================
0     success (``serve``: clean shutdown)
1     unexpected internal error (a bug: please report; ``CDC_DEBUG=1`` shows the traceback)
2     usage or configuration error (bad option, missing/unreadable store dir, not a
      RocksDB/LevelDB dir, bad token/secret file, state dir not writable, token rejected)
3     start-up / environment failure (port in use, daemon unreachable, journal locked)
130   interrupted (Ctrl-C)
====  ==========================================================================

Every option can also come from a ``CDC_<OPTION>`` environment variable (``CDC_PORT``,
``CDC_ALLOW_ORIGIN=a,b``, ``CDC_TOKEN``...); ``serve`` also reads ``--config FILE`` (TOML).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click
from click.core import ParameterSource

from cdc import __version__
from cdc.model.config import OPTIONS, Config, cli_name, env_name, load_config, render_effective
from cdc.cli.errors import run_and_exit
from cdc.format.speedups import NAME as SPEEDUPS
from cdc.errors import EXIT_OK, EXIT_UNEXPECTED, ConfigError, StartupError, UserError

__all__ = ["UserError", "cli", "main", "mint"]

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def main(argv: list[str] | None = None) -> NoReturn:
    """Console entry point: run the click group; every failure is one line + its exit code."""
    run_and_exit(lambda: cli.main(args=argv, prog_name="cdc", standalone_mode=False))


@click.group(context_settings=_CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="cdc", message=f"%(prog)s %(version)s (speedups: {SPEEDUPS})")
def cli() -> None:
    """Change data capture for RocksDB and LevelDB, served live over WebSocket and HTTP.

    Every option can also be set with a CDC_<OPTION> environment variable (CDC_PORT,
    CDC_TOKEN, ...). Exit codes: 0 ok, 1 unexpected error, 2 usage/configuration error,
    3 start-up failure (port in use, daemon unreachable), 130 interrupted.
    """


# --------------------------------------------------------------------------- serve / config

_SERVE_ORDER = tuple(OPTIONS)  # declaration order of Config fields


def _serve_options(f: Callable[..., Any], exclude: frozenset[str] = frozenset()) -> Callable[..., Any]:
    """Add one click option per Config field (all parsed by cdc.config, so errors name the option)."""
    for name in reversed(_SERVE_ORDER):
        if name in exclude:
            continue
        opt = OPTIONS[name]
        help_text = f"{opt.help} [env: {env_name(name)}]"
        if opt.kind == "bool":
            f = click.option(cli_name(name), name, is_flag=True, default=False, help=help_text)(f)
        elif opt.kind == "list":
            f = click.option(cli_name(name), name, multiple=True, metavar="VALUE", help=help_text + " (repeatable)")(f)
        else:
            metavar = {"path": "PATH", "int": "N", "float": "X", "choice": "|".join(opt.choices)}.get(opt.kind, "TEXT")
            f = click.option(cli_name(name), name, default=None, metavar=metavar, help=help_text)(f)
    f = click.option(
        "--config",
        "config_path",
        metavar="FILE",
        default=None,
        help="TOML file with the same option names (dashes or underscores) [env: CDC_CONFIG]",
    )(f)
    return f


def _config_from_click(ctx: click.Context, params: dict[str, Any]) -> Config:
    from cdc.model.config import _from_text

    cli_values: dict[str, Any] = {}
    for name in _SERVE_ORDER:
        if name not in params or ctx.get_parameter_source(name) != ParameterSource.COMMANDLINE:
            continue
        value = params[name]
        opt = OPTIONS[name]
        if opt.kind == "list":
            items: list[str] = []
            for v in value:
                items.extend(_from_text(opt, v, cli_name(name)))
            value = tuple(items)
        elif opt.kind != "bool" and isinstance(value, str):
            value = _from_text(opt, value, cli_name(name))
        cli_values[name] = value
    config_path = params.get("config_path") or os.environ.get("CDC_CONFIG") or None
    return load_config(cli_values, os.environ, config_path, require_db="db" in params)


def _print_config(config: Config, kind: str) -> None:
    click.echo(render_effective(config), nl=False)
    auth = []
    if config.tokens_file:
        auth.append("tokens file")
    if config.jwt_secret_file:
        auth.append("JWT secret")
    if config.insecure_no_auth and not auth:
        auth.append("NONE (--insecure-no-auth)")
    click.echo(f"configuration ok: {kind} store at {config.db}; auth: {', '.join(auth)}", err=True)


@cli.command("serve", context_settings=_CONTEXT)
@_serve_options
@click.option("--check-config", is_flag=True, help="Validate, print the effective configuration and exit.")
@click.pass_context
def serve_cmd(ctx: click.Context, check_config: bool, **params: Any) -> None:
    """Run the daemon: tail the store, journal events, serve subscribers."""
    from cdc.daemon.preflight import check_config as preflight

    config = _config_from_click(ctx, params)
    if check_config:
        kind = preflight(config, bind=False)
        _print_config(config, kind)
        sys.exit(EXIT_OK)
    preflight(config)
    if config.nats_url:
        from cdc.delivery.natsbus import require_nats

        require_nats()  # one line naming the extra when nats-py is missing
    from cdc.daemon.logs import setup_logging

    setup_logging(config.log_format, config.log_level)
    from cdc.daemon.preflight import raise_nofile_limit

    before, soft, hard = raise_nofile_limit()  # connections must not starve capture of fds
    logging.getLogger("cdc.startup").debug("open-file limit (RLIMIT_NOFILE): soft %d (was %d), hard %d", soft, before, hard)
    try:
        from cdc.daemon.app import serve
    except ImportError as exc:  # pragma: no cover - only while the daemon is being written
        raise UserError(f"the daemon is not available in this build ({exc})", EXIT_UNEXPECTED) from None
    try:
        rc = serve(config)  # the Journal holds the journal's lock (cdc.journal.lock) while it runs
    except OSError as exc:
        raise StartupError(f"cannot start: {exc.strerror or exc}") from None
    sys.exit(int(rc or 0))


@cli.command("config", context_settings=_CONTEXT)
@_serve_options
@click.pass_context
def config_cmd(ctx: click.Context, **params: Any) -> None:
    """Validate a configuration and print the effective one (same options as serve)."""
    from cdc.daemon.preflight import check_config as preflight

    config = _config_from_click(ctx, params)
    kind = preflight(config, bind=False)
    _print_config(config, kind)


# --------------------------------------------------------------------------- edge

_EDGE_EXCLUDE = frozenset({"db", "wal_dir", "snapshots_dir", "rescan_interval_s", "readiness_max_lag_bytes", "ops_manifest_grace_s", "journal_fsync", "nats_replicas"})


@cli.command("edge", context_settings=_CONTEXT)
@(lambda f: _serve_options(f, _EDGE_EXCLUDE))
@click.option("--check-config", is_flag=True, help="Validate, print the effective configuration and exit.")
@click.pass_context
def edge_cmd(ctx: click.Context, check_config: bool, **params: Any) -> None:
    """Serve subscribers from the NATS JetStream stream of a `cdc serve --nats-url` node.

    Same routes, auth, filters and ids as `cdc serve`; no store. The stream is mirrored into
    <state-dir>/mirror; POST /publish is forwarded to the capture node.
    """
    from cdc.daemon.edge import check_edge_config

    config = _config_from_click(ctx, params)
    check_edge_config(config, bind=not check_config)
    if check_config:
        skip = {n.replace("_", "-") for n in _EDGE_EXCLUDE}
        lines = render_effective(config).splitlines()
        click.echo("\n".join(ln for ln in lines if ln.split(" = ")[0].lstrip("# ") not in skip) + "\n", nl=False)
        sys.exit(EXIT_OK)
    from cdc.daemon.logs import setup_logging
    from cdc.daemon.preflight import raise_nofile_limit

    setup_logging(config.log_format, config.log_level)
    raise_nofile_limit()
    from cdc.daemon.edge import edge_serve

    rc = edge_serve(config)  # its mirror Journal holds the lock of <state-dir>/mirror
    sys.exit(int(rc or 0))


# --------------------------------------------------------------------------- dump-wal


@cli.command("dump-wal", context_settings=_CONTEXT)
@click.argument("path", type=click.Path())
@click.option("--values", is_flag=True, envvar="CDC_VALUES", help="Include values. [env: CDC_VALUES]")
@click.option(
    "--db",
    "db",
    type=click.Path(),
    default=None,
    envvar="CDC_DB",
    help="DB directory with the MANIFEST (column family names) when PATH is a separate wal_dir. [env: CDC_DB]",
)
def dump_wal(path: str, values: bool, db: str | None) -> None:
    """Decode WAL files (one file, or every WAL of a DB directory) as NDJSON.

    Exit 0 when everything decoded, 1 when a file is corrupt or truncated (the records
    before the bad spot are printed, then one line on stderr), 2 for a bad PATH.

    A store being written is normal: for a DB directory, an incomplete record at the end
    of its newest WAL is a write in progress. It is left out with one "note:" line on
    stderr and the exit code stays 0. A truncated older WAL, or a truncated single file
    given as PATH, still exits 1, unless the next WAL continues at the next sequence number
    (a writer crash mid-record: a note, exit 0).
    """
    from cdc.cli.dumpwal import run

    if db is not None and os.path.isfile(os.path.join(path, "CURRENT")):
        src = click.get_current_context().get_parameter_source("db")
        if src is not None and src.name == "ENVIRONMENT":
            db = None  # CDC_DB (set for `serve`) does not override PATH's own MANIFEST
    sys.exit(run(path, values=values, db=db))


# --------------------------------------------------------------------------- shared client options


def _split_list(values: tuple[str, ...] | str | None) -> list[str] | None:
    """``("a,b", "c")`` -> ``["a", "b", "c"]``; empty -> None."""
    if not values:
        return None
    if isinstance(values, str):
        values = (values,)
    out = [p.strip() for v in values for p in v.split(",") if p.strip()]
    return out or None


def _read_token(token: str | None, token_file: str | None) -> str | None:
    if token_file:
        from cdc.daemon.preflight import read_tokens_file

        return read_tokens_file(token_file, "--token-file")[0]
    if token is not None and not token.strip():
        raise ConfigError("--token: empty token")
    return token.strip() if token else None


def _token_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--token-file",
        metavar="FILE",
        envvar="CDC_TOKEN_FILE",
        help="Read the token from FILE (keeps it out of `ps`). [env: CDC_TOKEN_FILE]",
    )(f)
    f = click.option(
        "--token", metavar="TOKEN", envvar="CDC_TOKEN", help="Token (opaque or JWT). [env: CDC_TOKEN]"
    )(f)
    return f


# --------------------------------------------------------------------------- tail


@cli.command("tail", context_settings=_CONTEXT)
@click.argument("url", envvar="CDC_URL")
@_token_options
@click.option("--since", type=click.IntRange(min=0), envvar="CDC_SINCE", help="Resume after this event id (0: oldest retained).")
@click.option("--epoch", envvar="CDC_EPOCH", metavar="E", help="Journal identity of --since (printed at connect): another journal answers with a reset.")
@click.option("--types", multiple=True, envvar="CDC_TYPES", metavar="A,B", help="Event types to receive (comma list, repeatable).")
@click.option("--cf", multiple=True, envvar="CDC_CF", metavar="NAME", help="Column families (comma list, repeatable).")
@click.option("--prefix", multiple=True, envvar="CDC_PREFIX", metavar="P", help="Key prefixes (repeatable).")
@click.option("--count", type=click.IntRange(min=1), envvar="CDC_COUNT", help="Exit after N events.")
@click.option("--values", is_flag=True, envvar="CDC_VALUES", help="Ask for values (the token must allow it).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ndjson", "pretty"]),
    default="ndjson",
    envvar="CDC_FORMAT",
    show_default=True,
    help="NDJSON (one event per line) or a readable line per event.",
)
@click.option("--quiet", "-q", is_flag=True, envvar="CDC_QUIET", help="No connection notices on stderr.")
def tail_cmd(
    url: str,
    token: str | None,
    token_file: str | None,
    since: int | None,
    epoch: str | None,
    types: tuple[str, ...],
    cf: tuple[str, ...],
    prefix: tuple[str, ...],
    count: int | None,
    values: bool,
    fmt: str,
    quiet: bool,
) -> None:
    """Subscribe to a running daemon and print its events (URL: http://host:port or ws://...).

    Reconnects after a drop and resumes after the last event received, so nothing is lost.
    """
    from cdc.cli.tail import TailOptions, run_tail

    opts = TailOptions(
        url=url,
        token=_read_token(token, token_file),
        since=since,
        epoch=(epoch or "").strip() or None,
        types=_split_list(types),
        cf=_split_list(cf),
        prefix=list(prefix) or None,
        count=count,
        values=values,
        fmt=fmt,
        quiet=quiet,
    )
    sys.exit(run_tail(opts))


# --------------------------------------------------------------------------- token


@cli.command("token", context_settings=_CONTEXT)
@click.option(
    "--secret-file",
    required=True,
    metavar="FILE",
    envvar=["CDC_SECRET_FILE", "CDC_JWT_SECRET_FILE"],
    help="The serve --jwt-secret-file. [env: CDC_SECRET_FILE or CDC_JWT_SECRET_FILE]",
)
@click.option("--subject", default="cdc-cli", show_default=True, envvar="CDC_SUBJECT", help="The `sub` claim.")
@click.option(
    "--ttl", type=click.IntRange(min=1), default=3600, show_default=True, envvar="CDC_TTL", help="Lifetime in seconds."
)
@click.option("--types", multiple=True, envvar="CDC_TYPES", metavar="A,B", help="Allowed event types (default: all).")
@click.option("--cf", multiple=True, envvar="CDC_CF", metavar="NAME", help="Allowed column families (default: all).")
@click.option("--prefix", multiple=True, envvar="CDC_PREFIX", metavar="P", help="Allowed key prefixes (default: all).")
@click.option("--admin", is_flag=True, envvar="CDC_ADMIN", help="May POST /publish.")
@click.option("--values", is_flag=True, envvar="CDC_VALUES", help="May ask for values.")
def token_cmd(
    secret_file: str,
    subject: str,
    ttl: int,
    types: tuple[str, ...],
    cf: tuple[str, ...],
    prefix: tuple[str, ...],
    admin: bool,
    values: bool,
) -> None:
    """Mint an HS256 JWT for `serve --jwt-secret-file` and print it."""
    from cdc.daemon.preflight import read_jwt_secret

    secret = read_jwt_secret(secret_file, "--secret-file")
    click.echo(
        mint(
            secret,
            subject=subject,
            ttl=ttl,
            types=_split_list(types),
            cf=_split_list(cf),
            prefix=list(prefix) or None,
            admin=admin,
            values=values,
        )
    )


def mint(
    secret: str,
    *,
    subject: str,
    ttl: int,
    types: list[str] | None = None,
    cf: list[str] | None = None,
    prefix: list[str] | None = None,
    admin: bool = False,
    values: bool = False,
) -> str:
    """Mint a token with ``cdc.auth.mint_token`` when available, else PyJWT HS256 directly."""
    try:
        from cdc.delivery.auth import mint_token
    except ImportError:
        mint_token = None
    if mint_token is not None:
        return str(mint_token(secret, subject, ttl, types, cf, prefix, admin, values))
    import time
    import warnings

    import jwt

    claims: dict[str, Any] = {"sub": subject, "iat": int(time.time()), "exp": int(time.time()) + ttl}
    if types:
        claims["types"] = types
    if cf:
        claims["cf"] = cf
    if prefix:
        claims["prefix"] = prefix
    if admin:
        claims["admin"] = True
    if values:
        claims["values"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short-key warnings: the secret is the user's choice
        return jwt.encode(claims, secret, algorithm="HS256")


# --------------------------------------------------------------------------- publish


@cli.command("publish", context_settings=_CONTEXT)
@click.argument("url", envvar="CDC_URL")
@click.option("--type", "type_", required=True, envvar="CDC_TYPE", metavar="TYPE", help="Event type, e.g. sync_event.")
@click.option("--status", envvar="CDC_STATUS", metavar="S", help="The event's status field.")
@click.option("--details", envvar="CDC_DETAILS", metavar="JSON", help="The event's details (a JSON object).")
@click.option("--field", "fields", multiple=True, envvar="CDC_FIELD", metavar="K=JSON", help="Any other top-level field (repeatable).")
@_token_options
def publish_cmd(
    url: str,
    type_: str,
    status: str | None,
    details: str | None,
    fields: tuple[str, ...],
    token: str | None,
    token_file: str | None,
) -> None:
    """Post an event (such as a sync_event) to a running daemon; prints {"id": N}."""
    from cdc.cli.publish import build_body, publish

    body = build_body(type_, status, details, fields)
    sys.exit(publish(url, body, _read_token(token, token_file)))


# --------------------------------------------------------------------------- demo


@cli.command("demo", context_settings=_CONTEXT)
@click.option("--host", default="127.0.0.1", show_default=True, envvar="CDC_HOST", help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8765, show_default=True, envvar="CDC_PORT", help="TCP port."
)
@click.option(
    "--dir",
    "parent",
    type=click.Path(file_okay=False),
    envvar=["CDC_DIR", "CDC_DEMO_DIR"],
    help="Create the throw-away store under this directory (default: the system temp dir).",
)
@click.option(
    "--rate",
    type=click.FloatRange(0.1, 1000),
    default=2.0,
    show_default=True,
    envvar="CDC_RATE",
    help="Writer operations per second.",
)
@click.option("--keep", is_flag=True, envvar="CDC_KEEP", help="Keep the store and journal on exit (prints where).")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]), envvar="CDC_LOG_LEVEL")
@click.option("--flush-every", type=click.FloatRange(0.5), default=20.0, show_default=True, envvar="CDC_FLUSH_EVERY", help="Seconds between flushes.")
@click.option("--compact-every", type=click.FloatRange(0.5), default=45.0, show_default=True, envvar="CDC_COMPACT_EVERY", help="Seconds between compactions.")
@click.option("--checkpoint-every", type=click.FloatRange(0.5), default=60.0, show_default=True, envvar="CDC_CHECKPOINT_EVERY", help="Seconds between checkpoints.")
@click.option("--sync-every", type=click.FloatRange(0.5), default=30.0, show_default=True, envvar="CDC_SYNC_EVERY", help="Seconds between sync events.")
@click.option("--bulk-every", type=click.FloatRange(1.0), default=90.0, show_default=True, envvar="CDC_BULK_EVERY", help="Seconds between bulk loads + long compactions of the archive column family.")
@click.option("--allow-origin", "allow_origin", multiple=True, envvar="CDC_ALLOW_ORIGIN", help="Allowed browser Origin (repeatable), as for serve: lets a cross-origin app connect and poll.")
def demo_cmd(
    host: str,
    port: int,
    parent: str | None,
    rate: float,
    keep: bool,
    log_level: str,
    flush_every: float,
    compact_every: float,
    checkpoint_every: float,
    sync_every: float,
    bulk_every: float,
    allow_origin: tuple[str, ...],
) -> None:
    """Run everything on a throw-away RocksDB that a built-in writer keeps changing."""
    from cdc.cli.demo import run_demo

    intervals = {
        "flush_every_s": flush_every,
        "compact_every_s": compact_every,
        "checkpoint_every_s": checkpoint_every,
        "sync_every_s": sync_every,
        "bulk_every_s": bulk_every,
    }
    origins = tuple(o for v in allow_origin for o in v.replace(",", " ").split() if o)
    sys.exit(
        run_demo(
            host=host, port=port, parent=parent, rate=rate, keep=keep, log_level=log_level, intervals=intervals, allow_origin=origins
        )
    )


if __name__ == "__main__":  # pragma: no cover
    main()
