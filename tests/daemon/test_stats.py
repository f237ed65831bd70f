"""``types=stats`` frames: a real store written by rocksdict, the real daemon (capture + ops
watchers), real WebSocket and HTTP clients."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import websockets

from cdc.delivery.stats import StatsCollector
from tests.harness.daemon import token
from tests.harness.net import http_request, recv_json
from tests.harness.writers import StoreWriter

COUNT_KEYS = {"put", "delete", "merge", "delete_range", "bytes"}
TOP_KEYS = {
    "type", "timestamp", "interval_ms", "events_per_s", "cf", "capture_lag_bytes", "capture_lag_ms",
    "wal_bytes", "sst_bytes", "running_compactions", "subscribers",
}


async def _next_stats(ws: Any, pred: Any = lambda s: True, timeout: float = 15.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        m = await recv_json(ws, max(0.1, end - loop.time()))
        items = m if isinstance(m, list) else [m]
        for it in items:
            assert "id" not in it or it["type"] != "stats"
            if it.get("type") == "stats" and pred(it):
                return it


async def test_stats_frames_count_what_capture_saw(daemon_factory: Any, tmp_path: Any) -> None:
    db = str(tmp_path / "store")
    with StoreWriter(db, cfs=["users"]) as w:
        w.put("seed", "1")
        d = await daemon_factory(components=None, db=db, stats_interval_ms=200)
        async with d.connect("types=stats") as ws, d.connect("types=stats&format=msgpack&batch=1") as mp, d.connect() as plain:
            await recv_json(ws), await recv_json(mp), await recv_json(plain)
            first = await _next_stats(ws)
            assert set(first) == TOP_KEYS and first["type"] == "stats" and first["interval_ms"] == 200
            assert "id" not in first and first["subscribers"] == 3
            for cf in first["cf"].values():
                assert set(cf) == {"interval", "total"} and set(cf["interval"]) == COUNT_KEYS
            await w.aput("user:1", "abc", cf="users")  # 6 + 3 bytes
            await w.aput("user:2", "de", cf="users")  # 6 + 2
            await w.adelete("user:1", cf="users")  # 6
            await w.adelete_range("a", "b")  # 1 + 1
            s = await _next_stats(ws, lambda s: s["cf"].get("users", {}).get("total", {}).get("delete") == 1)
            users = s["cf"]["users"]["total"]
            assert users == {"put": 2, "delete": 1, "merge": 0, "delete_range": 0, "bytes": 23}
            assert s["cf"]["default"]["total"]["delete_range"] == 1 and s["cf"]["default"]["total"]["put"] >= 1
            assert s["wal_bytes"] > 0 and s["capture_lag_bytes"] >= 0 and s["capture_lag_ms"] >= 0
            later = await _next_stats(ws, lambda x: x["timestamp"] > s["timestamp"])
            assert later["cf"]["users"]["interval"]["put"] == 0 and later["cf"]["users"]["total"] == users  # interval resets
            raw = await asyncio.wait_for(mp.recv(), 10)
            while not (isinstance(raw, bytes) and msgspec.msgpack.decode(raw).get("type") == "stats"):
                raw = await asyncio.wait_for(mp.recv(), 10)
            got = msgspec.msgpack.decode(raw)
            assert isinstance(got, dict) and set(got) == TOP_KEYS  # one object, also with batch=1
            # a subscriber without types=stats never gets one ("all types" excludes stats)
            await w.aput("k", "v")
            for _ in range(3):
                m = await recv_json(plain, 10)
                for it in m if isinstance(m, list) else [m]:
                    assert it.get("type") != "stats"
            # flush + compaction: SST bytes per cf and level
            await asyncio.to_thread(w.flush, "users")
            s = await _next_stats(ws, lambda x: x["sst_bytes"].get("users", {}).get("0", 0) > 0)
            assert all(isinstance(v, int) for v in s["sst_bytes"]["users"].values())
            # /events?types=stats answers with the latest stats object as a field
            r = await http_request(d.port, "GET", "/events?types=stats&timeout=5", headers={"Authorization": f"Bearer {d.reader}"})
            body = r.json()
            assert r.status == 200 and body["events"] == [] and set(body["stats"]) == TOP_KEYS
            r = await http_request(d.port, "GET", "/events?types=sync_event&timeout=0", headers={"Authorization": f"Bearer {d.reader}"})
            assert "stats" not in r.json()
        await d.stop()


async def test_stats_are_encoded_once_and_scoped_by_cf(daemon: Any) -> None:
    scoped = token(cf=["users"])
    async with daemon.connect("types=stats,sync_event", tok=scoped) as a, daemon.connect("types=stats") as b, daemon.connect("types=stats") as c:
        await recv_json(a), await recv_json(b), await recv_json(c)
        stats: StatsCollector = daemon.ctx.server.stats
        fake = dict(stats.compute())
        fake["cf"] = {"users": {"interval": {}, "total": {}}, "orders": {"interval": {}, "total": {}}}
        fake["sst_bytes"] = {"users": {"0": 1}, "orders": {"1": 2}}
        assert stats.send(fake) == 3
        ga, gb, gc = await _next_stats(a), await _next_stats(b), await _next_stats(c)
        assert set(ga["cf"]) == {"users"} and set(ga["sst_bytes"]) == {"users"}  # the token's cf scope
        assert set(gb["cf"]) == {"users", "orders"} and gb == gc
    denied = token(types=["key_change"])
    async with daemon.connect("types=stats", tok=denied) as ws:
        try:
            await recv_json(ws)
            raise AssertionError("a token without stats in its types must be refused")
        except websockets.exceptions.ConnectionClosed as exc:
            assert exc.rcvd.code == 4403
    async with daemon.connect() as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"op": "subscribe", "types": ["stats"]}))
        assert (await recv_json(ws))["filter"]["types"] == ["stats"]
        daemon.ctx.server.stats.send(daemon.ctx.server.stats.compute())
        assert (await _next_stats(ws))["type"] == "stats"

