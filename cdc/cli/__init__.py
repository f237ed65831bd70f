"""The command line (click): ``serve``, ``edge``, ``config``, ``dump-wal``, ``tail``, ``token``,
``publish``, ``demo``.

Invariant: the only place that calls ``sys.exit`` and maps errors to exit codes
(``cli/errors.py``: every ``CdcError`` carries its ``exit_code``); a user error is one line on
stderr. May import everything -- but importing this package itself is cheap: the click group
(``cdc.cli.main``) is imported only when :func:`main` needs it.
"""

from __future__ import annotations

import os
import sys
import types
from typing import NoReturn

__all__ = ["main"]

_NO_PLAIN_ENV = ("CDC_VALUES", "CDC_DB", "_CDC_COMPLETE")
"""Variables click would read for ``dump-wal`` (options from the environment, shell completion)."""


def main(argv: list[str] | None = None) -> NoReturn:
    """Console entry point: run the click group (cdc.cli.main); every failure is one line + its
    exit code.

    ``cdc dump-wal PATH [--values]`` -- the plain form, no other option, no ``CDC_VALUES`` /
    ``CDC_DB`` in the environment -- is run without importing click and the other commands
    (start-up is a large part of a short dump); it does exactly what the click command does for
    those arguments. Everything else (help, other options, errors) goes through click.
    """
    plain = _plain_dump_wal(sys.argv[1:] if argv is None else list(argv))
    if plain is not None:
        try:
            from cdc.cli.dumpwal import run
        except ImportError:
            run = None  # a broken install: click's path reports it as one line
        if run is not None:
            try:
                rc = run(plain[0], values=plain[1])  # never raises (its errors are its lines)
            except KeyboardInterrupt:
                sys.exit(130)  # EXIT_INTERRUPTED, as run_and_exit maps it
            sys.exit(rc)
    from cdc.cli.main import main as click_main

    click_main(argv)


class _Package(types.ModuleType):
    """``cdc.cli.main`` stays this function when the submodule ``cdc.cli.main`` is imported
    (the import system sets the package attribute to the submodule; before the lazy import, the
    package bound the function last, and callers such as tests rely on ``cdc.cli.main(argv)``)."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "main" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def _plain_dump_wal(args: list[str]) -> tuple[str, bool] | None:
    """(PATH, values) when ``args`` are ``dump-wal`` + one PATH + optional ``--values``, else None."""
    if len(args) < 2 or args[0] != "dump-wal" or os.name == "nt":  # click expands globs on Windows
        return None
    environ = os.environ
    for name in _NO_PLAIN_ENV:
        if name in environ:
            return None
    path: str | None = None
    values = False
    for a in args[1:]:
        if a == "--values":
            values = True
        elif path is not None or not a or a[0] == "-":
            return None  # a second argument, an option, "-" or "": click decides
        else:
            path = a
    return None if path is None else (path, values)
