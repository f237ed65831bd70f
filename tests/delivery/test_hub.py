"""Hub unit tests: a real LMDB journal, the real EventBus committing into it and fanning out to
the Hub, and real WebSocket connections (a bare ``websockets`` server whose handler registers a
:class:`Subscriber`, no cdc Server, no mocks)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import websockets
from websockets.asyncio.server import serve

from cdc.delivery.bus import EventBus
from cdc.delivery.hub import Filter, Hub, Subscriber
from cdc.journal.lmdb_journal import Journal
from cdc.model.wire import Record, SubState, WireFormat, build_frames

LIVE = SubState.LIVE
FORMAT_MSGPACK = WireFormat.MSGPACK
FORMAT_JSON_VALUES = WireFormat.JSON_VALUES
from cdc.model.events import KeyChange
from tests.harness.waiting import wait_for


def kc(key: str, value: str = "v", cf: str = "default", op: str = "put", end: str | None = None, seq: int = 1) -> KeyChange:
    return KeyChange(timestamp=1, operation=op, key=key, cf=cf, seq=seq, value=value, end_key=end)


class HubRig:
    """Journal + bus + hub, and a WebSocket endpoint: ``?since=N&types=a,b&prefix=p&batch=1&coalesce=MS``."""

    def __init__(self, tmp: str, queue_limit: int = 10_000) -> None:
        self.journal = Journal(tmp, map_size=256 << 20, sync=False)
        self.hub = Hub(self.journal, queue_limit=queue_limit)
        self.bus = EventBus(self.journal, on_commit=self.hub.publish)
        self.subs: list[Subscriber] = []
        self.port = 0

    async def handler(self, conn: Any) -> None:
        q = {k: v[0] for k, v in parse_qs(urlsplit(conn.request.path).query).items()}
        flt = self.hub.intern_filter(
            q["types"].split(",") if "types" in q else None, None, [q["prefix"].encode()] if "prefix" in q else None
        )
        sub = Subscriber(conn, self.hub, flt, values=True, msgpack=False, batch="batch" in q, coalesce_ms=int(q.get("coalesce", 0)))
        self.subs.append(sub)
        await self.hub.start(sub, int(q["since"]) if "since" in q else None)
        try:
            await conn.wait_closed()
        finally:
            self.hub.remove(sub)

    def url(self, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/?{query}"

    async def emit(self, events: list[Any]) -> None:
        await self.bus.emit(events)
        await self.bus.flush()


@pytest.fixture
async def rig_factory(tmp_path: Any) -> AsyncIterator[Any]:
    made: list[tuple[HubRig, Any, asyncio.Task[None]]] = []

    async def make(**kw: Any) -> HubRig:
        rig = HubRig(str(tmp_path / f"j{len(made)}"), **kw)
        server = await serve(rig.handler, "127.0.0.1", 0, write_limit=4096).__aenter__()
        rig.port = server.sockets[0].getsockname()[1]
        made.append((rig, server, asyncio.create_task(rig.bus.run())))
        return rig

    yield make
    for rig, server, task in made:
        await rig.hub.close_all()
        server.close()
        await server.wait_closed()
        await rig.bus.close()
        await asyncio.wait_for(task, 10)
        rig.journal.close()


async def recv_ids(ws: Any, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            msg = json.loads(await ws.recv())
            out.extend(m for m in (msg if isinstance(msg, list) else [msg]) if "id" in m)
    return out


# --------------------------------------------------------------------------- filters (on journal records)


def test_filters_on_committed_records(tmp_path: Any) -> None:
    j = Journal(str(tmp_path / "j"), map_size=64 << 20, sync=False)
    try:
        recs = j.append([
            kc("user:1", cf="users"), kc("order:1"), kc("a", op="delete_range", end="user:5"),
            kc("zz", op="delete_range", end="zzz"), {"type": "sync_event", "status": "completed"},
        ])  # fmt: skip
        by = {r.id: r for r in recs}

        def ids(flt: Filter) -> list[int]:
            assert [r.id for r in flt.select(recs)] == [r.id for r in recs if flt.match(r)]
            return [r.id for r in flt.select(recs)]

        assert ids(Filter()) == [1, 2, 3, 4, 5] and Filter().accept_all
        assert ids(Filter(types=["sync_event"])) == [5]
        assert ids(Filter(cfs=["users"])) == [1, 5]  # events without a cf pass
        assert ids(Filter(prefixes=[b"user:"])) == [1, 3, 5]  # [a, user:5) overlaps user:
        assert ids(Filter(keys=[b"order:1"])) == [2, 3, 5]  # [a, user:5) holds order:1
        assert ids(Filter(types=["key_change"], prefixes=[b"user:"], keys=[b"user:1"])) == [1, 3]
        assert by[1].cf == "users"
    finally:
        j.close()


# --------------------------------------------------------------------------- fan-out


async def test_encode_once_shared_filter_and_same_frames(rig_factory: Any) -> None:
    rig = await rig_factory()
    async with websockets.connect(rig.url("types=key_change")) as a, websockets.connect(rig.url("types=key_change")) as b:
        await wait_for(lambda: len(rig.subs) == 2 and all(s.state == LIVE for s in rig.subs), 10, "two live subscribers")
        assert rig.subs[0].filter is rig.subs[1].filter  # one group: matching is done once for both
        await rig.emit([kc("k1"), {"type": "sync_event", "status": "completed"}, kc("k2")])
        got_a, got_b = await recv_ids(a, 2), await recv_ids(b, 2)
        assert got_a == got_b and [e["key"] for e in got_a] == ["k1", "k2"]
    recs = rig.journal.read(0)
    r: Record = recs[0]
    assert r.frame(FORMAT_MSGPACK) is r.frame(FORMAT_MSGPACK)  # each format encoded at most once
    assert r.frame(FORMAT_JSON_VALUES) is r.frame(FORMAT_JSON_VALUES)
    assert build_frames(recs, FORMAT_MSGPACK, False)[0] is r.frame(FORMAT_MSGPACK)


async def test_replay_then_live_without_gap_or_duplicate(rig_factory: Any) -> None:
    rig = await rig_factory()
    await rig.emit([kc(f"old{i:04d}") for i in range(3000)])
    stop = asyncio.Event()

    async def produce() -> None:
        i = 0
        while not stop.is_set() and i < 3000:
            await rig.bus.emit([kc(f"new{i + k:04d}") for k in range(50)])
            i += 50
            await asyncio.sleep(0)

    producer = asyncio.create_task(produce())  # commits race the subscriber's replay
    async with websockets.connect(rig.url("since=0&batch=1"), max_size=None) as ws:
        got = await recv_ids(ws, 6000, timeout=30)
    stop.set()
    await producer
    ids = [e["id"] for e in got]
    assert ids == list(range(1, 6001)), "every id once, in order, across the replay/live switch"


async def test_since_resumes_after_the_last_id(rig_factory: Any) -> None:
    rig = await rig_factory()
    await rig.emit([kc(f"k{i}") for i in range(10)])
    async with websockets.connect(rig.url("since=7")) as ws:
        assert [e["id"] for e in await recv_ids(ws, 3)] == [8, 9, 10]
        await rig.emit([kc("k10")])
        assert [e["id"] for e in await recv_ids(ws, 1)] == [11]


async def stalled_client(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake, then never reads (tiny receive buffer)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    head = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    await loop.sock_sendall(sock, head.encode())
    answer = b""
    while not answer.endswith(b"\r\n\r\n"):  # byte by byte: not one byte of a frame is read
        answer += await asyncio.wait_for(loop.sock_recv(sock, 1), 10)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock


async def test_slow_subscriber_is_closed_4429_and_others_keep_up(rig_factory: Any) -> None:
    rig = await rig_factory(queue_limit=50)
    slow = await stalled_client(rig.port)
    try:
        async with websockets.connect(rig.url(), max_size=None) as fast:
            await wait_for(lambda: len(rig.subs) == 2 and all(s.state == LIVE for s in rig.subs), 10, "two live subscribers")
            received: list[dict[str, Any]] = []

            async def read_fast() -> None:
                async for raw in fast:
                    received.extend(m for m in [json.loads(raw)] if "id" in m)

            reader = asyncio.create_task(read_fast())
            value = "x" * 10_000
            n = 0
            while rig.hub.closed_by_code.get(4429, 0) == 0 and n < 5_000:  # until the socket buffers and the queue fill
                await rig.emit([kc(f"k{n + i}", value) for i in range(20)])
                n += 20
            assert rig.hub.closed_by_code.get(4429) == 1, f"the slow subscriber was closed ({n} events)"
            assert rig.subs[0].close_code == 4429 and rig.subs[1].state == LIVE
            await wait_for(lambda: len(received) == n, 20, "the fast subscriber got everything")
            assert [e["id"] for e in received] == list(range(1, n + 1))
            reader.cancel()
        await wait_for(lambda: rig.hub.closing == 0, 10, "the slow connection is gone (bounded close)")
    finally:
        slow.close()


async def test_coalesce_keeps_the_latest_per_key_in_id_order(rig_factory: Any) -> None:
    rig = await rig_factory()
    async with websockets.connect(rig.url("coalesce=200&types=key_change,sync_event")) as ws:
        await wait_for(lambda: rig.subs and rig.subs[0].state == LIVE, 10, "live")
        await rig.emit([kc("a", "1"), kc("b", "1"), kc("a", "2"), {"type": "sync_event", "status": "started"}, kc("a", "3")])
        got = await recv_ids(ws, 3)
        assert [(e.get("key"), e.get("value")) for e in got] == [("b", "1"), (None, None), ("a", "3")]
        assert [e["id"] for e in got] == [2, 4, 5]  # kept at their own positions, ids increasing
        await rig.emit([kc("a", "4")])
        assert [(e["id"], e["value"]) for e in await recv_ids(ws, 1)] == [(6, "4")]
