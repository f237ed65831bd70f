"""Live delivery over real WebSockets and HTTP against an in-process daemon."""

from __future__ import annotations

import asyncio
import json
import socket

import msgspec
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from cdc.model.events import KeyChange, SyncEvent
from tests.harness.net import http_request, publish, recv_events, recv_json
from tests.harness.waiting import wait_for


def kc(i: int, key: str | None = None, cf: str = "default", value: str | None = None, **kw) -> KeyChange:
    return KeyChange(timestamp=1_700_000_000_000 + i, operation=kw.pop("operation", "put"), key=key or f"k{i:06d}", cf=cf, seq=i, value=value, **kw)


async def test_hello_then_published_event(daemon):
    async with daemon.connect() as ws:
        hello = await recv_json(ws)
        assert hello["type"] == "hello" and "id" not in hello
        assert hello["latest_id"] == daemon.ctx.journal.latest_id and hello["heartbeat_ms"] == 15_000 and hello["version"]
        r = await publish(daemon.port, daemon.admin, {"type": "sync_event", "status": "started", "details": {"n": 1}})
        assert r.status == 202, r.body
        (ev,) = await recv_events(ws, 1)
        assert ev["id"] == r.json()["id"] and ev["type"] == "sync_event" and ev["details"] == {"n": 1}
        assert isinstance(ev["timestamp"], int)


async def test_ordered_exactly_once_batch_and_single(daemon):
    async with daemon.connect() as a, daemon.connect("batch=1") as b:
        await recv_json(a), await recv_json(b)
        start = daemon.ctx.journal.latest_id
        for chunk in range(20):
            await daemon.ctx.bus.emit([kc(chunk * 100 + i) for i in range(100)])
        ea = await recv_events(a, 2000)
        eb = await recv_events(b, 2000)
        want = list(range(start + 1, start + 2001))
        assert [e["id"] for e in ea] == want
        assert [e["id"] for e in eb] == want
        assert "value" not in ea[0]


async def test_resume_after_reconnect(daemon):
    await daemon.emit([kc(i) for i in range(10)])
    async with daemon.connect("since=0") as ws:
        await recv_json(ws)
        got = await recv_events(ws, 10)
    last = got[-1]["id"]
    await daemon.emit([kc(100 + i) for i in range(7)])
    async with daemon.connect(f"since={last}") as ws:
        await recv_json(ws)
        more = await recv_events(ws, 7)
        assert [e["id"] for e in more] == list(range(last + 1, last + 8))
        await daemon.emit([kc(200)])
        (live,) = await recv_events(ws, 1)
        assert live["id"] == last + 8


async def test_replay_while_committing_has_no_gap_or_duplicate(daemon):
    await daemon.emit([kc(i) for i in range(30_000)])
    stop = asyncio.Event()

    async def producer():
        i = 0
        while not stop.is_set():
            await daemon.ctx.bus.emit([kc(100_000 + i + j) for j in range(50)])
            i += 50
            await asyncio.sleep(0.001)

    prod = asyncio.create_task(producer())
    try:
        async with daemon.connect("since=0&batch=1") as ws:
            await recv_json(ws)
            await wait_for(lambda: daemon.ctx.journal.latest_id > 35_000, 20, "producer progress")
            stop.set()
            await prod
            await daemon.ctx.bus.flush()
            latest = daemon.ctx.journal.latest_id
            events = await recv_events(ws, latest, timeout=30)
            assert [e["id"] for e in events] == list(range(1, latest + 1))
    finally:
        stop.set()
        await prod


async def test_cursor_expired_sends_reset_then_live(daemon_factory):
    d = await daemon_factory(retention_count=10)
    await d.emit([kc(i) for i in range(50)])
    async with d.connect("since=3") as ws:
        await recv_json(ws)
        reset = await recv_json(ws)
        assert reset["type"] == "reset" and reset["reason"] == "cursor_expired"
        assert reset["oldest_id"] == d.ctx.journal.oldest_id and reset["latest_id"] == d.ctx.journal.latest_id
        await d.emit([kc(99)])
        (ev,) = await recv_events(ws, 1)
        assert ev["id"] == reset["latest_id"] + 1
    async with d.connect("since=999999") as ws:  # ahead of the journal (e.g. state wiped)
        await recv_json(ws)
        reset = await recv_json(ws)
        assert reset["type"] == "reset" and reset["reason"] == "cursor_ahead"
    async with d.connect("since=0") as ws:  # 0 = from the oldest retained, no reset
        await recv_json(ws)
        evs = await recv_events(ws, 10)
        assert evs[0]["id"] == d.ctx.journal.oldest_id


