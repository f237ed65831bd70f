"""Shared fixtures: a real daemon in-process and as a subprocess, WebSocket/HTTP client helpers.

Everything is real: the daemon binds 127.0.0.1 on a free port, the store is a real RocksDB
made with rocksdict, clients are ``websockets`` and ``http.client``. No fixed sleeps: use
:func:`wait_for` (polls a condition with a bound).

Fixtures:
- ``daemon_factory``: ``d = await daemon_factory(components=[], **config_overrides)`` starts an
  in-process :class:`cdc.app.App` (stopped at teardown). ``components=None`` runs the real
  ones (WalCapture + ops watchers) against ``d.db``.
- ``daemon``: one in-process daemon without components (publish-driven events).
- ``daemon_proc_factory``: ``p = daemon_proc_factory(**config_overrides)`` starts
  ``python -m cdc.cli.serve_json CONFIG.json`` and waits until ``/health/startup`` answers 200;
  ``p.kill9()``, ``p.terminate()``, ``p.restart()``.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import msgspec
import pytest
import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from cdc.daemon.app import App  # noqa: E402
from cdc.delivery.auth import mint_token  # noqa: E402
from cdc.model.config import Config  # noqa: E402

from tests.waiting import TIMEOUT_FACTOR, wait_for, wait_for_sync  # noqa: E402,F401  (re-exported)

SECRET = "test-secret-0123456789abcdef0123456789abcdef"
OPAQUE_TOKEN = "opaque-token-for-tests-42"


def make_store(path: str) -> str:
    """Create a small real RocksDB at ``path`` (closed; its WAL is flushed away)."""
    from rocksdict import Rdict

    db = Rdict(path)
    db["init"] = "1"
    db.close()
    return path


def token(**kw: Any) -> str:
    """An HS256 JWT for the test secret (``admin``, ``values``, ``types``, ``cf``, ``prefix``, ``ttl``)."""
    kw.setdefault("ttl", 3600)
    return mint_token(SECRET, "tester", **kw)


# --------------------------------------------------------------------------- HTTP / WS clients


class HttpResult:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def http_request_sync(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 40.0) -> HttpResult:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return HttpResult(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


async def http_request(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 40.0) -> HttpResult:
    return await asyncio.to_thread(http_request_sync, port, method, path, body, headers, timeout)


async def publish(port: int, tok: str, event: dict[str, Any]) -> HttpResult:
    return await http_request(
        port, "POST", "/publish", json.dumps(event).encode(), {"Authorization": f"Bearer {tok}", "Content-Type": "application/json"}
    )


async def recv_json(ws: Any, timeout: float = 5.0) -> Any:
    raw = await asyncio.wait_for(ws.recv(), timeout * TIMEOUT_FACTOR)
    if isinstance(raw, bytes):
        return msgspec.msgpack.decode(raw)
    return json.loads(raw)


async def recv_events(ws: Any, n: int, timeout: float = 10.0, keep_control: bool = False) -> list[dict[str, Any]]:
    """Receive until ``n`` events (frames with an ``id``; arrays flattened) arrived."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout * TIMEOUT_FACTOR
    while len([e for e in out if "id" in e]) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(out)} of {n} events: {out[-3:]}")
        msg = await recv_json(ws, left)
        items = msg if isinstance(msg, list) else [msg]
        for m in items:
            if "id" in m or keep_control:
                out.append(m)
    return out


class Daemon:
    """A running in-process daemon."""

    def __init__(self, app: App, task: asyncio.Task[Any], tmp: str) -> None:
        self.app = app
        self.task = task
        self.tmp = tmp
        assert app.ctx is not None
        self.ctx = app.ctx
        self.port = app.ctx.port
        self.db = app.config.db
        self.admin = token(admin=True, values=True)
        self.reader = token()

    def ws_url(self, query: str = "", tok: str | None = "") -> str:
        tok = self.admin if tok == "" else tok
        parts = [query] if query else []
        if tok is not None:
            parts.append(f"token={tok}")
        return f"ws://127.0.0.1:{self.port}/ws/events" + ("?" + "&".join(parts) if parts else "")

    def connect(self, query: str = "", tok: str | None = "", **kw: Any) -> Any:
        return websockets.connect(self.ws_url(query, tok), max_size=None, **kw)

    async def emit(self, events: list[Any], flush: bool = True) -> None:
        await self.ctx.bus.emit(events)
        if flush:
            await self.ctx.bus.flush()

    async def stop(self) -> None:
        self.app.stop.set()
        await asyncio.wait_for(self.task, 30)


