"""Fixtures for the CLI/ops tests: real stores (rocksdict / plyvel) and a way to run `cdc`."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.waiting import wait_for_sync

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


# --------------------------------------------------------------------------- real daemon

import json  # noqa: E402
import signal  # noqa: E402

from tests.harness.daemon import DaemonProcess, child_env  # noqa: E402
from tests.harness.net import free_port, http_get  # noqa: E402,F401  (re-exported)
from tests.harness.writers import StoreWriter  # noqa: E402


def wait_for(cond, timeout: float = 15.0, what: str = "condition"):
    return wait_for_sync(cond, timeout, what)


def cdc_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return child_env(extra)


@pytest.fixture
def store(tmp_path: Path):
    """A live RocksDB store held open by a writer subprocess (its WAL stays on disk)."""
    w = StoreWriter(tmp_path / "db", cfs=["users"]).start()
    w.put("boot", "1")
    yield w
    w.kill()


@pytest.fixture
def serve_factory(tmp_path: Path, store, secret_file: Path):
    """``d = serve_factory(*extra_args, env=, port=, ready=, state=)``: ``python -m cdc serve`` against
    the ``store`` writer's DB, as a :class:`DaemonProcess` ready on ``/health/ready`` (killed at teardown)."""
    started: list[DaemonProcess] = []

    def make(*extra: str, env: dict[str, str] | None = None, port: int | None = None, ready: bool = True,
             state: str = "state") -> DaemonProcess:
        port = port or free_port()
        args = ["--db", store.path, "--state-dir", str(tmp_path / state), "--port", str(port), *extra]
        e = {"CDC_JWT_SECRET_FILE": str(secret_file), "CDC_LOG_LEVEL": "info", **(env or {})}
        d = DaemonProcess.serve(args, port, tmp_path / f"daemon-{len(started)}.log", env=child_env(e), ready_path="/health/ready")
        started.append(d)
        return d.start(ready=ready)

    yield make
    for d in started:
        if d.running():
            d.stop(signal.SIGKILL)


@pytest.fixture
def admin_token(secret_file: Path) -> str:
    r = run_cdc("token", "--secret-file", str(secret_file), "--admin", "--values", "--ttl", "600")
    assert r.code == 0, r.err
    return r.out.strip()


def ndjson(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@contextlib.contextmanager
def debug_serve(tmp_path: Path, db: Path, *args: str, preexec_fn: Any = None) -> Iterator[tuple[int, subprocess.Popen[bytes], Path]]:
    """``cdc serve --log-level debug --log-format json`` in a subprocess on a free port, with a clean
    environment and its log in ``tmp_path/daemon.log``; yields (port, process, log path) once it
    serves and kills it afterwards. ``args`` adds options (auth sources, ...)."""
    from tests.harness.daemon import wait_serving

    port = free_port()
    log_path = tmp_path / "daemon.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_") and k not in ("NOTIFY_SOCKET", "STATE_DIRECTORY", "JOURNAL_STREAM")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cdc", "serve", "--db", str(db), "--state-dir", str(tmp_path / "state"),
             "--port", str(port), *args, "--log-level", "debug", "--log-format", "json"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO), preexec_fn=preexec_fn,
        )
    try:
        wait_serving(proc, port, log_path.read_text)
        yield port, proc, log_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