async def test_filters_types_cf_prefix_values(daemon):
    events = [
        kc(1, key="user:1", value="v1"),
        kc(2, key="order:1", value="v2"),
        kc(3, key="user:2", cf="meta", value="v3"),
        kc(4, key="a", operation="delete_range", end_key="user:5"),  # overlaps user:
        kc(5, key="zz", operation="delete_range", end_key="zzz"),
        SyncEvent(timestamp=1, status="started"),
    ]
    queries = {
        "types=sync_event": [6],
        "types=key_change&cf=meta": [3],
        "prefix=user:": [1, 3, 4, 6],
        "prefix=user:&types=key_change&cf=default": [1, 4],
        "types=key_change,sync_event&prefix=order:": [2, 4, 6],  # [a, user:5) covers order:
    }
    conns = {}
    try:
        for q in queries:
            conns[q] = await daemon.connect(q).__aenter__()
            await recv_json(conns[q])
        vals = await daemon.connect("values=1&types=key_change").__aenter__()
        conns["v"] = vals
        await recv_json(vals)
        base = daemon.ctx.journal.latest_id
        await daemon.emit(events)
        for q, want in queries.items():
            got = await recv_events(conns[q], len(want))
            assert [e["id"] - base for e in got] == want, q
        got = await recv_events(vals, 5)
        assert got[0]["value"] == "v1" and "value" not in got[3]
    finally:
        for c in conns.values():
            await c.close()


async def test_msgpack_and_batch_frames(daemon):
    async with daemon.connect("format=msgpack&batch=1&values=1") as ws:
        hello = msgspec.msgpack.decode(await ws.recv())
        assert hello["type"] == "hello"
        await daemon.emit([kc(i, value="x") for i in range(20)])
        got = []
        while len(got) < 20:
            raw = await asyncio.wait_for(ws.recv(), 5)
            assert isinstance(raw, bytes)
            m = msgspec.msgpack.decode(raw)
            got.extend(m if isinstance(m, list) else [m])
        assert [e["value"] for e in got] == ["x"] * 20
    async with daemon.connect("batch=1") as ws:
        await recv_json(ws)
        await daemon.emit([kc(i) for i in range(5)])
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert isinstance(frame, list) and len(frame) == 5


async def test_runtime_subscribe_ping_and_malformed(daemon):
    async with daemon.connect() as ws:
        await recv_json(ws)
        for bad in ["not json", "[1,2]", '{"op": 5}', '{"op": "nope"}', '{"op": "subscribe", "types": 3}', b"\x00\x01"]:
            await ws.send(bad)
            err = await recv_json(ws)
            assert err["type"] == "error" and err["error"], bad
        await ws.send(json.dumps({"op": "ping", "ref": 7}))
        pong = await recv_json(ws)
        assert pong["type"] == "pong" and pong["ref"] == 7
        await ws.send(json.dumps({"op": "subscribe", "types": ["sync_event"]}))
        sub = await recv_json(ws)
        assert sub["type"] == "subscribed" and sub["filter"]["types"] == ["sync_event"]
        await daemon.emit([kc(1), SyncEvent(timestamp=1, status="completed")])
        (ev,) = await recv_events(ws, 1)
        assert ev["type"] == "sync_event"
        await ws.send(json.dumps({"op": "subscribe", "types": None, "prefix": ["k0"]}))
        assert (await recv_json(ws))["type"] == "subscribed"
        await daemon.emit([kc(2, key="zz"), kc(3, key="k01")])
        (ev,) = await recv_events(ws, 1)
        assert ev["key"] == "k01"


async def test_polling_equals_stream(daemon):
    async with daemon.connect("since=0&types=key_change&prefix=p") as ws:
        await recv_json(ws)
        await daemon.emit([kc(i, key=("p" if i % 3 else "q") + str(i)) for i in range(300)])
        stream = await recv_events(ws, 200)
    polled = []
    cursor = 0
    while len(polled) < 200:
        r = await http_request(daemon.port, "GET", f"/events?since={cursor}&types=key_change&prefix=p&timeout=2&limit=77", headers={"Authorization": f"Bearer {daemon.reader}"})
        assert r.status == 200
        body = r.json()
        polled.extend(body["events"])
        cursor = body["cursor"]
    assert polled == stream


async def test_long_poll_waits_for_matching_event(daemon):
    base = daemon.ctx.journal.latest_id

    async def later():
        await asyncio.sleep(0.2)
        await daemon.emit([kc(1, key="other")])  # not matching: the poll keeps waiting
        await asyncio.sleep(0.2)
        await daemon.emit([kc(2, key="mine")])

    t = asyncio.create_task(later())
    r = await http_request(daemon.port, "GET", f"/events?since={base}&prefix=mine&timeout=10&token={daemon.reader}")
    await t
    body = r.json()
    assert [e["key"] for e in body["events"]] == ["mine"] and body["cursor"] == base + 2
    r = await http_request(daemon.port, "GET", f"/events?since={base + 2}&timeout=0.2&token={daemon.reader}")
    assert r.json() == {"events": [], "cursor": base + 2, "epoch": daemon.ctx.journal.epoch}
    r = await http_request(daemon.port, "GET", f"/events?since=999999&timeout=0&token={daemon.reader}")
    assert r.json()["reset"]["reason"] == "cursor_ahead"


