"""Every command's happy path against a real store and a real daemon subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import jwt
import pytest

from .conftest import REPO, cdc_env, free_port, http_get, ndjson, run_cdc

pytestmark = pytest.mark.integration


def test_serve_tail_count_ndjson(store, serve_factory, admin_token) -> None:
    d = serve_factory()
    for i in range(5):
        store.put(f"user:{i}", f"v{i}", cf="users")
    r = run_cdc("tail", d.base, "--since", "0", "--types", "key_change", "--cf", "users", "--count", "5",
                env={"CDC_TOKEN": admin_token}, timeout=30)
    assert r.code == 0, r.err
    events = ndjson(r.out)
    assert [e["key"] for e in events] == [f"user:{i}" for i in range(5)]
    assert all(e["type"] == "key_change" and e["cf"] == "users" and e["operation"] == "put" for e in events)
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert "value" not in events[0]
    assert admin_token not in r.out + r.err


def test_tail_pretty_prefix_values_and_token_file(store, serve_factory, admin_token, tmp_path: Path) -> None:
    d = serve_factory()
    store.put("a:1", "x")
    store.put("b:1", "hello")
    store.put("b,2", "comma")
    tf = tmp_path / "token"
    tf.write_text(admin_token + "\n")
    r = run_cdc("tail", d.base.replace("http", "ws") + "/ws/events", "--token-file", str(tf), "--since", "0",
                "--prefix", "b:", "--prefix", "b,", "--types", "key_change", "--values", "--format", "pretty", "--count", "2", "-q", timeout=30)
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert len(lines) == 2 and r.err == ""
    assert "key_change put [default] b:1 = hello" in lines[0]
    assert "b,2 = comma" in lines[1]


def test_tail_reconnects_and_resumes_without_loss(store, serve_factory, admin_token) -> None:
    d = serve_factory()
    port = d.port
    tail = subprocess.Popen(
        [sys.executable, "-m", "cdc", "tail", d.base, "--types", "key_change", "--prefix", "before:", "--prefix", "during:",
         "--count", "6"],
        env=cdc_env({"CDC_TOKEN": admin_token}), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO),
    )
    try:
        # the tail is connected once the daemon counts a subscriber; wait via its stderr notice instead
        first = tail.stderr.readline()
        assert "connected" in first, first
        for i in range(3):
            store.put(f"before:{i}", "x")
        got = [json.loads(tail.stdout.readline()) for _ in range(3)]
        assert [e["key"] for e in got] == ["before:0", "before:1", "before:2"]
        assert d.stop() == 0  # graceful: subscribers get 1001
        for i in range(3):
            store.put(f"during:{i}", "x")  # written while the daemon is down
        d2 = serve_factory(port=port)
        assert d2.port == port
        out, err = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
    assert tail.returncode == 0, err
    rest = ndjson(out)
    assert [e["key"] for e in rest] == ["during:0", "during:1", "during:2"]
    ids = [e["id"] for e in got + rest]
    assert ids == sorted(set(ids))
    assert "reconnecting" in err


def test_publish_then_tail_sees_sync_event(serve_factory, admin_token) -> None:
    d = serve_factory()
    r = run_cdc("publish", d.base.replace("http://", "ws://") + "/ws/events", "--type", "sync_event", "--status", "completed",
                "--details", '{"peer": "replica-eu", "keys": 3}', "--token", admin_token)
    assert r.code == 0, r.err
    pid = json.loads(r.out)["id"]
    assert isinstance(pid, int) and pid > 0
    t = run_cdc("tail", d.base, "--since", str(pid - 1), "--types", "sync_event", "--count", "1", "--token", admin_token)
    assert t.code == 0, t.err
    (ev,) = ndjson(t.out)
    assert ev["id"] == pid and ev["status"] == "completed" and ev["details"] == {"peer": "replica-eu", "keys": 3}


def test_token_scopes_are_enforced(serve_factory, secret_file: Path) -> None:
    d = serve_factory()
    r = run_cdc("token", "--secret-file", str(secret_file), "--types", "sync_event", "--cf", "users,orders",
                "--prefix", "user:", "--subject", "svc", "--ttl", "60")
    assert r.code == 0
    claims = jwt.decode(r.out.strip(), secret_file.read_text().strip(), algorithms=["HS256"])
    assert claims["sub"] == "svc" and claims["types"] == ["sync_event"] and claims["cf"] == ["users", "orders"]
    assert claims["prefix"] == ["user:"] and claims["exp"] - claims["iat"] == 60 and "admin" not in claims
    # a non-admin token cannot publish: one line, exit 2
    p = run_cdc("publish", d.base, "--type", "sync_event", "--status", "started", "--token", r.out.strip())
    assert p.code == 2 and "Traceback" not in p.err and len(p.err.strip().splitlines()) == 1
    assert r.out.strip() not in p.err
    # a bad token is rejected: one line, exit 2
    bad = run_cdc("tail", d.base, "--token", "not-a-valid-token", "--count", "1")
    assert bad.code == 2 and "4401" in bad.err and "not-a-valid-token" not in bad.err


def test_serve_with_toml_and_env_check_config(store, tmp_path: Path, secret_file: Path, tokens_file: Path) -> None:
    cfg = tmp_path / "cdc.toml"
    cfg.write_text(f'db = "{store.path}"\nport = 1111\nheartbeat-ms = 2500\nallow_origin = ["https://app.example"]\n'
                   f'tokens-file = "{tokens_file}"\n')
    r = run_cdc("serve", "--config", str(cfg), "--check-config", "--port", "2222",
                env={"CDC_HEARTBEAT_MS": "3000", "CDC_JWT_SECRET_FILE": str(secret_file), "STATE_DIRECTORY": str(tmp_path / "sd")})
    assert r.code == 0, r.err
    assert "port = 2222" in r.out and "heartbeat-ms = 3000" in r.out and 'allow-origin = ["https://app.example"]' in r.out
    assert f'state-dir = "{tmp_path / "sd"}"' in r.out
    assert str(secret_file) in r.out and "test-secret" not in r.out and "opaque-token" not in r.out
    assert "configuration ok: rocksdb store" in r.err
    c = run_cdc("config", "--db", store.path, "--insecure-no-auth", "--state-dir", str(tmp_path / "s2"))
    assert c.code == 0 and "insecure-no-auth = true" in c.out


def test_check_config_leveldb(level_db: Path, tmp_path: Path) -> None:
    r = run_cdc("config", "--db", str(level_db), "--insecure-no-auth", "--state-dir", str(tmp_path / "s"))
    assert r.code == 0, r.err
    assert "configuration ok: leveldb store" in r.err


def test_sigterm_clean_exit_json_logs_no_secrets(store, serve_factory, admin_token) -> None:
    d = serve_factory("--log-format", "json")
    # a client that puts its token in the URL, as browsers do
    import asyncio

    from websockets.asyncio.client import connect

    async def peek() -> None:
        async with connect(f"ws://127.0.0.1:{d.port}/ws/events?token={admin_token}") as ws:
            await ws.recv()

    asyncio.run(peek())
    bad = run_cdc("tail", d.base, "--token", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bogus", "--count", "1")
    assert bad.code == 2
    assert d.stop(signal.SIGTERM) == 0
    lines = [ln for ln in d.log().splitlines() if ln.strip()]
    assert lines, "no logs"
    for ln in lines:
        obj = json.loads(ln)  # one JSON object per line
        assert {"ts", "level", "logger", "msg"} <= set(obj)
    text = d.log()
    assert admin_token not in text and "bogus" not in text and "test-secret" not in text
    assert any(json.loads(ln)["msg"].startswith("listening on") for ln in lines)


def test_sd_notify_ready_status_watchdog_stopping(serve_factory, tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"cdc-it-{uuid.uuid4().hex}"
    sock.bind("\0" + name)
    sock.settimeout(20)
    with sock:
        d = serve_factory(env={"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000"})
        seen: list[str] = []

        def got(prefix: str) -> bool:
            while not any(m.startswith(prefix) or ("\n" + prefix) in m for m in seen):
                seen.append(sock.recv(4096).decode())
            return True

        got("READY=1")
        got("WATCHDOG=1")
        ready = next(m for m in seen if "READY=1" in m)
        assert f"MAINPID={d.proc.pid}" in ready and "STATUS=" in ready
        d.proc.send_signal(signal.SIGTERM)
        got("STOPPING=1")
        assert d.stop(None) == 0


def _start_demo(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], str, Path]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cdc", "demo", "--port", str(port), "--dir", str(tmp_path), *extra,
                             "--log-level", "warning"],
                            env=cdc_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO))
    url = None
    while url is None:
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise AssertionError(proc.stderr.read())
        if "dashboard:" in line:
            url = line.split("dashboard:", 1)[1].strip()
    assert url.startswith(f"http://127.0.0.1:{port}/#token=")
    (demo_dir,) = list(tmp_path.glob("cdc-demo-*"))
    return proc, url, demo_dir


def _stop_demo(proc: subprocess.Popen[str], demo_dir: Path) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    assert not demo_dir.exists(), "temp dir not removed"
    assert "Traceback" not in proc.stderr.read()


@pytest.mark.slow
def test_demo_end_to_end_every_event_type(tmp_path: Path) -> None:
    proc, url, demo_dir = _start_demo(tmp_path, "--rate", "20", "--flush-every", "1", "--compact-every", "1.5",
                                      "--checkpoint-every", "1", "--sync-every", "1")
    try:
        base, token = url.split("/#token=")
        assert (demo_dir / "db" / "CURRENT").exists()
        status, body = http_get(base + "/")
        assert status == 200 and b"<html" in body.lower()
        r = run_cdc("tail", base, "--types", "key_change", "--count", "10", "--values", "--token", token, timeout=60)
        assert r.code == 0, r.err
        events = ndjson(r.out)
        assert len(events) == 10 and {e["operation"] for e in events} <= {"put", "delete", "delete_range"}
        assert all("value" in e for e in events if e["operation"] == "put")
        # the writer's flushes, compactions, checkpoints and sync events all reach subscribers
        wanted = {"flush_status", "compaction_status", "snapshot_event", "sync_event"}
        seen: set[str] = set()
        r = None
        for _ in range(3):
            r = run_cdc("tail", base, "--since", "0", "--types", ",".join(sorted(wanted)), "--count", "40", "-q",
                        "--token", token, timeout=60)
            assert r.code == 0, r.err
            seen = {e["type"] for e in ndjson(r.out)}
            if seen == wanted:
                break
        assert seen == wanted, seen
        _stop_demo(proc, demo_dir)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.browser
def test_demo_dashboard_in_chromium(tmp_path: Path) -> None:
    """What a new user does: `cdc demo`, open the printed URL, see live changes."""
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("/usr/bin/chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    proc, url, demo_dir = _start_demo(tmp_path, "--rate", "10")
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            try:
                page = browser.new_page()
                page.goto(url)
                page.wait_for_function("document.querySelector('#status')?.textContent.trim() === 'connected'", timeout=20_000)
                page.wait_for_function("document.querySelectorAll('#keys tr').length >= 3", timeout=20_000)
                assert "#token=" not in page.evaluate("location.search")
            finally:
                browser.close()
        _stop_demo(proc, demo_dir)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_python_dash_m_and_console_script() -> None:
    r = run_cdc("--version")
    assert r.code == 0 and "0.1.0" in r.out and "(speedups: " in r.out
    entry = Path(sys.executable).with_name("cdc")
    if os.access(entry, os.X_OK):
        p = subprocess.run([str(entry), "--help"], capture_output=True, text=True, env=cdc_env())
        assert p.returncode == 0 and "serve" in p.stdout and "demo" in p.stdout


def test_tail_bad_filter_is_fatal_not_a_reconnect_loop(serve_factory, admin_token) -> None:
    d = serve_factory()
    r = run_cdc("tail", d.base + "/ws/events?values=maybe", "--token", admin_token, timeout=30)
    assert r.code == 2, r.err
    assert "Traceback" not in r.err and "rejected the subscription" in r.err.splitlines()[-1]
