"""The Angular example app (examples/angular, Angular CLI 21, zoneless) in real headless Chromium.

The app's production build (``ng build``; built here when ``dist/`` is missing or older than its
sources) is served by a small static server on its own loopback origin, and pointed with
``?cdc=`` at a real ``cdc serve --allow-origin <app origin>`` subprocess on another port, which
tails a RocksDB store a real writer subprocess changes. Each page must show live events; the
status must go reconnecting -> connected across kill -9 + restart; with WebSocket blocked the app
long-polls cross-origin; a bad token ends as ``unauthorized``; without ``--allow-origin`` a
cross-origin page still gets the WebSocket but not the polling fallback nor ``/health``.

Screenshots of each page: ``test-artifacts/angular-<page>.png``.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cdc.delivery.auth import mint_token
from tests.harness.writers import StoreWriter

from .conftest import SECRET, TOKEN, Daemon, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "angular"
DIST = APP / "dist" / "cdc-angular-example" / "browser"  # ng build (zoneless, Angular's default)
DIST_ZONE = APP / "dist" / "cdc-angular-example-zone" / "browser"  # ng build --configuration production,zone
SOURCES = [APP / "src", APP / "angular.json", APP / "package-lock.json", ROOT / "cdc" / "static" / "client.js"]
PAGES = ["dashboard", "keys", "compaction", "health", "snapshots"]


# --------------------------------------------------------------------------- build + serve


def _newest_source_mtime() -> float:
    newest = 0.0
    for src in SOURCES:
        paths = src.rglob("*") if src.is_dir() else [src]
        for p in paths:
            if p.is_file():
                newest = max(newest, p.stat().st_mtime)
    return newest


def _node_ok() -> bool:
    """Angular CLI 21 runs on Node ^20.19, ^22.12 or >= 24."""
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None or shutil.which("npx") is None:
        return False
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    m = re.match(r"v(\d+)\.(\d+)", out)
    if not m:
        return False
    major, minor = int(m.group(1)), int(m.group(2))
    return (major == 20 and minor >= 19) or (major == 22 and minor >= 12) or major >= 24


def _build(dist: Path = DIST, configuration: str = "production") -> None:
    index = dist / "index.html"
    if index.exists() and index.stat().st_mtime >= _newest_source_mtime():
        return
    if not _node_ok():
        if index.exists():
            return  # stale but usable; nothing to rebuild it with
        pytest.skip("examples/angular is not built (no dist/) and there is no npm with Node ^20.19/^22.12/>=24")
    npm, npx = shutil.which("npm") or "npm", shutil.which("npx") or "npx"
    env = {**os.environ, "NG_CLI_ANALYTICS": "false", "PUPPETEER_SKIP_DOWNLOAD": "1", "CI": "1"}
    if not (APP / "node_modules" / "@angular" / "build").exists():
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=APP, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, f"npm ci failed (needs the npm registry or cache):\n{proc.stderr[-3000:]}"
    cmd = [npx, "ng", "build", "--configuration", configuration]
    proc = subprocess.run(cmd, cwd=APP, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"ng build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert index.exists()


class _SpaHandler(http.server.SimpleHTTPRequestHandler):
    """Static files of dist/; any other path without a file extension gets index.html (routes)."""

    def send_head(self) -> Any:
        path = self.translate_path(self.path)
        if not os.path.exists(path) and "." not in os.path.basename(self.path.split("?")[0]):
            self.path = "/index.html"
        return super().send_head()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class AppServer:
    """The built app on its own origin (http://127.0.0.1:<port>), a thread of this process."""

    def __init__(self, dist: Path = DIST) -> None:
        handler = functools.partial(_SpaHandler, directory=str(dist))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="angular-app", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module", params=["zoneless"])
def app_server(request: pytest.FixtureRequest) -> Iterator[AppServer]:
    if request.param == "zone":
        _build(DIST_ZONE, "production,zone")
        s = AppServer(DIST_ZONE)
    else:
        _build()
        s = AppServer()
    yield s
    s.close()


class Stack:
    """Daemon + writer + the app's origin; ``open()`` signs a fresh page in."""

    def __init__(self, daemon: Daemon, writer: StoreWriter, app: AppServer, context: Any, snaps: Path) -> None:
        self.daemon, self.writer, self.app, self.context, self.snaps = daemon, writer, app, context, snaps
        self.errors: list[str] = []

    def url(self, path: str = "/") -> str:
        return f"{self.app.origin}{path}?cdc={self.daemon.base}"

    def open(self, token: str = TOKEN, page: Any = None) -> Any:
        page = page or self.context.new_page()
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.goto(self.url("/login"))
        page.fill("#token-input", token)
        page.click("#login button[type=submit]")
        return page


def status(page: Any) -> str:
    return str(page.locator("#status").inner_text()).strip()


def wait_status(page: Any, want: str, timeout_s: float = 15) -> None:
    wait_for(lambda: status(page) == want, timeout_s, what=f"status {want!r} (now {status(page)!r})")


def count(page: Any, selector: str) -> int:
    return int(page.locator(selector).count())


def nav(page: Any, name: str) -> None:
    """Client-side navigation (the router; the connection and the service stay)."""
    page.click(f"#nav-{name}")
    wait_for(lambda: page.locator(f"#nav-{name}.on").count() == 1, 5, what=f"{name} page")


def shot(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"angular-{name}.png"), full_page=True)


