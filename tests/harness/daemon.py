"""The daemon for tests: in-process (:class:`InProcessDaemon`) and as a subprocess (:class:`DaemonProcess`).

Everything is real: the daemon binds 127.0.0.1, the store is a real RocksDB made with rocksdict,
clients are ``websockets`` and ``http.client``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
import websockets

from cdc.daemon.app import App
from cdc.delivery.auth import mint_token
from cdc.model.config import Config
from tests.harness.net import free_port, http_request_sync
from tests.harness.waiting import wait_for_sync

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``CDC_*`` / systemd variables, plus ``extra``."""
    drop = ("NOTIFY_SOCKET", "STATE_DIRECTORY", "JOURNAL_STREAM")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_") and k not in drop}
    env.update(extra or {})
    return env


def base_config(tmp: str, **overrides: Any) -> Config:
    """A Config under ``tmp``: a fresh store (unless ``db=``), the test secret, an opaque token."""
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


# --------------------------------------------------------------------------- in-process


class InProcessDaemon:
    """A running in-process :class:`cdc.daemon.app.App` (``await InProcessDaemon.start(tmp, ...)``)."""

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

    @classmethod
    async def start(cls, tmp: str, components: Sequence[Any] | None = (), **overrides: Any) -> InProcessDaemon:
        """Start an App on a free port with ``base_config(tmp, **overrides)``; ``components=None``
        runs the real ones (WalCapture + ops watchers) against ``db``. Returns once it serves and
        its start-up events are committed."""
        os.makedirs(tmp, exist_ok=True)
        cfg = base_config(tmp, **overrides)
        app = App(cfg, components=list(components) if components is not None else None)
        ev = asyncio.Event()
        task = asyncio.create_task(app.run(ev))
        done, _ = await asyncio.wait([task, asyncio.create_task(ev.wait())], timeout=20, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
        d = cls(app, task, tmp)
        await d.ctx.bus.flush()
        return d

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


# --------------------------------------------------------------------------- subprocess


def wait_serving(proc: subprocess.Popen[bytes], port: int, log: Callable[[], str], timeout: float = 20.0, path: str = "/health/startup") -> None:
    """Wait until a daemon subprocess answers ``path`` with 200; fail at once if it exits."""

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}: {log()[-3000:]}")
        try:
            return http_request_sync(port, "GET", path, timeout=2).status == 200
        except OSError:
            return False

    wait_for_sync(up, timeout, f"daemon on port {port} answering {path}")


class DaemonProcess:
    """The daemon as a subprocess on a fixed port, restartable on the same port and state.

    ``DaemonProcess.serve(args, ...)`` runs ``python -m cdc serve ARGS``;
    ``DaemonProcess.from_config(tmp, **fields)`` runs ``python -m cdc.cli.serve_json CONFIG.json``.
    ``start()`` waits until ``ready_path`` answers 200 (unless ``ready=False``); ``kill9()``,
    ``pause()`` / ``resume()`` (SIGSTOP/SIGCONT), ``terminate()`` / ``stop(sig)`` return the exit
    code; ``restart()`` starts it again; ``timeline`` records what was done to it.
    """

    def __init__(self, argv: list[str], port: int, log_path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None,
                 cwd: str | os.PathLike[str] | None = None, ready_path: str = "/health/startup", ready_timeout: float = 30.0,
                 admin: str | None = None) -> None:
        self.argv = argv
        self.port = port
        self.log_path = str(log_path)
        self.env = dict(env) if env is not None else child_env()
        self.cwd = str(cwd or ROOT)
        self.ready_path = ready_path
        self.ready_timeout = ready_timeout
        self.admin = admin if admin is not None else token(admin=True, values=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.timeline: list[tuple[float, str]] = []  # (unix time, what happened)
        self.incarnation = 0

    @classmethod
    def serve(cls, args: Sequence[str], port: int | None = None, log_path: str | os.PathLike[str] = "daemon.log", **kw: Any) -> DaemonProcess:
        port = port or free_port()
        return cls(["-m", "cdc", "serve", *args], port, log_path, **kw)

    @classmethod
    def from_config(cls, tmp: str, **overrides: Any) -> DaemonProcess:
        overrides.setdefault("port", free_port())
        config = base_config(tmp, **overrides)
        cfg_path = os.path.join(tmp, "config.json")
        with open(cfg_path, "wb") as f:
            f.write(msgspec.json.encode(config))
        env = dict(os.environ, PYTHONPATH=ROOT, CDC_LOG_LEVEL="INFO")
        p = cls(["-m", "cdc.cli.serve_json", cfg_path], config.port, os.path.join(tmp, "daemon.log"), env=env, ready_timeout=20.0)
        p.config, p.cfg_path, p.db = config, cfg_path, config.db
        return p

    # -- lifecycle
    def note(self, what: str) -> None:
        self.timeline.append((time.time(), what))

    def start(self, ready: bool = True) -> DaemonProcess:
        self.incarnation += 1
        with open(self.log_path, "ab") as log:
            if self.incarnation > 1:
                log.write(b"\n===== harness: start incarnation %d =====\n" % self.incarnation)
                log.flush()
            self.proc = subprocess.Popen([sys.executable, *self.argv], stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd)
        t0 = time.monotonic()
        if ready:
            wait_serving(self.proc, self.port, self.log, self.ready_timeout, self.ready_path)
            self.note(f"incarnation {self.incarnation} (pid {self.proc.pid}) serving after {time.monotonic() - t0:.2f} s")
        else:
            self.note(f"incarnation {self.incarnation} (pid {self.proc.pid}) started")
        return self

    def restart(self) -> DaemonProcess:
        """Stop it if it runs (SIGTERM), then start again on the same port."""
        if self.running():
            self.stop()
        return self.start()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait(10)
        self.note(f"kill -9 pid {self.proc.pid}")

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.note(f"SIGSTOP pid {self.proc.pid}")

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.note(f"SIGCONT pid {self.proc.pid}")

    def stop(self, sig: int | None = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Send ``sig`` (None: already signalled) and wait for the exit code (SIGKILL after
        ``timeout``); None when it was never started."""
        if self.proc is None:
            return None
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait (raises on timeout: a daemon that does not stop is a failure)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def shutdown(self) -> None:
        """Teardown: kill it if it still runs."""
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    # -- addresses
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/ws/events?" + (query + "&" if query else "") + f"token={self.admin}"
