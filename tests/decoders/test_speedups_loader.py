"""cdc/format/speedups.py: which path runs (C extension or pure Python), and its switches."""

from __future__ import annotations

import os
import subprocess
import sys
import types

from cdc.format import speedups


def _probe(env_extra: dict[str, str]) -> str:
    env = {**os.environ, **env_extra}
    code = "from cdc.format import speedups; print(speedups.NAME, speedups.C is None)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60).stdout.strip()


def test_no_speedups_env_selects_python():
    assert _probe({"CDC_NO_SPEEDUPS": "1"}) == "python True"
    built = speedups.C is not None or os.environ.get("CDC_NO_SPEEDUPS", "") not in ("", "0")
    if built:  # the extension exists here: "0" or "" keeps it
        want = _probe({"CDC_NO_SPEEDUPS": "0"})
        assert want in ("c False", "python True")


def test_a_module_without_the_functions_is_not_the_extension(monkeypatch):
    # the source directory cdc/format/_speedups/ imports as a namespace package when the
    # extension was not built: that must read as "no extension"
    monkeypatch.delenv("CDC_NO_SPEEDUPS", raising=False)
    import cdc.format

    fake = types.ModuleType("cdc.format._speedups")
    monkeypatch.setitem(sys.modules, "cdc.format._speedups", fake)
    monkeypatch.setattr(cdc.format, "_speedups", fake, raising=False)
    assert speedups._load() is None


def test_name_matches_module():
    assert speedups.NAME == ("c" if speedups.C is not None else "python")