@pytest.fixture
def stack_factory(tmp_path: Path, app_server: AppServer, context: Any) -> Iterator[Callable[..., Stack]]:
    made: list[tuple[Daemon, StoreWriter]] = []

    def make(allow_origin: bool = True, writer: bool = True, init: Callable[[Path], Any] | None = None) -> Stack:
        d = Daemon(tmp_path / f"d{len(made)}")
        snaps = d.tmp / "snapshots"
        snaps.mkdir()
        d.extra = ["--snapshots-dir", str(snaps)]
        if allow_origin:
            d.extra += ["--allow-origin", app_server.origin]
        if init is not None:
            init(d.db)  # creates the store its own way (before the daemon would with rocksdict)
        w = StoreWriter(d.db, cfs=["orders"]).start() if writer else None
        made.append((d, w))
        d.start()
        return Stack(d, w, app_server, context, snaps)  # type: ignore[arg-type]

    yield make
    for d, w in made:
        d.stop()
        if w is not None:
            w.kill()


@pytest.fixture
def stack(stack_factory: Callable[..., Stack]) -> Stack:
    return stack_factory()


# --------------------------------------------------------------------------- tests


def test_five_pages_live_zoneless(stack: Stack, artifacts: Path) -> None:
    daemon, writer = stack.daemon, stack.writer
    page = stack.open()
    wait_status(page, "connected")
    assert page.url.startswith(stack.app.origin) and stack.app.origin != daemon.base  # a real second origin
    assert page.evaluate("typeof window.Zone") == "undefined", "the app must be zoneless (Angular's default)"
    assert page.evaluate("!!document.querySelector('[ng-version]')")

    # Dashboard: live counters from the stream (and the daemon's stats frames when it has them)
    for i in range(6):
        writer.batch([{"op": "put", "key": f"user:{100 + i * 2 + j}", "value": f"v{i}"} for j in range(2)])
        writer.put(f"order:{i}", f"total={i * 3}", cf="orders")
    writer.flush()  # an SST file for the stats' per-level sizes
    wait_for(lambda: count(page, '#counts [data-type="key_change"]') == 1, 10, what="key_change counter")
    wait_for(lambda: int(page.locator('#counts [data-type="key_change"] .n').inner_text()) >= 18, 10, what="18 key changes")
    wait_for(lambda: count(page, "#recent li") >= 12, 10, what="recent events")
    assert "orders:order:5" in page.locator("#recent").inner_text()
    _wait_stats_if_supported(page, writer)
    shot(page, artifacts, "dashboard")

    # Key Explorer: watched keys only; changes not tagged with my origin are flagged
    nav(page, "keys")
    page.fill("#watch-key", "user:42")
    page.click("#watch button[type=submit]")
    page.fill("#watch-key", "order:")
    page.check("#watch-prefix")
    page.click("#watch button[type=submit]")
    wait_for(lambda: count(page, "#watched li") == 2, 5, what="2 watched keys")
    writer.put("user:41", "not watched")
    writer.put("user:42", '{"name":"ada"}')
    writer.put("order:7", "total=21", cf="orders")
    writer.delete("user:42")
    wait_for(lambda: count(page, "#changes tbody tr") == 3, 10, what="3 watched changes")
    rows = page.locator("#changes tbody tr").all_inner_texts()
    assert "delete" in rows[0] and "user:42" in rows[0], rows
    assert not any("user:41" in r for r in rows), rows
    assert count(page, "#changes tr.foreign") == 3  # untagged writes are someone else's
    assert "untagged writer" in page.locator("#changes tr.foreign .flag").first.inner_text()
    shot(page, artifacts, "keys")

    # Compaction: a real flush + manual compaction of the writer's store, as it happens
    nav(page, "compaction")
    for i in range(3):
        writer.batch([{"op": "put", "key": f"c:{i}:{j}", "value": "x" * 200} for j in range(50)])
        writer.flush()
    writer.compact()
    wait_for(lambda: count(page, '#jobs tr[data-job^="compaction:"][data-status="completed"]') >= 1, 20, what="a completed compaction")
    wait_for(lambda: count(page, '#jobs tr[data-job^="flush:"]') >= 3, 10, what="3 flushes")
    done = page.locator('#jobs tr[data-job^="compaction:"][data-status="completed"]').first
    assert done.locator(".bar > div").evaluate("e => e.style.width") == "100%"
    # progress of a long job as it runs (the daemon's `running` events; published here, as an
    # external compaction service would, since a real one this size finishes in milliseconds)
    for pct in (10.0, 40.0):
        daemon.publish({"type": "compaction_status", "status": "running", "cf": "default", "job": 77,
                        "details": {"progress": pct, "bytes_written": int(pct * 1e6), "input_bytes": 100_000_000}})  # fmt: skip
    running = page.locator('#jobs tr[data-job="compaction:default:77"]')
    wait_for(lambda: running.count() == 1 and running.locator(".bar > div").evaluate("e => e.style.width") == "40%", 10, what="running job at 40%")
    assert page.locator("#running").inner_text() == "1"
    # a trivial move (RocksDB moves files down a level without rewriting them) says so
    daemon.publish({"type": "compaction_status", "status": "completed", "cf": "orders", "job": 99,
                    "details": {"trivial_move": True, "output_level": 6, "moved_files": [12]}})  # fmt: skip
    wait_for(lambda: count(page, '#jobs tr[data-job="compaction:orders:99"]') == 1, 10, what="trivial move row")
    assert "trivial move" in page.locator('#jobs tr[data-job="compaction:orders:99"] .what').inner_text()
    shot(page, artifacts, "compaction")

    # Health: the store's directory disappears and comes back -> readiness flips at once
    nav(page, "health")
    wait_for(lambda: _probe(page, "readiness") == "healthy", 10, what="readiness from GET /health/ready")
    assert _probe(page, "liveness") == "healthy"
    away = daemon.db.with_name("db-away")
    daemon.db.rename(away)
    try:
        wait_for(lambda: _probe(page, "readiness") == "unhealthy", 15, what="readiness unhealthy")
        assert "not readable" in page.locator('#probes [data-probe="readiness"] .reason').inner_text()
    finally:
        away.rename(daemon.db)
    wait_for(lambda: _probe(page, "readiness") == "healthy", 15, what="readiness healthy again")
    assert count(page, '#health-log li[data-probe="readiness"]') >= 2
    shot(page, artifacts, "health")

    # Snapshots: real RocksDB checkpoints appear as they are made
    nav(page, "snapshots")
    writer.checkpoint(stack.snaps / "checkpoint-0001")
    writer.put("after:1", "x")
    writer.checkpoint(stack.snaps / "checkpoint-0002")
    for name in ("checkpoint-0001", "checkpoint-0002"):
        wait_for(lambda n=name: count(page, f'#snapshots tr[data-name="{n}"][data-status="completed"]') == 1, 15, what=f"{name} completed")
    shutil.rmtree(stack.snaps / "checkpoint-0001")
    wait_for(lambda: count(page, '#snapshots tr[data-name="checkpoint-0001"][data-status="deleted"]') == 1, 15, what="deleted")
    shot(page, artifacts, "snapshots")
    assert not stack.errors, stack.errors