async def test_slow_subscriber_closed_4429_fast_one_keeps_up(daemon_factory):
    d = await daemon_factory(subscriber_queue=500)
    # A raw client that upgrades and then never reads.
    sock = socket.create_connection(("127.0.0.1", d.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(
        (
            f"GET /ws/events?token={d.admin}&values=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await wait_for(lambda: d.ctx.hub.count == 1, 5, "slow subscriber registered")
    try:
        async with d.connect("values=1") as fast:
            await recv_json(fast)
            n = 20_000
            total = 0
            for chunk in range(n // 500):
                await d.ctx.bus.emit([kc(chunk * 500 + i, value="v" * 200) for i in range(500)])
                got = await recv_events(fast, 500, timeout=10)
                total += len(got)
            assert total == n
            await wait_for(lambda: d.ctx.hub.closed_by_code.get(4429, 0) == 1, 10, "4429 close")
            assert d.ctx.hub.count == 1
    finally:
        sock.close()


async def test_origin_allowlist_403_before_upgrade(daemon_factory):
    d = await daemon_factory(allow_origin=("https://app.example",))
    with pytest.raises(websockets.InvalidStatus) as ei:
        async with d.connect(origin="https://evil.example"):
            pass
    assert ei.value.response.status_code == 403
    async with d.connect(origin="https://app.example") as ws:
        assert (await recv_json(ws))["type"] == "hello"
    async with d.connect(origin=f"http://127.0.0.1:{d.port}") as ws:  # the daemon's own dashboard
        assert (await recv_json(ws))["type"] == "hello"
    r = await http_request(d.port, "OPTIONS", "/events", headers={"Origin": "https://app.example"})
    assert r.status == 204 and r.headers["access-control-allow-origin"] == "https://app.example"


async def test_max_subscribers_and_inbound_size(daemon_factory):
    d = await daemon_factory(max_subscribers=1, max_message_bytes=1024)
    async with d.connect() as ws:
        await recv_json(ws)
        with pytest.raises(websockets.InvalidStatus) as ei:
            async with d.connect():
                pass
        assert ei.value.response.status_code == 503
        await ws.send("x" * 5000)
        with pytest.raises(ConnectionClosed) as ci:
            await asyncio.wait_for(ws.recv(), 5)
        assert ci.value.rcvd.code == 1009


async def test_shutdown_closes_1001(daemon_factory):
    d = await daemon_factory()
    async with d.connect() as ws:
        await recv_json(ws)
        await d.stop()
        with pytest.raises(ConnectionClosed) as ci:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        assert ci.value.rcvd.code == 1001


async def test_http_routes(daemon):
    for path, status in [("/health/live", 200), ("/health/ready", 200), ("/health/startup", 200), ("/nope", 404)]:
        r = await http_request(daemon.port, "GET", path)
        assert r.status == status, path
    r = await http_request(daemon.port, "GET", "/schema.json")
    assert r.status == 200 and "key_change" in r.body.decode()
    r = await http_request(daemon.port, "GET", "/")
    assert r.status == 200 and b"<html" in r.body.lower()
    r = await http_request(daemon.port, "GET", "/client.js")
    assert r.status == 200 and b"CdcClient" in r.body
    r = await http_request(daemon.port, "GET", "/metrics")
    text = r.body.decode()
    for name in ["cdc_events_delivered_total", "cdc_subscribers", "cdc_subscribers_closing", "cdc_bus_pending_bytes", "cdc_journal_bytes", "cdc_capture_lag_bytes", "cdc_capture_lag_seq", "cdc_decode_errors_total", "cdc_events_captured_total"]:
        assert name in text, name
    r = await http_request(daemon.port, "GET", "/ws/events")
    assert r.status == 426


async def test_large_poll_response_arrives_whole(daemon):
    base = daemon.ctx.journal.latest_id
    await daemon.emit([kc(i, value="v" * 500) for i in range(10_000)])
    r = await http_request(daemon.port, "GET", f"/events?since={base}&limit=10000&values=1&types=key_change&timeout=0&token={daemon.admin}")
    body = r.json()
    assert len(body["events"]) == 10_000 and body["events"][-1]["value"] == "v" * 500
    assert int(r.headers["content-length"]) > 5_000_000


async def test_shutdown_answers_long_polls_at_once(daemon_factory):
    d = await daemon_factory()
    poll = asyncio.create_task(http_request(d.port, "GET", f"/events?timeout=30&token={d.reader}"))
    await wait_for(lambda: d.ctx.hub._published is not None, 5, "poll waiting")
    t0 = asyncio.get_running_loop().time()
    await d.stop()
    r = await poll
    assert r.status == 200 and r.json()["events"] == []
    assert asyncio.get_running_loop().time() - t0 < 5
