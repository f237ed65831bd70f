"""The one place that turns a failure into one line on stderr and a process exit code.

Every error carries its exit code (``CdcError.exit_code``, see :mod:`cdc.errors`); click's own
usage errors are exit 2, Ctrl-C is 130, anything else is a bug (exit 1, one line; ``CDC_DEBUG=1``
re-raises it for the traceback). Secrets are redacted from the line. ``dump-wal`` is the one
command that prints its own diagnostics (its documented ``cdc: FILE @OFF: reason`` lines among
its output) and returns its code; it is exited with here too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

import click

from cdc.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, CdcError

__all__ = ["fail", "run_and_exit"]


def fail(message: str, code: int) -> NoReturn:
    """Print ``cdc: error: <message>`` (one line, secrets redacted) and exit with ``code``."""
    from cdc.model.redact import redact

    line = redact(" ".join(str(message).split()))
    click.echo(f"cdc: error: {line}", err=True)
    sys.exit(code)


def run_and_exit(run: Callable[[], object]) -> NoReturn:
    """Run ``run()`` and exit with its code (an int, else 0), mapping every failure to one line."""
    try:
        rc = run()
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(EXIT_INTERRUPTED)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        fail(exc.format_message() + hint, EXIT_USAGE)
    except click.ClickException as exc:
        fail(exc.format_message(), EXIT_USAGE)
    except CdcError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        # stdout closed early (e.g. `cdc tail ... | head`): not an error.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        except OSError:
            pass
        sys.exit(EXIT_OK)
    except SystemExit:
        raise
    except Exception as exc:
        if os.environ.get("CDC_DEBUG"):
            raise
        fail(f"unexpected {type(exc).__name__}: {exc} (set CDC_DEBUG=1 for the traceback)", EXIT_UNEXPECTED)
    sys.exit(rc if isinstance(rc, int) else EXIT_OK)
