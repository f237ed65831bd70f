"""``coalesce=MS``: at most one key_change per key per window (the latest), other types untouched,
ids increasing; live, replay (``since``) and ``/events``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cdc.model.events import KeyChange, SyncEvent
from cdc.delivery.hub import Coalescer, coalesce_page
from cdc.model.wire import Record
from tests.harness.net import http_request, recv_events, recv_json


def kc(i: int, key: str, cf: str = "default", **kw: Any) -> KeyChange:
    return KeyChange(timestamp=1, operation=kw.pop("operation", "put"), key=key, cf=cf, seq=i, value=f"v{i}", **kw)


def rec(i: int, key: bytes | None, ts: int = 0, type_: str = "key_change", cf: str = "default", end: bytes | None = None) -> Record:
    return Record(i, type_, cf, key, end, ts, b'{"id":%d}' % i, b"")


def test_coalescer_keeps_the_latest_per_cf_and_key_in_id_order() -> None:
    co = Coalescer(100)
    co.add([rec(1, b"a"), rec(2, b"b"), rec(3, b"a"), rec(4, None, type_="sync_event"), rec(5, b"a", cf="other"), rec(6, b"a", end=b"z")])
    out, hi = co.take()
    assert [r.id for r in out] == [2, 3, 4, 5, 6] and hi == 6
    assert co.take() == ([], 6)
    page = [rec(1, b"a", ts=0), rec(2, b"a", ts=99), rec(3, b"a", ts=100), rec(4, b"a", ts=150), rec(5, b"b", ts=150)]
    assert [r.id for r in coalesce_page(page, 100)] == [2, 4, 5]  # windows [0,100) and [100,200)


async def test_live_coalesce(daemon: Any) -> None:
    async with daemon.connect("coalesce=300&values=1") as ws, daemon.connect("values=1&types=key_change") as plain:
        hello = await recv_json(ws)
        assert hello["coalesce_ms"] == 300
        await recv_json(plain)
        base = daemon.ctx.journal.latest_id
        t0 = time.monotonic()
        for i in range(20):  # 20 separate commits within one window
            await daemon.emit([kc(2 * i, "hot"), kc(2 * i + 1, "warm")] + ([SyncEvent(timestamp=1, status="started")] if i == 5 else []))
        got = await recv_events(ws, 3)
        assert time.monotonic() - t0 >= 0.25  # held for the window
        assert [e["type"] for e in got] == ["sync_event", "key_change", "key_change"]
        assert [(e["key"], e["value"]) for e in got[1:]] == [("hot", "v38"), ("warm", "v39")]  # the latest values
        assert [e["id"] for e in got] == sorted(e["id"] for e in got) and got[-1]["id"] == base + 41
        assert len(await recv_events(plain, 40)) == 40  # an ordinary subscriber gets every change
        await daemon.emit([kc(100, "hot")])  # next window
        (ev,) = await recv_events(ws, 1)
        assert ev["value"] == "v100" and ev["id"] == base + 42


async def test_replay_and_poll_coalesce(daemon: Any) -> None:
    base = daemon.ctx.journal.latest_id
    await daemon.emit([kc(i, "r" if i % 2 else "s") for i in range(100)] + [SyncEvent(timestamp=1, status="completed")])  # one commit
    async with daemon.connect(f"since={base}&coalesce=2000&batch=1") as ws:
        await recv_json(ws)
        got = await recv_events(ws, 3)
        assert [(e["type"], e.get("key")) for e in got] == [("key_change", "s"), ("key_change", "r"), ("sync_event", None)]
        assert [e["id"] - base for e in got] == [99, 100, 101]
        await daemon.emit([kc(200, "r")])  # live after the replay, coalesced too
        (ev,) = await recv_events(ws, 1)
        assert ev["seq"] == 200
    r = await http_request(daemon.port, "GET", f"/events?since={base}&coalesce=60000&types=key_change&timeout=0", headers={"Authorization": f"Bearer {daemon.reader}"})
    body = r.json()
    # s's latest is 98; r's latest in its 60 s window is 200 (99 too when the window closed in between)
    assert [e["seq"] for e in body["events"]] in ([98, 200], [98, 99, 200])
    assert body["cursor"] == daemon.ctx.journal.latest_id
    for bad in ("-1", "60001", "x"):
        r = await http_request(daemon.port, "GET", f"/events?coalesce={bad}&timeout=0", headers={"Authorization": f"Bearer {daemon.reader}"})
        assert r.status == 400 and b"coalesce" in r.body


async def test_closed_subscriber_timer_is_harmless(daemon: Any) -> None:
    async with daemon.connect("coalesce=50") as ws:
        await recv_json(ws)
        await daemon.emit([kc(1, "k")])
    await asyncio.sleep(0)
    await daemon.emit([kc(2, "k")])
    hub = daemon.ctx.hub
    assert hub.count == 0