def _probe(page: Any, probe: str) -> str:
    return str(page.locator(f'#probes [data-probe="{probe}"]').get_attribute("data-status"))


def _wait_stats_if_supported(page: Any, writer: StoreWriter) -> None:
    """Let the screenshot show a stats frame when the daemon sends them (skip the wait if not)."""
    if "no stats frames" in page.locator("#stats-state").inner_text():  # an older daemon
        return
    try:
        wait_for(lambda: count(page, "#cf-table tbody tr") >= 2 and count(page, "#sst-table tr") >= 1, 5, what="a stats frame")
    except AssertionError:
        pass


def test_dashboard_stats_frames(stack: Stack) -> None:
    """The Dashboard shows the daemon's 1 s stats frames (types=stats): per-cf totals, subscribers."""
    page = stack.open()
    wait_status(page, "connected")
    for i in range(5):
        stack.writer.put(f"s:{i}", "x", cf="orders")
    wait_for(lambda: count(page, '#cf-table tr[data-cf="orders"]') == 1, 10, what=f"stats row ({page.locator('#stats-state').inner_text()})")
    wait_for(lambda: int(page.locator('#cf-table tr[data-cf="orders"] .total-put').inner_text()) >= 5, 10, what="5 puts")
    assert int(page.locator("#subscribers").inner_text()) >= 2  # the event stream and the stats stream