def base_config(tmp: str, **overrides: Any) -> Config:
    db = overrides.pop("db", None) or make_store(os.path.join(tmp, "db"))
    secret = os.path.join(tmp, "jwt.secret")
    with open(secret, "w") as f:
        f.write(SECRET + "\n")
    tokens = os.path.join(tmp, "tokens")
    with open(tokens, "w") as f:
        f.write(f"# test tokens\n{OPAQUE_TOKEN}\n")
    fields: dict[str, Any] = dict(
        db=db,
        state_dir=os.path.join(tmp, "state"),
        port=0,
        jwt_secret_file=secret,
        tokens_file=tokens,
        heartbeat_ms=15_000,
        shutdown_timeout_s=10.0,
    )
    fields.update(overrides)
    return Config(**fields)


@pytest.fixture
async def daemon_factory(tmp_path: Any) -> AsyncIterator[Callable[..., Any]]:
    started: list[Daemon] = []
    n = 0

    async def make(components: list[Any] | None = (), **overrides: Any) -> Daemon:  # type: ignore[assignment]
        nonlocal n
        n += 1
        tmp = os.path.join(str(tmp_path), f"d{n}")
        os.makedirs(tmp, exist_ok=True)
        cfg = base_config(tmp, **overrides)
        app = App(cfg, components=list(components) if components is not None else None)
        ev = asyncio.Event()
        task = asyncio.create_task(app.run(ev))
        done, _ = await asyncio.wait([task, asyncio.create_task(ev.wait())], timeout=20, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
        d = Daemon(app, task, tmp)
        started.append(d)
        await d.ctx.bus.flush()  # start-up health events are committed before the test starts
        return d

    yield make
    for d in started:
        if not d.task.done():
            await d.stop()


@pytest.fixture
async def daemon(daemon_factory: Callable[..., Any]) -> Daemon:
    return await daemon_factory()


# --------------------------------------------------------------------------- subprocess daemon


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_serving(proc: subprocess.Popen[bytes], port: int, log: Callable[[], str], timeout: float = 20.0) -> None:
    """Wait until a daemon subprocess answers ``/health/startup`` with 200; fail at once if it exits."""

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}: {log()[-2000:]}")
        try:
            return http_request_sync(port, "GET", "/health/startup", timeout=2).status == 200
        except OSError:
            return False

    wait_for_sync(up, timeout, "daemon start-up")


class DaemonProcess:
    """``python -m cdc.cli.serve_json CONFIG.json`` in a subprocess on a fixed free port."""

    def __init__(self, tmp: str, **overrides: Any) -> None:
        overrides.setdefault("port", free_port())
        self.config = base_config(tmp, **overrides)
        self.port = self.config.port
        self.db = self.config.db
        self.cfg_path = os.path.join(tmp, "config.json")
        with open(self.cfg_path, "wb") as f:
            f.write(msgspec.json.encode(self.config))
        self.log_path = os.path.join(tmp, "daemon.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin = token(admin=True, values=True)

    def start(self) -> DaemonProcess:
        env = dict(os.environ, PYTHONPATH=ROOT, CDC_LOG_LEVEL="INFO")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "cdc.cli.serve_json", self.cfg_path], stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

        wait_serving(self.proc, self.port, self.log)
        return self

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self._log.close()
        return rc

    def restart(self) -> DaemonProcess:
        return self.start()

    def ws_url(self, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/ws/events?" + (query + "&" if query else "") + f"token={self.admin}"


@pytest.fixture
def daemon_proc_factory(tmp_path: Any) -> Iterator[Callable[..., DaemonProcess]]:
    procs: list[DaemonProcess] = []
    n = 0

    def make(**overrides: Any) -> DaemonProcess:
        nonlocal n
        n += 1
        tmp = os.path.join(str(tmp_path), f"p{n}")
        os.makedirs(tmp, exist_ok=True)
        p = DaemonProcess(tmp, **overrides).start()
        procs.append(p)
        return p

    yield make
    for p in procs:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)


# --------------------------------------------------------------------------- C++ writers


@pytest.fixture(scope="session")
def cxx_writer_exe(request: Any, tmp_path_factory: Any) -> str:
    """The C++ RocksDB writer (tests/cxx), compiled once per session; skips when it cannot be built."""
    from tests.cxx import build

    cache = getattr(request.config, "cache", None)
    where = str(cache.mkdir("cdc-cxx")) if cache is not None else str(tmp_path_factory.mktemp("cdc-cxx"))
    return build(where)


@pytest.fixture
def cxx_writer(cxx_writer_exe: str, tmp_path: Any) -> Iterator[Callable[..., Any]]:
    """``w = cxx_writer(db_dir=None, policy="prepared", cfs=(), wal_ttl=0)`` -> tests.cxx.CxxWriter
    (killed at teardown). See tests/cxx/__init__.py for its command language."""
    from tests.cxx import CxxWriter

    writers: list[CxxWriter] = []

    def make(db_dir: str | None = None, **kw: Any) -> CxxWriter:
        w = CxxWriter(cxx_writer_exe, db_dir or str(tmp_path / "db"), **kw)
        writers.append(w)
        return w

    yield make
    for w in writers:
        w.kill()
