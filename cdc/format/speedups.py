"""The optional C hot path (``cdc.format._speedups``) or None.

``C`` is the extension module when it was built (``pip install -e .`` with a C compiler) and
the environment does not say ``CDC_NO_SPEEDUPS=1``; every caller then uses its functions, else
the pure-Python reference functions (same results: differential tests check it). ``NAME`` says
which path runs (``cdc --version``, the ``hello`` frame and ``/metrics`` report it).
"""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["C", "NAME", "DISABLED"]

DISABLED = os.environ.get("CDC_NO_SPEEDUPS", "") not in ("", "0")
C: ModuleType | None = None
if not DISABLED:
    try:
        from cdc.format import _speedups as C  # type: ignore[attr-defined,no-redef]
    except ImportError:  # not built (no compiler at install time): the Python path
        C = None
NAME = "c" if C is not None else "python"
