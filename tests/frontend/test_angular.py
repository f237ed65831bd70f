"""The Angular example (examples/angular) type-checks strictly against cdc.d.ts, and misuse fails.

The app's sources are copied with cdc/static (same relative layout: src/app/cdc/client.d.ts
re-exports ../../../../../cdc/static/cdc.d.ts) into a temp tree that borrows the example's
node_modules (installed with ``npm ci`` from the committed package-lock.json when missing).
``tsc -p tsconfig.app.json`` must pass; a file with deliberate type errors must fail, so the
check has teeth. The app itself is built and driven in Chromium by test_angular_app.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds / type-checks the Angular example

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "angular"


@pytest.fixture(scope="module")
def angular_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    npm = shutil.which("npm")
    modules = EXAMPLE / "node_modules"
    if not (modules / "typescript").exists():
        if npm is None:
            pytest.skip("npm is not installed (apt-get install nodejs npm); the Angular example is not type-checked")
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=EXAMPLE, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, f"npm ci failed (needs the npm registry or cache):\n{proc.stderr[-2000:]}"
    root = tmp_path_factory.mktemp("ng")
    work = root / "examples" / "angular"
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("node_modules", "dist", ".angular"))
    (work / "node_modules").symlink_to(modules)
    shutil.copytree(ROOT / "cdc" / "static", root / "cdc" / "static")
    return work


def _tsc(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(work / "node_modules" / ".bin" / "tsc"), *args], cwd=work, capture_output=True, text=True, timeout=180
    )


def test_app_type_checks(angular_tree: Path) -> None:
    proc = _tsc(angular_tree, "--noEmit", "-p", "tsconfig.app.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_type_errors_are_caught(angular_tree: Path) -> None:
    bad = angular_tree / "src" / "app" / "bad.ts"
    bad.write_text(
        "import { WebSocketService } from './cdc/websocket.service';\n"
        "declare const ws: WebSocketService;\n"
        "ws.onKeyChanges().subscribe((ev) => { const n: number = ev.key; console.log(n, ev.nonexistent); });\n"
        "ws.onHealthEvents().subscribe((ev) => { if (ev.status === 'sick') console.log(ev); });\n"
        "const s: 'up' = ws.status();\n"
    )
    proc = _tsc(angular_tree, "--noEmit", "-p", "tsconfig.app.json")
    out = proc.stdout
    assert proc.returncode != 0
    assert "ev.key" in out or "TS2322" in out, out
    assert "nonexistent" in out, out
    assert "sick" in out or "TS2367" in out, out
    assert '"up"' in out, out


def test_client_declarations_compile_standalone(angular_tree: Path) -> None:
    proc = _tsc(angular_tree, "--noEmit", "--strict", "--lib", "ES2022,DOM", "../../cdc/static/cdc.d.ts")
    assert proc.returncode == 0, proc.stdout + proc.stderr
