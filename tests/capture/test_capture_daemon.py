"""Capture through the real daemon: real store writer, real daemon, real WebSocket/HTTP clients."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest
import websockets

from tests.harness.clients import ResumingClient as Collector
from tests.harness.net import http_request, recv_events, recv_json
from tests.harness.waiting import wait_for
from tests.harness.writers import StoreWriter

pytestmark = pytest.mark.integration


def _kc(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "key_change"]


async def test_ws_ordered_exactly_once_several_cfs_with_values(daemon_factory, tmp_path):
    db = str(tmp_path / "store")
    with StoreWriter(db, cfs=["users", "orders"]) as w:
        d = await daemon_factory(components=None, db=db)
        async with d.connect("types=key_change&values=1") as ws:
            hello = await recv_json(ws)
            assert hello["type"] == "hello"
            want = []
            for i in range(30):
                cf = ("default", "users", "orders")[i % 3]
                seq = await w.aput(f"{cf}-{i}", f"v{i}", cf=None if cf == "default" else cf)
                want.append((seq, cf, f"{cf}-{i}", f"v{i}"))
            seq = await w.adelete("users-1", cf="users")
            want.append((seq, "users", "users-1", None))
            evs = await recv_events(ws, len(want))
        got = [(e["seq"], e.get("cf", "default"), e["key"], e.get("value")) for e in evs]
        assert got == want
        assert [e["id"] for e in evs] == sorted({e["id"] for e in evs})
        # /metrics exposes what capture counted
        m = (await http_request(d.port, "GET", "/metrics")).body.decode()
        assert "cdc_wal_events_captured" in m and "cdc_capture_lag_bytes" in m
        w.kill()


async def test_kill9_twice_while_writer_keeps_writing(daemon_proc_factory, tmp_path):
    db = str(tmp_path / "store")
    # default 64 MiB memtable: the WAL outlives the daemon's downtime (else a gap is expected)
    with StoreWriter(db) as w:
        w.put("seed", "1")
        p = daemon_proc_factory(db=db)
        col = Collector(lambda since: p.ws_url(f"since={since}&types=key_change,capture_gap&batch=1"))
        task = asyncio.create_task(col.run())
        stop = threading.Event()

        def keep_writing() -> None:
            i = 0
            while not stop.is_set():  # ~10k puts/s: well within what the daemon sustains
                w.put_many(50, batch=10, prefix="k", start=i, value_size=40)
                i += 50
                stop.wait(0.005)

        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            for round_ in range(2):
                n = len(col.events)
                await wait_for(lambda: len(col.events) > n + 200, 20, f"events before kill {round_}")
                await asyncio.to_thread(p.kill9)
                await asyncio.to_thread(p.restart)
            await wait_for(lambda: len(col.events) > 2000, 30, "more events after restarts")
        finally:
            stop.set()
            await asyncio.to_thread(writer.join)
        final = await w.aseq()
        try:
            await wait_for(lambda: col.events and col.events[-1].get("seq") == final, 30, f"catch-up to {final}")
            await asyncio.sleep(0.1)  # nothing more may arrive
        finally:
            col.stopping.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert [e["type"] for e in col.events if e["type"] != "key_change"] == []  # no gap
        assert [e["seq"] for e in col.events] == list(range(1, final + 1))
        ids = [e["id"] for e in col.events]
        assert ids == sorted(set(ids))
        w.kill()


async def test_wal_deleted_while_daemon_down_gap_event_and_readiness(daemon_proc_factory, tmp_path):
    db = str(tmp_path / "store")
    with StoreWriter(db) as w:
        w.put_many(20, batch=10, prefix="a")
        p = daemon_proc_factory(db=db)
        async with websockets.connect(p.ws_url("since=0&types=key_change")) as ws:
            await recv_json(ws)
            await recv_events(ws, 20)
        await asyncio.to_thread(p.terminate)
        await w.aput_many(30, batch=10, prefix="b")
        await w.aflush()  # that WAL is deleted before the daemon could read it
        await w.aput_many(5, batch=5, prefix="c")
        await asyncio.to_thread(p.restart)
        async with websockets.connect(p.ws_url("since=0&types=capture_gap,key_change")) as ws:
            await recv_json(ws)
            evs = await recv_events(ws, 20 + 1 + 5)
        gaps = [e for e in evs if e["type"] == "capture_gap"]
        assert [(g["from_seq"], g["to_seq"]) for g in gaps] == [(21, 50)]
        assert [e["seq"] for e in _kc(evs)] == list(range(1, 21)) + list(range(51, 56))
        r = await http_request(p.port, "GET", "/health/ready")
        assert r.status == 503 and "21..50" in r.json()["reason"]
        m = (await http_request(p.port, "GET", "/metrics")).body.decode()
        assert "cdc_capture_gaps_total 1.0" in m
        w.kill()


async def test_store_dir_renamed_away_and_back_readiness(daemon_factory, tmp_path):
    db = str(tmp_path / "store")
    with StoreWriter(db) as w:
        await w.aput("a", "1")
        d = await daemon_factory(components=None, db=db, rescan_interval_s=0.1)
        await wait_for(lambda: d.ctx.health.healthy("startup"), 10, "startup")
        assert (await http_request(d.port, "GET", "/health/ready")).status == 200
        os.rename(db, db + ".away")
        try:
            await wait_for(lambda: not d.ctx.health.healthy("readiness"), 10, "readiness unhealthy")
            r = await http_request(d.port, "GET", "/health/ready")
            assert r.status == 503 and "WAL directory" in r.json()["reason"]
        finally:
            os.rename(db + ".away", db)
        await wait_for(lambda: d.ctx.health.healthy("readiness"), 10, "readiness healthy again")
        async with d.connect("since=0&types=key_change,health_change") as ws:
            await recv_json(ws)
            seq = await w.aput("b", "2")
            evs = await recv_events(ws, 1 + 4)  # a, unhealthy, healthy, b (+ startup)
        kinds = [(e["type"], e.get("probe"), e.get("status")) for e in evs if e["type"] == "health_change" and e["probe"] == "readiness"]
        assert kinds[-2:] == [("health_change", "readiness", "unhealthy"), ("health_change", "readiness", "healthy")]
        assert [e["seq"] for e in _kc(evs)] == [1, seq]
        w.kill()


async def test_leveldb_store_over_websocket_with_binary_keys(daemon_factory, tmp_path):
    import base64

    db = str(tmp_path / "ldb")
    with StoreWriter(db, kind="leveldb") as w:
        await w.aput("a", "1")
        d = await daemon_factory(components=None, db=db)
        assert d.ctx.store.kind == "leveldb"
        async with d.connect("since=0&types=key_change&values=1") as ws:
            await recv_json(ws)
            await w.aput(b"\xff\xfe", b"\xff\x01")
            await w.adelete("a")
            evs = await recv_events(ws, 3)
        assert [(e["operation"], e["seq"]) for e in evs] == [("put", 1), ("put", 2), ("delete", 3)]
        assert evs[1]["key_encoding"] == "base64" and base64.b64decode(evs[1]["key"]) == b"\xff\xfe"
        assert evs[1]["value_encoding"] == "base64" and base64.b64decode(evs[1]["value"]) == b"\xff\x01"
        w.kill()
