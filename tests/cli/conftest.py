"""Fixtures for the CLI/ops tests: real stores (rocksdict / plyvel) and a way to run `cdc`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cdc(*args: str, env: dict[str, str] | None = None, timeout: float = 30, cwd: str | None = None,
            input: str | None = None) -> Result:
    """Run `python -m cdc ARGS` as a real subprocess (no inherited CDC_* variables)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CDC_") and k not in ("NOTIFY_SOCKET", "STATE_DIRECTORY")}
    base.update(env or {})
    p = subprocess.run([sys.executable, "-m", "cdc", *args], capture_output=True, text=True, env=base,
                       timeout=timeout, cwd=cwd or str(REPO), input=input)
    return Result(p.returncode, p.stdout, p.stderr)


def assert_one_line_error(r: Result, code: int, *needles: str) -> None:
    assert r.code == code, (r.code, r.err)
    assert "Traceback" not in r.err and "Traceback" not in r.out
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert len(lines) == 1, r.err
    assert lines[0].startswith("cdc: error: "), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture
def rocks_db(tmp_path: Path) -> Path:
    """A small closed RocksDB store (WAL flushed away) with a couple of keys."""
    from rocksdict import Rdict

    path = tmp_path / "rocks"
    db = Rdict(str(path))
    db[b"k1"] = b"v1"
    db[b"k2"] = b"v2"
    db.close()
    return path


@pytest.fixture
def level_db(tmp_path: Path) -> Path:
    plyvel = pytest.importorskip("plyvel")
    path = tmp_path / "level"
    db = plyvel.DB(str(path), create_if_missing=True)
    db.put(b"a", b"1")
    db.close()
    return path


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    p = tmp_path / "jwt-secret"
    p.write_text("test-secret-0123456789-abcdefghijklmnop\n")
    return p


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    p = tmp_path / "tokens"
    p.write_text("# comment\nopaque-token-1\n\nopaque-token-2\n")
    return p


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for k in list(os.environ):
        if k.startswith("CDC_") or k in ("NOTIFY_SOCKET", "STATE_DIRECTORY", "WATCHDOG_USEC", "WATCHDOG_PID"):
            monkeypatch.delenv(k)
    yield