def test_status_across_kill9_and_restart(stack: Stack, artifacts: Path) -> None:
    daemon, writer = stack.daemon, stack.writer
    page = stack.open()
    wait_status(page, "connected")
    writer.put("k:before", "1")
    wait_for(lambda: "k:before" in page.locator("#recent").inner_text(), 10, what="event before the kill")
    seen: list[str] = []
    page.expose_function("__status", lambda s: seen.append(s))
    page.evaluate(
        """() => new MutationObserver(() => window.__status(document.querySelector('#status').textContent.trim()))
              .observe(document.querySelector('#status'), { childList: true, characterData: true, subtree: true })"""
    )
    daemon.kill9()
    wait_status(page, "reconnecting", 10)
    shot(page, artifacts, "reconnecting")
    writer.put("k:while-down", "2")  # captured from the WAL after the restart, delivered by resume
    daemon.start()
    wait_status(page, "connected", 30)
    writer.put("k:after", "3")
    wait_for(lambda: "k:after" in page.locator("#recent").inner_text(), 10, what="event after the restart")
    text = page.locator("#recent").inner_text()
    assert "k:while-down" in text
    assert text.count("k:before") == 1  # resumed from the last id: no duplicate
    assert "reconnecting" in seen and seen[-1] == "connected", seen
    assert not stack.errors, stack.errors


def test_polling_fallback_when_websocket_is_blocked(stack: Stack, artifacts: Path) -> None:
    page = stack.context.new_page()
    attempts: list[str] = []

    def refuse(ws: Any) -> None:  # a proxy that refuses WebSocket: every attempt closes at once
        attempts.append(ws.url)
        ws.close(code=1011, reason="blocked by test")

    page.route_web_socket(re.compile(r".*/ws/events.*"), refuse)
    stack.open(page=page)
    wait_status(page, "polling", 20)
    assert len(attempts) >= 3
    stack.writer.put("poll:1", "via long-poll")
    stack.writer.put("poll:2", "via long-poll", cf="orders")
    wait_for(lambda: "poll:2" in page.locator("#recent").inner_text(), 15, what="events over the long-poll")
    assert status(page) == "polling"
    # with --allow-origin, /client.js is importable as a module from the allowed origin (CORS on it)
    assert page.evaluate(f"import({stack.daemon.base!r} + '/client.js').then(m => typeof m.CdcClient)") == "function"
    assert not stack.errors, stack.errors


def test_bad_token_is_unauthorized_then_a_good_one_connects(stack: Stack) -> None:
    page = stack.open(token="not-a-valid-token")
    wait_status(page, "unauthorized", 10)
    page.wait_for_selector("#login-err")
    assert page.url.startswith(stack.app.origin + "/login")
    page.fill("#token-input", TOKEN)
    page.click("#login button[type=submit]")
    wait_status(page, "connected", 10)
    stack.writer.put("after-login", "1")
    wait_for(lambda: "after-login" in page.locator("#recent").inner_text(), 10, what="event after login")


def test_token_refresh_in_band_and_logout(stack: Stack) -> None:
    page = stack.context.new_page()
    # Record, in the page, every event-stream WebSocket opened and every message sent on one.
    page.add_init_script(
        """(() => {
            const Native = window.WebSocket;
            window.__ws = { opened: 0, sent: [] };
            window.WebSocket = class extends Native {
                constructor(url, ...rest) {
                    super(url, ...rest);
                    this.__main = !String(url).includes("types=stats");
                    if (this.__main) window.__ws.opened++;
                }
                send(data) {
                    if (this.__main) window.__ws.sent.push(String(data));
                    return super.send(data);
                }
            };
        })()"""
    )
    stack.open(page=page)
    wait_status(page, "connected")
    page.goto(stack.url("/login"))  # a reload: the token comes back from sessionStorage
    wait_status(page, "connected")
    assert page.evaluate("window.__ws.opened") == 1
    fresh = mint_token(SECRET, subject="refreshed", ttl=3600)
    page.fill("#refresh-input", fresh)
    page.click("#refresh button[type=submit]")
    sent = lambda: page.evaluate("window.__ws.sent")  # noqa: E731
    wait_for(lambda: any('"op":"auth"' in f for f in sent()), 10, what=f"auth op sent (sent: {sent()})")
    stack.writer.put("after-refresh", "1")
    wait_for(lambda: "after-refresh" in _recent_text(page), 10, what="event after refresh")
    assert page.evaluate("window.__ws.opened") == 1  # no reconnect
    assert status(page) == "connected"
    page.click("#logout")
    wait_status(page, "disconnected", 10)
    assert page.url.startswith(stack.app.origin + "/login")


