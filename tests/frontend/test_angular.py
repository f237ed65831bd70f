"""The Angular WebSocketService example type-checks with tsc against rxjs and @angular/core.

The example is copied with cdc/static/cdc.d.ts into a temp tree (same relative layout), its
committed package-lock.json is installed with ``npm ci`` and ``tsc --noEmit`` must pass. A
deliberately wrong use of the event types must fail, so the check has teeth.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "angular"


@pytest.fixture(scope="module")
def angular_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed (apt-get install nodejs npm); the Angular example is not type-checked")
    root = tmp_path_factory.mktemp("ng")
    shutil.copytree(EXAMPLE, root / "examples" / "angular", ignore=shutil.ignore_patterns("node_modules"))
    (root / "cdc" / "static").mkdir(parents=True)
    shutil.copy(ROOT / "cdc" / "static" / "cdc.d.ts", root / "cdc" / "static" / "cdc.d.ts")
    work = root / "examples" / "angular"
    proc = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"],
        cwd=work, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"npm ci failed (needs the npm registry or cache):\n{proc.stderr[-2000:]}"
    return work


def _tsc(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(work / "node_modules" / ".bin" / "tsc"), *args], cwd=work, capture_output=True, text=True, timeout=120
    )


def test_websocket_service_type_checks(angular_tree: Path) -> None:
    proc = _tsc(angular_tree, "--noEmit", "-p", "tsconfig.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_type_errors_are_caught(angular_tree: Path) -> None:
    bad = angular_tree / "bad.ts"
    bad.write_text(
        "import { WebSocketService } from './websocket.service';\n"
        "declare const ws: WebSocketService;\n"
        "ws.onKeyChanges().subscribe((ev) => { const n: number = ev.key; console.log(n, ev.nonexistent); });\n"
        "ws.onHealthEvents().subscribe((ev) => { if (ev.status === 'sick') console.log(ev); });\n"
    )
    cfg = angular_tree / "tsconfig.bad.json"
    cfg.write_text('{"extends": "./tsconfig.json", "files": ["bad.ts"]}')
    proc = _tsc(angular_tree, "--noEmit", "-p", str(cfg))
    out = proc.stdout
    assert proc.returncode != 0
    assert "ev.key" in out or "TS2322" in out, out
    assert "nonexistent" in out, out
    assert "sick" in out or "TS2367" in out, out


def test_client_declarations_compile_standalone(angular_tree: Path) -> None:
    proc = _tsc(
        angular_tree, "--noEmit", "--strict", "--lib", "ES2022,DOM", "../../cdc/static/cdc.d.ts"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
