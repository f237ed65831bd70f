"""Issue 9 ("Never silent"), items 6-10, on real daemons, real LMDB files and real sockets.

6: a journal damaged at run time (garbage pages) -> readiness ``journal_corrupt``, close 1011 with a
   reason, one log line (no traceback per reconnect); a journal's identity (``epoch``) in ``hello``,
   a cursor from another journal gets ``reset`` (``epoch_changed``); a replaced journal is announced.
7: events held while the journal cannot commit are bounded in bytes (capture waits, loses nothing).
8: a subscriber that never reads is closed 4429 and its TCP connection is gone within a bound; it
   counts toward ``max_subscribers`` until then.
9: repeated ``Origin``/``Host`` headers and deeply nested ``/publish`` bodies are 400, not 500.
10: with ``--insecure-no-auth``, a ``Host`` the daemon does not serve is refused (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import time
from typing import Any

import websockets

from cdc.model.events import KeyChange
from tests.harness.net import http_request, publish, recv_events, recv_json
from tests.harness.waiting import wait_for

PAGE = 4096


def _zero_pages_with(path: str, needle: bytes) -> int:
    """Overwrite, in place, every LMDB page of ``path``/data.mdb holding ``needle`` with zeros."""
    data_path = os.path.join(path, "data.mdb")
    with open(data_path, "rb") as f:
        data = f.read()
    hits = [i for i in range(2, len(data) // PAGE) if needle in data[i * PAGE : (i + 1) * PAGE]]
    fd = os.open(data_path, os.O_RDWR)
    try:
        for i in hits:
            os.pwrite(fd, b"\0" * PAGE, i * PAGE)
    finally:
        os.close(fd)
    return len(hits)


# --------------------------------------------------------------------------- 6: damage at run time


async def test_damage_found_by_replay_is_a_readiness_condition_not_a_traceback_loop(daemon_factory: Any, caplog: Any) -> None:
    d = await daemon_factory()
    for i in range(20):
        assert (await publish(d.port, d.admin, {"type": "app.note", "n": i})).status == 202
    assert (await http_request(d.port, "GET", "/health/ready")).status == 200
    caplog.set_level(logging.INFO)
    # garbage where the event tree's pages are (the daemon has the file mapped: it sees the change)
    assert _zero_pages_with(d.ctx.journal.path, b'{"id":1,"type"') >= 1
    closes = []
    for _ in range(3):  # a client reconnecting three times
        async with d.connect("since=0") as ws:
            hello = await recv_json(ws)
            assert hello["type"] == "hello"
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed as exc:
                closes.append((exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else ""))
    assert closes == [(1011, "journal damaged: see /health/ready")] * 3
    r = await http_request(d.port, "GET", "/health/ready")
    assert r.status == 503
    assert "journal_corrupt" in r.json()["failing"] and "Recovering the journal" in r.json()["failing"]["journal_corrupt"]
    metrics = (await http_request(d.port, "GET", "/metrics")).body.decode()
    assert "cdc_journal_damage_reads_total 3.0" in metrics
    # /events says so too (503, no traceback)
    r = await http_request(d.port, "GET", f"/events?since=0&timeout=0&token={d.reader}")
    assert r.status == 503 and "journal damaged" in r.json()["error"]
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "Traceback" not in text and not any(r.exc_info for r in caplog.records)
    # once for the replays (not once per reconnect), once for the writer holding the health event
    damaged = [r for r in caplog.records if r.levelno >= logging.ERROR and "is damaged" in r.getMessage()]
    assert sorted(r.name for r in damaged) == ["cdc.bus", "cdc.server"], [r.getMessage() for r in damaged]


# --------------------------------------------------------------------------- 6: journal identity


async def test_epoch_in_hello_and_cursor_from_another_journal_is_reset(daemon_factory: Any, tmp_path: Any, caplog: Any) -> None:
    state = str(tmp_path / "shared-state")
    d = await daemon_factory(state_dir=state)
    epoch = d.ctx.journal.epoch
    assert isinstance(epoch, str) and len(epoch) == 16
    for i in range(5):
        await publish(d.port, d.admin, {"type": "app.note", "n": i})
    async with d.connect("since=0&types=app.note") as ws:
        hello = await recv_json(ws)
        assert hello["epoch"] == epoch
        evs = await recv_events(ws, 5)
    cursor = d.ctx.journal.latest_id
    assert evs[-1]["id"] == cursor
    await d.stop()

    # the same journal again: same epoch, the cursor resumes
    d2 = await daemon_factory(state_dir=state)
    assert d2.ctx.journal.epoch == epoch
    await publish(d2.port, d2.admin, {"type": "app.after", "n": 1})
    async with d2.connect(f"since={cursor}&epoch={epoch}&types=app.after") as ws:
        assert (await recv_json(ws))["epoch"] == epoch
        (ev,) = await recv_events(ws, 1)
        assert ev["type"] == "app.after"
    await d2.stop()

    # the journal is deleted while stopped: a new one, a new epoch, announced loudly
    import shutil

    shutil.rmtree(os.path.join(state, "journal"))
    caplog.set_level(logging.WARNING, logger="cdc.journal")
    d3 = await daemon_factory(state_dir=state)
    assert d3.ctx.journal.epoch != epoch
    assert any("is NEW but this state dir had another journal" in r.getMessage() for r in caplog.records)
    for i in range(10):
        await publish(d3.port, d3.admin, {"type": "app.new", "n": i})
    async with d3.connect("since=0&types=cdc.journal_replaced") as ws:
        hello = await recv_json(ws)
        (ann,) = await recv_events(ws, 1)
        assert ann["previous_epoch"] == epoch and ann["epoch"] == d3.ctx.journal.epoch
    # a cursor of the old journal (id 6 exists again in the new one!) gets a reset, not new events
    async with d3.connect(f"since={cursor}&epoch={epoch}") as ws:
        hello = await recv_json(ws)
        assert hello["epoch"] == d3.ctx.journal.epoch
        reset = await recv_json(ws)
        assert reset["type"] == "reset" and reset["reason"] == "epoch_changed" and reset["epoch"] == d3.ctx.journal.epoch
    r = await http_request(d3.port, "GET", f"/events?since={cursor}&epoch={epoch}&timeout=0&token={d3.reader}")
    body = r.json()
    assert body["events"] == [] and body["reset"]["reason"] == "epoch_changed" and body["epoch"] == d3.ctx.journal.epoch
    # with the right epoch the same cursor is fine
    r = await http_request(d3.port, "GET", f"/events?since={cursor}&epoch={d3.ctx.journal.epoch}&timeout=0&token={d3.reader}")
    assert "reset" not in r.json() and r.json()["events"]


# --------------------------------------------------------------------------- 7: held events bounded in bytes


async def test_held_events_are_bounded_in_bytes_and_capture_waits(daemon_factory: Any) -> None:
    cap = 2 << 20
    d = await daemon_factory(journal_map_size=1 << 20, retention_count=0, retention_bytes=0, retention_age_s=0, max_pending_bytes=cap)
    bus = d.ctx.bus
    value = "v" * (100 << 10)  # 100 KiB values, as in the issue
    n = 100
    emitted = 0
    peak = 0

    async def producer() -> None:  # what capture does: await bus.emit per batch
        nonlocal emitted
        for i in range(n):
            await bus.emit([KeyChange(timestamp=1, operation="put", key=f"k{i:03d}", seq=i + 1, value=value)])
            emitted += 1

    async with d.connect("types=key_change") as ws:
        await recv_json(ws)
        task = asyncio.create_task(producer())

        def blocked() -> bool:
            nonlocal peak
            peak = max(peak, bus.pending_bytes)
            return not bus.journal_ok and bus.emit_waits > 0

        await wait_for(blocked, 15, "journal full and the producer waiting")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.5:  # stays blocked while the journal cannot commit
            peak = max(peak, bus.pending_bytes)
            await asyncio.sleep(0.02)
        assert not task.done() and emitted < n
        assert peak <= cap + (100 << 10) + 1024, peak  # at most one event over the bound
        # room again: everything the producer emitted is committed, in order, nothing lost
        d.ctx.journal.retention_count = 2
        await asyncio.wait_for(task, 60)
        await wait_for(lambda: bus.journal_ok and bus.pending == 0, 30, "journal drained")
        keys = [e["key"] for e in await recv_events(ws, n, timeout=30)]
        assert keys == [f"k{i:03d}" for i in range(n)]
        assert bus.pending_bytes == 0


# --------------------------------------------------------------------------- 8: a subscriber that never reads


def _raw_ws_handshake(port: int, path: str) -> socket.socket:
    """A real WebSocket client that completes the handshake and then never reads."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)  # byte by byte: nothing after the head is read
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def _assert_reset_or_eof(s: socket.socket) -> None:
    """The server's side is gone: reading ends with a reset or EOF (after any buffered bytes)."""
    s.settimeout(5)
    try:
        while s.recv(1 << 20):
            pass
    except ConnectionResetError:
        pass


