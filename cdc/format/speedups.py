"""The optional C extension (``cdc.format._speedups``) and which path runs (pure).

``C`` is the extension module, or None when it was not built (no C compiler at install time)
or ``CDC_NO_SPEEDUPS=1`` is set; ``NAME`` is ``"c"`` or ``"python"`` (``cdc --version`` shows it).
Every caller uses the C function when ``C is not None``, else its Python reference, which
stays the definition of the behaviour: the C code gives the same objects and bytes, or hands
the input back to the Python path (tests/decoders/test_speedups_wal.py,
tests/capture/test_speedups_build.py).
"""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["C", "NAME"]


def _load() -> ModuleType | None:
    if os.environ.get("CDC_NO_SPEEDUPS", "") not in ("", "0"):
        return None
    try:
        from cdc.format import _speedups  # type: ignore[attr-defined]
    except ImportError:
        return None
    # without the built module, the directory of its C sources imports as a namespace package
    if not all(hasattr(_speedups, f) for f in ("scan_simple", "build_plain", "set_wal_types", "set_event_type", "encode_run")):
        return None
    return _speedups


C: ModuleType | None = _load()
NAME = "c" if C is not None else "python"
