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

from tests.waiting import wait_for_sync

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
import socket  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))
from writer import StoreWriter  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout: float = 15.0, what: str = "condition"):
    return wait_for_sync(cond, timeout, what)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def cdc_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_") and k not in ("NOTIFY_SOCKET", "STATE_DIRECTORY")}
    env.update(extra or {})
    return env


class Daemon:
    """`python -m cdc serve ...` as a subprocess; stderr goes to a file for inspection."""

    def __init__(self, args: list[str], env: dict[str, str], port: int, log_path: Path) -> None:
        self.args, self.env, self.port, self.log_path = args, env, port, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{port}"

    def start(self, ready: bool = True) -> Daemon:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "cdc", "serve", *self.args], env=cdc_env(self.env),
                                     stdout=self._log, stderr=self._log, cwd=str(REPO))
        if ready:
            wait_for(lambda: self.proc.poll() is not None or http_get(self.base + "/health/ready")[0] == 200,
                     timeout=30, what="daemon ready")
            assert self.proc.poll() is None, self.log()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int | None = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` (None: already signalled) and wait for the exit code."""
        assert self.proc is not None
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._log.close()
        return rc


@pytest.fixture
def store(tmp_path: Path):
    """A live RocksDB store held open by a writer subprocess (its WAL stays on disk)."""
    w = StoreWriter(tmp_path / "db", cfs=["users"]).start()
    w.put("boot", "1")
    yield w
    w.kill()


@pytest.fixture
def daemon_factory(tmp_path: Path, store, secret_file: Path):
    started: list[Daemon] = []

    def make(*extra: str, env: dict[str, str] | None = None, port: int | None = None, ready: bool = True,
             state: str = "state") -> Daemon:
        port = port or free_port()
        args = ["--db", store.path, "--state-dir", str(tmp_path / state), "--port", str(port), *extra]
        e = {"CDC_JWT_SECRET_FILE": str(secret_file), "CDC_LOG_LEVEL": "info", **(env or {})}
        d = Daemon(args, e, port, tmp_path / f"daemon-{len(started)}.log").start(ready=ready)
        started.append(d)
        return d

    yield make
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
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
    from tests.conftest import wait_serving

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
