"""The command line (click): ``serve``, ``edge``, ``config``, ``dump-wal``, ``tail``, ``token``,
``publish``, ``demo``.

Invariant: the only place that calls ``sys.exit`` and maps errors to exit codes
(``cli/errors.py``: every ``CdcError`` carries its ``exit_code``); a user error is one line on
stderr. May import everything.
"""

from cdc.cli.main import main

__all__ = ["main"]
