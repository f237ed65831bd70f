"""The daemon as a subprocess against a store another process keeps writing: kill -9, SIGTERM."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.harness.clients import ResumingClient
from tests.harness.net import recv_json
from tests.harness.waiting import wait_for
from tests.harness.writers import StoreWriter

pytestmark = pytest.mark.integration


async def test_kill9_mid_stream_then_restart_no_loss_no_duplicate(daemon_proc_factory, tmp_path):
    db = str(tmp_path / "store")
    with StoreWriter(db) as w:
        w.put("seed", "1")
        p = daemon_proc_factory(db=db)
        client = ResumingClient(lambda since: p.ws_url(f"since={since}&types=key_change&batch=1"))
        task = asyncio.create_task(client.run())
        try:
            writing = asyncio.create_task(asyncio.to_thread(w.put_many, 3000, 10, "a"))
            await wait_for(lambda: len(client.events) >= 300, 20, "first events")
            await asyncio.to_thread(p.kill9)
            await writing
            await asyncio.to_thread(w.put_many, 1000, 10, "b")  # written while the daemon is down
            await asyncio.to_thread(p.restart)
            await asyncio.to_thread(w.put_many, 500, 10, "c")
            want = ["seed"] + [f"a{i:010d}" for i in range(3000)] + [f"b{i:010d}" for i in range(1000)] + [f"c{i:010d}" for i in range(500)]
            await wait_for(lambda: len(client.events) >= len(want), 60, f"all {len(want)} events")
            await asyncio.sleep(0.2)  # nothing more must arrive
            ids = [e["id"] for e in client.events]
            assert ids == sorted(set(ids)), "ids strictly increasing, no duplicate"
            assert client.keys() == want
            assert client.connections >= 2
        finally:
            client.stopping.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        w.kill()


async def test_sigterm_closes_1001_and_exits_0(daemon_proc_factory, tmp_path):
    p = daemon_proc_factory()
    async with websockets.connect(p.ws_url()) as ws:
        await recv_json(ws)
        rc = await asyncio.to_thread(p.terminate)
        with pytest.raises(ConnectionClosed) as ci:
            while True:  # events committed at start-up may still arrive first
                await asyncio.wait_for(ws.recv(), 10)
        assert ci.value.rcvd is not None and ci.value.rcvd.code == 1001
    assert rc == 0
    log = p.log()
    assert "Traceback" not in log
    assert p.admin.split(".")[2] not in log


@pytest.mark.parametrize("kind", ["rocksdb", "leveldb"])
async def test_end_to_end_real_capture_with_rotation(daemon_factory, tmp_path, kind):
    db = str(tmp_path / f"store-{kind}")
    with StoreWriter(db, kind=kind) as w:
        w.put("k-first", "v")
        d = await daemon_factory(components=None, db=db)
        async with d.connect("since=0&types=key_change&values=1&batch=1") as ws:
            await recv_json(ws)
            got: list[dict[str, Any]] = []

            async def collect(n: int) -> None:
                while len(got) < n:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
                    got.extend(e for e in (msg if isinstance(msg, list) else [msg]) if "id" in e)

            await asyncio.to_thread(w.put_many, 500, 50, "x")
            if kind == "rocksdb":
                await asyncio.to_thread(w.flush)  # WAL rotation while tailing
            await asyncio.to_thread(w.put_many, 500, 50, "y")
            await collect(1001)
            assert [e["key"] for e in got] == ["k-first"] + [f"x{i:010d}" for i in range(500)] + [f"y{i:010d}" for i in range(500)]
            assert got[0]["value"] == "v"
            seqs = [e["seq"] for e in got]
            assert seqs == sorted(seqs)
        w.kill()
