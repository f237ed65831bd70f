"""Test entry: ``python -m cdc.cli.serve_json CONFIG.json`` runs the daemon on a Config given as
JSON (the test harness's subprocess daemon; no option parsing, no preflight). Errors and exit
codes as for ``cdc serve`` (cdc.cli.errors)."""

from __future__ import annotations

import logging
import os
import sys

from cdc.cli.errors import fail, run_and_exit
from cdc.errors import EXIT_USAGE


def _run(argv: list[str]) -> int:
    import msgspec

    from cdc.daemon.app import serve
    from cdc.model.config import Config

    if len(argv) != 2:
        fail("usage: python -m cdc.cli.serve_json CONFIG.json", EXIT_USAGE)
    with open(argv[1], "rb") as f:
        config = msgspec.json.decode(f.read(), type=Config)
    logging.basicConfig(level=os.environ.get("CDC_LOG_LEVEL", "WARNING"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(config)


if __name__ == "__main__":  # pragma: no cover
    run_and_exit(lambda: _run(sys.argv))
