"""Exact-key filters: ``key`` on /ws/events and /events, ``"key"`` in the subscribe op, token scope."""

from __future__ import annotations

import json
from typing import Any

import pytest
import websockets

from cdc.model.events import KeyChange, SyncEvent
from cdc.delivery.hub import Filter
from cdc.model.wire import Record
from tests.harness.daemon import token
from tests.harness.net import http_request, recv_events, recv_json


def rec(key: bytes | None = b"k", end_key: bytes | None = None, type_: str = "key_change") -> Record:
    return Record(1, type_, "default" if key is not None else None, key, end_key, 0, b'{"id":1}', b"")


def test_key_filter_rules() -> None:
    f = Filter(keys=[b"user:1", b"user:3"])
    assert not f.accept_all
    assert f.match(rec(b"user:1")) and f.match(rec(b"user:3"))
    assert not f.match(rec(b"user:10")) and not f.match(rec(b"user:"))  # exact, not a prefix
    assert f.match(rec(None, type_="sync_event"))  # keyless events pass
    assert f.match(rec(b"user:0", b"user:2"))  # [user:0, user:2) holds user:1
    assert not f.match(rec(b"user:1a", b"user:3"))  # end is exclusive
    assert f.select([rec(b"user:1"), rec(b"x"), rec(b"a", b"z")]) == [rec(b"user:1"), rec(b"a", b"z")]
    both = Filter(prefixes=[b"user:"], keys=[b"user:1", b"order:1"])  # AND, like every other part
    assert both.match(rec(b"user:1")) and not both.match(rec(b"order:1")) and not both.match(rec(b"user:2"))
    typed = Filter(types=["key_change"], keys=[b"\xff\x00"])
    assert typed.select([rec(b"\xff\x00"), rec(None, type_="sync_event")]) == [rec(b"\xff\x00")]
    assert Filter(keys=[b"a", b"a"]).key == Filter(keys=[b"a"]).key != Filter(prefixes=[b"a"]).key
    assert Filter(keys=[b"b", b"a"]).to_json()["key"] == ["a", "b"]


def kc(i: int, key: str, **kw: Any) -> KeyChange:
    return KeyChange(timestamp=1, operation=kw.pop("operation", "put"), key=key, seq=i, **kw)


def _batch() -> list[Any]:
    return [
        kc(1, "user:1"),
        kc(2, "user:10"),
        kc(3, "user:2,x"),  # a comma inside a key: key values are never split
        kc(4, "a", operation="delete_range", end_key="user:2"),  # holds user:1
        SyncEvent(timestamp=1, status="started"),
        kc(5, "user:1"),
    ]


async def test_key_on_websocket_and_events(daemon: Any) -> None:
    base = daemon.ctx.journal.latest_id
    async with daemon.connect("key=user:1&key=user:2,x&types=key_change") as ws:
        hello = await recv_json(ws)
        assert hello["filter"]["key"] == ["user:1", "user:2,x"]
        await daemon.emit(_batch())
        got = await recv_events(ws, 4)
        assert [e["id"] - base for e in got] == [1, 3, 4, 6]
    r = await http_request(daemon.port, "GET", f"/events?since={base}&key=user:1&timeout=0", headers={"Authorization": f"Bearer {daemon.reader}"})
    assert r.status == 200
    assert [e["id"] - base for e in r.json()["events"]] == [1, 4, 5, 6]  # sync_event has no key: passes


async def test_key_in_subscribe_op(daemon: Any) -> None:
    async with daemon.connect("types=key_change") as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"op": "subscribe", "key": ["user:10"]}))
        sub = await recv_json(ws)
        assert sub["type"] == "subscribed" and sub["filter"]["key"] == ["user:10"] and sub["filter"]["types"] == ["key_change"]
        await daemon.emit(_batch())
        got = await recv_events(ws, 2)
        assert [e["key"] for e in got] == ["user:10", "a"]  # [a, user:2) holds user:10
        await ws.send(json.dumps({"op": "subscribe", "key": None}))  # null: no key filter any more
        sub = await recv_json(ws)
        assert "key" not in sub["filter"]
        await ws.send(json.dumps({"op": "subscribe", "key": ["x"] * 257}))
        err = await recv_json(ws)
        assert err["type"] == "error" and "256" in err["error"]


async def test_key_scope_and_caps(daemon: Any) -> None:
    scoped = token(prefix=["user:"])
    async with daemon.connect("key=user:1", tok=scoped) as ws:  # under the token's prefix
        await recv_json(ws)
        await daemon.emit(_batch())
        got = await recv_events(ws, 4)
        assert [e.get("key") for e in got] == ["user:1", "a", None, "user:1"]
    with pytest.raises(websockets.exceptions.ConnectionClosed) as exc:
        async with daemon.connect("key=order:1", tok=scoped) as ws:
            await recv_json(ws)
            await recv_json(ws)
    assert exc.value.rcvd.code == 4403
    async with daemon.connect("key=user:1", tok=scoped) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"op": "subscribe", "key": ["order:1"]}))
        err = await recv_json(ws)
        assert err["type"] == "error" and err["code"] == 4403
    r = await http_request(daemon.port, "GET", "/events?key=order:1&timeout=0", headers={"Authorization": f"Bearer {scoped}"})
    assert r.status == 403
    many = "&".join(f"key=k{i}" for i in range(257))
    r = await http_request(daemon.port, "GET", f"/events?{many}&timeout=0", headers={"Authorization": f"Bearer {daemon.reader}"})
    assert r.status == 400 and b"key: at most 256" in r.body
    r = await http_request(daemon.port, "GET", "/events?key=" + "x" * 1025 + "&timeout=0", headers={"Authorization": f"Bearer {daemon.reader}"})
    assert r.status == 400
