"""Command line: ``cdc serve | dump-wal | tail | token | publish | demo`` (CONTRACT.md section 1).

This is the only module that calls sys.exit. Every user error ends with one line on stderr and
a non-zero exit code (2 for usage/configuration errors), never a traceback.
"""

from __future__ import annotations

import sys

import click

from . import __version__


@click.group(context_settings={"auto_envvar_prefix": "CDC", "help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cdc")
def main() -> None:
    """Change data capture for RocksDB and LevelDB, served live over WebSocket and HTTP."""


@main.command("dump-wal")
@click.argument("path", type=click.Path())
@click.option("--values", is_flag=True, help="Include values.")
def dump_wal(path: str, values: bool) -> None:
    """Decode WAL files (one file, or every WAL of a DB directory) as NDJSON."""
    from .dumpwal import run

    sys.exit(run(path, values=values))


if __name__ == "__main__":  # pragma: no cover
    main()
