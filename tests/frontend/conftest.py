"""Fixtures for the frontend tests: a real daemon subprocess and real headless Chromium.

- ``Daemon`` (:class:`FrontendDaemon`): ``python -m cdc serve`` on a free loopback port with its own
  store, a tokens file and a JWT secret; a :class:`tests.harness.daemon.DaemonProcess`, so it
  restarts on the same port and state dir (kill -9 / SIGSTOP for failure tests).
- ``serve_daemon_factory``: ``serve_daemon_factory(*extra_args, name="d")`` -> a started one;
  ``daemon``: one of them.
- ``browser``: one headless Chromium (Debian's /usr/bin/chromium via Playwright; never a
  downloaded browser) per test session; each test gets a fresh context.
- ``harness``: a blank page on the daemon's origin (served by a Playwright route, so the page
  and ``/client.js`` share the origin) with helpers that record what a CdcClient delivers.

Waits are bounded polls of a condition, never fixed sleeps.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cdc.delivery.auth import mint_token
from tests.harness.daemon import DaemonProcess
from tests.harness.net import free_port

ROOT = Path(__file__).resolve().parents[2]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
from tests.harness.waiting import TIMEOUT_FACTOR  # noqa: E402,F401  (re-exported)
from tests.harness.waiting import wait_for_sync as wait_for  # noqa: E402,F401  (re-exported)
ARTIFACTS = ROOT / "test-artifacts"
TOKEN = "frontend-test-token-0123456789abcdef"
SECRET = "frontend-test-secret-0123456789abcdef0123456789"


def refused_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    return free_port()


class FrontendDaemon(DaemonProcess):
    """``cdc serve`` under ``tmp`` with its own (empty) store, tokens file and JWT secret; ``extra``
    CLI options may be changed before ``start()`` / ``restart()``."""

    def __init__(self, tmp: Path, extra: list[str] | None = None) -> None:
        self.tmp = tmp
        self.db = tmp / "db"
        self.state = tmp / "state"
        self.extra = list(extra or [])
        self.db.mkdir(parents=True, exist_ok=True)
        tokens = tmp / "tokens"
        tokens.write_text(f"# test tokens\n{TOKEN}\n")
        secret = tmp / "jwt-secret"
        secret.write_text(SECRET + "\n")
        self.tokens_file, self.secret_file = tokens, secret
        admin = mint_token(SECRET, subject="frontend-tests", admin=True, values=True)
        super().__init__([], free_port(), tmp / "daemon.log", env=dict(os.environ), cwd=tmp, ready_path="/health/live",
                         ready_timeout=20.0, admin=admin)

    @property
    def admin_token(self) -> str:
        return self.admin

    @property
    def ws_endpoint(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/events"

    def start(self, ready: bool = True) -> FrontendDaemon:
        if not any(self.db.iterdir()):
            _create_store(self.db)
        self.argv = [
            "-m", "cdc", "serve",
            "--db", str(self.db), "--state-dir", str(self.state),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--tokens-file", str(self.tokens_file), "--jwt-secret-file", str(self.secret_file),
            *self.extra,
        ]  # fmt: skip
        super().start(ready)
        return self

    # -- HTTP helpers
    def publish(self, event: dict[str, Any], token: str | None = None) -> int:
        req = urllib.request.Request(
            self.base + "/publish",
            data=json.dumps(event).encode(),
            headers={"Authorization": f"Bearer {token or self.admin_token}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 202, r.status
            return int(json.loads(r.read())["id"])

    def metrics(self) -> str:
        with urllib.request.urlopen(self.base + "/metrics", timeout=5) as r:
            return r.read().decode()

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=5) as r:
            return json.loads(r.read())


Daemon = FrontendDaemon  # the name the frontend tests use


def _create_store(path: Path) -> None:
    """An empty RocksDB store (created by a short-lived rocksdict process)."""
    code = "import sys, rocksdict; db = rocksdict.Rdict(sys.argv[1]); db.close()"
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)


@pytest.fixture
def serve_daemon_factory(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    made: list[Daemon] = []

    def make(*extra: str, name: str = "d") -> Daemon:
        d = Daemon(tmp_path / name, list(extra))
        made.append(d)
        return d.start()

    yield make
    for d in made:
        d.stop()


@pytest.fixture
def daemon(serve_daemon_factory: Callable[..., Daemon]) -> Daemon:
    return serve_daemon_factory()


# --------------------------------------------------------------------------- browser


@pytest.fixture(scope="package")  # not session: a live sync_playwright loop breaks later asyncio tests
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    yield ctx
    ctx.close()


# The harness page is a real response from the daemon (its /health/live JSON document), so the
# page's origin and address space are the daemon's: a Playwright-fulfilled page would count as a
# public page and Chromium's Local Network Access checks would block its loopback WebSocket.
HARNESS_PATH = "/health/live"
HARNESS_JS = """async () => {
    window.cdcModule = await import("/client.js");
    window.ready = true;
}"""

RXJS_BUNDLE = ROOT / "examples" / "angular" / "node_modules" / "rxjs" / "dist" / "bundles" / "rxjs.umd.min.js"


class Harness:
    """A page on the daemon's origin with /client.js loaded and recording helpers."""

    def __init__(self, page: Any, daemon: Daemon) -> None:
        self.page = page
        self.daemon = daemon

    def start_client(self, token: str | None = TOKEN, **options: Any) -> None:
        """Create window.client = new CdcClient(options) that records into window.rec, then connect."""
        self.page.evaluate(
            """([opts, token]) => {
                const { CdcClient } = window.cdcModule;
                if (opts.spyFrames) {
                    // Count frames as they come off the wire (arrays = batch=1 frames).
                    delete opts.spyFrames;
                    window.frames_ = { text: 0, arrays: 0 };
                    const Native = window.WebSocket;
                    opts.WebSocket = class extends Native {
                        constructor(...args) {
                            super(...args);
                            this.addEventListener("message", (m) => {
                                window.frames_.text++;
                                if (typeof m.data === "string" && m.data[0] === "[") window.frames_.arrays++;
                            });
                        }
                    };
                }
                const client = new CdcClient(opts);
                const rec = { events: [], statuses: [], resets: [], errors: [], control: [] };
                client.events.subscribe((ev) => rec.events.push(ev));
                client.status.subscribe((s) => rec.statuses.push(s));
                client.resets.subscribe((r) => rec.resets.push(r));
                client.errors.subscribe((e) => rec.errors.push(e));
                client.control.subscribe((f) => { if (f.type !== "heartbeat" && f.type !== "pong") rec.control.push(f); });
                window.client = client;
                window.rec = rec;
                if (token !== null) client.connect(token);
            }""",
            [options, token],
        )

    def rec(self, what: str) -> Any:
        return self.page.evaluate(f"window.rec.{what}")

    def status(self) -> str:
        return str(self.page.evaluate("window.client.status.value"))

    def wait_status(self, status: str, timeout_s: float = 10.0) -> None:
        wait_for(lambda: self.status() == status, timeout_s, what=f"status {status!r} (now {self.status()!r})")

    def event_count(self) -> int:
        return int(self.page.evaluate("window.rec.events.length"))

    def wait_events(self, n: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        wait_for(lambda: self.event_count() >= n, timeout_s, what=f"{n} events (have {self.event_count()})")
        return list(self.rec("events"))


@pytest.fixture
def harness_factory(context: Any) -> Callable[[Daemon], Harness]:
    def make(daemon: Daemon) -> Harness:
        page = context.new_page()
        page.goto(daemon.base + HARNESS_PATH)
        page.evaluate(HARNESS_JS)
        page.wait_for_function("window.ready === true", timeout=10_000)
        return Harness(page, daemon)

    return make


@pytest.fixture
def harness(harness_factory: Callable[[Daemon], Harness], daemon: Daemon) -> Harness:
    return harness_factory(daemon)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def node_available() -> bool:
    return shutil.which("node") is not None


class CountingProxy:
    """A loopback TCP forwarder that counts the connections made through it (server-side view).

    Used to prove there is no retry storm: every WebSocket attempt of the browser is one
    accepted TCP connection here.
    """

    def __init__(self, target_port: int) -> None:
        import threading

        self.target_port = target_port
        self.connections = 0
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self._closed = False
        self._threads: list[threading.Thread] = []
        t = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        import threading

        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self._closed = True
        self._sock.close()


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[int], CountingProxy]]:
    made: list[CountingProxy] = []

    def make(port: int) -> CountingProxy:
        p = CountingProxy(port)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()