def _recent_text(page: Any) -> str:
    if count(page, "#recent") == 0:
        nav(page, "dashboard")
    return str(page.locator("#recent").inner_text())


def test_cross_origin_without_allow_origin(stack_factory: Callable[..., Stack]) -> None:
    """What a page on another origin gets from a daemon that does not list it (README)."""
    stack = stack_factory(allow_origin=False)
    page = stack.open()
    wait_status(page, "connected")  # the WebSocket works: the token is the credential
    stack.writer.put("xo:1", "1")
    wait_for(lambda: "xo:1" in page.locator("#recent").inner_text(), 10, what="event over WebSocket")
    nav(page, "health")
    wait_for(lambda: "not readable" in page.locator("#health-http").inner_text(), 10, what="GET /health/* refused by CORS")
    assert _probe(page, "readiness") == "unknown"
    can_poll = page.evaluate(
        f"""() => fetch({stack.daemon.base!r} + '/events?timeout=0', {{ headers: {{ Authorization: 'Bearer {TOKEN}' }} }})
                  .then(() => true, () => false)"""
    )
    assert can_poll is False  # so the long-poll fallback cannot work from this origin

    # ...as a page whose WebSocket is blocked shows: it never gets to "polling" with data
    blocked = stack.context.new_page()
    blocked.route_web_socket(re.compile(r".*/ws/events.*"), lambda ws: ws.close(code=1011, reason="blocked by test"))
    stack.open(page=blocked)
    wait_for(lambda: blocked.evaluate("performance.getEntriesByType('resource').some(e => e.name.includes('/events?'))"), 20, what="a long-poll attempt")
    stack.writer.put("xo:2", "2")
    wait_status(blocked, "reconnecting", 10)
    assert count(blocked, "#recent li") == 0


@pytest.mark.parametrize("app_server", ["zone"], indirect=True)
def test_zone_js_build_renders_live_events(stack: Stack) -> None:
    """The same app with zone.js (provideZoneChangeDetection + the polyfill) works the same way."""
    page = stack.open()
    wait_status(page, "connected")
    assert page.evaluate("typeof window.Zone") == "function", "the zone build must run zone.js"
    stack.writer.put("zone:1", "a")
    wait_for(lambda: "zone:1" in page.locator("#recent").inner_text(), 10, what="event on the dashboard")
    nav(page, "keys")
    page.fill("#watch-key", "zone:2")
    page.click("#watch button[type=submit]")
    wait_for(lambda: count(page, "#watched li") >= 1, 5, what="watched key")
    stack.writer.put("zone:2", "b")
    wait_for(lambda: count(page, '#changes tr[data-key="zone:2"]') == 1, 10, what="watched change")
    assert not stack.errors, stack.errors


ORIGIN_WRITER = r"""
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <string>
using namespace ROCKSDB_NAMESPACE;
// origin_writer DB ORIGIN|KEY|VALUE...: one WriteBatch per argument, tagged with the LogData
// marker "cdc-origin:ORIGIN" unless ORIGIN is empty.
int main(int argc, char** argv) {
  Options o; o.create_if_missing = true;
  DB* db; if (!DB::Open(o, argv[1], &db).ok()) return 1;
  for (int i = 2; i < argc; i++) {
    std::string a = argv[i];
    size_t p1 = a.find('|'), p2 = a.find('|', p1 + 1);
    std::string origin = a.substr(0, p1), key = a.substr(p1 + 1, p2 - p1 - 1), value = a.substr(p2 + 1);
    WriteBatch b;
    if (!origin.empty()) b.PutLogData("cdc-origin:" + origin);
    b.Put(key, value);
    if (!db->Write(WriteOptions(), &b).ok()) return 2;
  }
  db->SyncWAL();
  delete db;
  return 0;
}
"""