async def test_slow_subscriber_transport_is_closed_within_a_bound_and_counted_until_gone(daemon_factory: Any) -> None:
    d = await daemon_factory(subscriber_queue=20, max_subscribers=1)
    hub = d.ctx.hub
    raw = await asyncio.to_thread(_raw_ws_handshake, d.port, f"/ws/events?values=1&token={d.admin}")
    try:
        await wait_for(lambda: hub.count == 1, 5, "raw subscriber registered")
        value = "x" * (64 << 10)
        i = 0
        t_deadline = time.monotonic() + 30
        while hub.closed_by_code.get(4429, 0) == 0:
            assert time.monotonic() < t_deadline, "never closed 4429"
            await d.emit([KeyChange(timestamp=1, operation="put", key=f"k{i}", seq=i + 1, value=value) for _ in range(10)])
            i += 10
        t_close = time.monotonic()
        # closed, but its socket is still there: it still counts toward --max-subscribers
        assert hub.count == 0 and hub.closing == 1
        r = await http_request(d.port, "GET", f"/ws/events?token={d.admin}", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                                                      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                                                                      "Sec-WebSocket-Version": "13"})
        assert r.status == 503 and b"too many subscribers" in r.body
        # the peer never reads: the transport is aborted after the bound, not when the peer reads
        await wait_for(lambda: hub.closing == 0, 10, "slow subscriber's transport closed")
        gone_after = time.monotonic() - t_close
        assert gone_after < 5.0, gone_after
        await asyncio.to_thread(_assert_reset_or_eof, raw)
        async with d.connect() as ws:  # room again
            assert (await recv_json(ws))["type"] == "hello"
    finally:
        raw.close()


