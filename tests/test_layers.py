"""The layering of cdc/ (pyproject.toml [tool.importlinter]; docs/design.md) holds: a pure module
importing I/O, or a lower ring importing a higher one, fails here and in CI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("lint-imports is missing: pip install -e '.[test]' installs import-linter")
    p = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]


def test_no_dynamic_wiring_in_cdc():
    """Wiring is by direct imports: no importlib, no __import__ in the package."""
    offenders = []
    for path in (ROOT / "cdc").rglob("*.py"):
        text = path.read_text()
        for needle in ("importlib", "__import__("):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not offenders, offenders