@pytest.fixture(scope="module")
def origin_writer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("g++") or not os.path.isdir("/usr/include/rocksdb"):
        pytest.skip("g++ and librocksdb-dev are needed for the C++ writer (rocksdict cannot write LogData)")
    d = tmp_path_factory.mktemp("cxx")
    (d / "origin_writer.cc").write_text(ORIGIN_WRITER)
    exe = d / "origin_writer"
    subprocess.run(["g++", "-std=c++17", "-O0", str(d / "origin_writer.cc"), "-o", str(exe), "-lrocksdb"], check=True, timeout=240)
    return exe


def test_key_explorer_flags_changes_from_other_origins(stack_factory: Callable[..., Stack], origin_writer: Path, artifacts: Path) -> None:
    """Writes tagged with this app's origin are not flagged; another client's and untagged ones are."""
    # rocksdict stores use their own comparator: the C++ writer creates a plain RocksDB store
    stack = stack_factory(writer=False, init=lambda db: subprocess.run([str(origin_writer), str(db)], check=True, timeout=60))
    page = stack.open()
    wait_status(page, "connected")
    nav(page, "keys")
    page.fill("#my-origin", "tab-1")
    page.fill("#watch-key", "doc:")
    page.check("#watch-prefix")
    page.click("#watch button[type=submit]")
    wait_for(lambda: count(page, "#watched li") == 1, 5, what="watched prefix")
    subprocess.run(
        [str(origin_writer), str(stack.daemon.db), "tab-1|doc:1|mine", "tab-2|doc:1|theirs", "|doc:2|untagged", "tab-2|other:1|x"],
        check=True, timeout=60,
    )  # fmt: skip
    wait_for(lambda: count(page, "#changes tbody tr") == 3, 15, what="3 changes under doc:")
    rows = page.locator("#changes tbody tr")
    texts = rows.all_inner_texts()
    assert "untagged" in texts[0] and "doc:2" in texts[0], texts
    assert "tab-2" in texts[1] and "another client" in texts[1], texts
    assert "tab-1" in texts[2] and "⚑" not in texts[2], texts
    assert count(page, "#changes tr.foreign") == 2
    assert page.locator("#foreign-count").inner_text() == "2"
    shot(page, artifacts, "keys-origin")
    assert not stack.errors, stack.errors


@pytest.fixture
def demo(tmp_path: Path, app_server: AppServer) -> Iterator[tuple[str, str]]:
    """``cdc demo --allow-origin <app>`` (fast intervals): yields (base URL, admin token)."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "cdc", "demo", "--port", str(port), "--dir", str(tmp_path), "--rate", "20",
        "--flush-every", "1", "--compact-every", "2", "--checkpoint-every", "2", "--sync-every", "1",
        "--allow-origin", app_server.origin,
    ]  # fmt: skip
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        def token() -> str | None:
            if proc.poll() is not None:
                raise AssertionError(f"cdc demo exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            m = re.search(r"#token=(\S+)", log.read_text())
            return m.group(1) if m else None

        wait_for(lambda: token() is not None, 30, what="cdc demo's banner")
        yield f"http://127.0.0.1:{port}", str(token())
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_against_cdc_demo_with_websocket_blocked(demo: tuple[str, str], context: Any, app_server: AppServer, artifacts: Path) -> None:
    """The issue's case: an app on its own origin, WebSocket blocked, long-polling `cdc demo`."""
    base, token = demo
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route_web_socket(re.compile(r".*/ws/events.*"), lambda ws: ws.close(code=1011, reason="blocked by test"))
    page.goto(f"{app_server.origin}/login?cdc={base}")
    page.fill("#token-input", token)
    page.click("#login button[type=submit]")
    wait_status(page, "polling", 20)
    wait_for(lambda: int(page.locator("#last-id").inner_text().replace("–", "0") or 0) > 0, 20, what="events over the long-poll")
    nav(page, "compaction")
    wait_for(lambda: count(page, "#jobs tbody tr") >= 1, 20, what="flush/compaction rows from the demo")
    nav(page, "snapshots")
    wait_for(lambda: count(page, "#snapshots tbody tr") >= 1, 20, what="a checkpoint from the demo")
    nav(page, "keys")
    page.fill("#watch-key", "user:")
    page.check("#watch-prefix")
    page.click("#watch button[type=submit]")
    wait_for(lambda: count(page, "#changes tbody tr") >= 1, 20, what="user:* changes from the demo writer")
    shot(page, artifacts, "keys-demo-polling")
    assert status(page) == "polling"
    assert not errors, errors