# --------------------------------------------------------------------------- 9: malformed heads and bodies


def _raw_http(port: int, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


async def test_repeated_headers_and_deep_json_are_400_with_at_most_one_line(daemon_factory: Any, caplog: Any) -> None:
    d = await daemon_factory()
    caplog.set_level(logging.DEBUG)
    p = d.port
    cases = [
        b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: http://a.example\r\nOrigin: http://b.example\r\n\r\n" % p,
        b"GET /ws/events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nHost: evil.example\r\nOrigin: http://evil.example\r\n\r\n" % p,
        b"GET /events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n" % p,
    ]
    for req in cases:
        before = len(caplog.records)
        status, data = await asyncio.to_thread(_raw_http, p, req)
        assert status == 400, data[:200]
        assert b"repeated" in data
        assert len(caplog.records) - before <= 1
    body = b"[" * 30_000 + b"]" * 30_000
    for payload in (body, b'{"type":"app.x","d":' + b"[" * 20_000 + b"]" * 20_000 + b"}"):
        before = len(caplog.records)
        r = await http_request(p, "POST", "/publish", payload, {"Authorization": f"Bearer {d.admin}", "Content-Type": "application/json"})
        assert r.status == 400 and "nested too deeply" in r.json()["error"], r.body[:200]
        assert len(caplog.records) - before <= 1
    assert not any(r.exc_info for r in caplog.records)
    assert "Traceback" not in "\n".join(r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- 10: DNS rebinding with auth off


async def test_insecure_no_auth_checks_host_against_served_addresses(daemon_factory: Any) -> None:
    d = await daemon_factory(insecure_no_auth=True, tokens_file=None, jwt_secret_file=None)
    p = d.port
    evil = {"Host": f"evil.example:{p}", "Origin": f"http://evil.example:{p}"}
    r = await http_request(p, "GET", "/events?since=0&timeout=0", headers=evil)
    assert r.status == 403 and "allow-host" in r.json()["error"]
    r = await http_request(p, "POST", "/publish", json.dumps({"type": "app.x"}).encode(), {**evil, "Content-Type": "application/json"})
    assert r.status == 403
    r = await http_request(p, "GET", "/events?since=0&timeout=0", headers={"Host": "evil.example"})
    assert r.status == 403
    status, _ = await asyncio.to_thread(
        _raw_http, p,
        (f"GET /ws/events HTTP/1.1\r\nHost: evil.example:{p}\r\nOrigin: http://evil.example:{p}\r\nUpgrade: websocket\r\n"
         f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode(),
    )
    assert status == 403
    for host in (f"127.0.0.1:{p}", f"localhost:{p}", f"[::1]:{p}", f"LOCALHOST:{p}"):
        r = await http_request(p, "GET", "/events?since=0&timeout=0", headers={"Host": host, "Origin": f"http://{host}"})
        assert r.status == 200, (host, r.body)
    r = await http_request(p, "GET", "/events?since=0&timeout=0", headers={"Host": f"localhost:{p + 1}"})
    assert r.status == 403  # another port is another origin
    # --allow-host lists a name the operator serves under (a reverse proxy, /etc/hosts)
    d2 = await daemon_factory(insecure_no_auth=True, tokens_file=None, jwt_secret_file=None, allow_host=("cdc.internal",))
    r = await http_request(d2.port, "GET", "/events?since=0&timeout=0", headers={"Host": f"cdc.internal:{d2.port}", "Origin": f"http://cdc.internal:{d2.port}"})
    assert r.status == 200, r.body
    r = await http_request(d2.port, "GET", "/events?since=0&timeout=0", headers={"Host": f"evil.example:{d2.port}"})
    assert r.status == 403
    # with auth on, Host is not restricted (a token is needed anyway)
    d3 = await daemon_factory()
    r = await http_request(d3.port, "GET", f"/events?since=0&timeout=0&token={d3.reader}", headers={"Host": f"evil.example:{d3.port}"})
    assert r.status == 200


def test_journal_epoch_survives_reopen_and_can_be_adopted(tmp_path: Any) -> None:
    from cdc.journal.lmdb_journal import Journal

    j = Journal(str(tmp_path / "j"), sync=False)
    e = j.epoch
    j.append([{"type": "app.x"}])
    j.close()
    j = Journal(str(tmp_path / "j"), sync=False)
    try:
        assert j.epoch == e and j.replaced is None
        j.set_epoch("feedfacecafebeef")  # a mirror adopts its source's identity
    finally:
        j.close()
    j = Journal(str(tmp_path / "j"), sync=False)
    try:
        assert j.epoch == "feedfacecafebeef"
    finally:
        j.close()
