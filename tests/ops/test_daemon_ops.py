"""End to end through the real daemon (in-process App with its real components: WalCapture +
the ops watchers), a real writer process and a real websockets subscriber: each ops event exactly
once in the journal and on the stream, in order with the key changes around it; POST /publish."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.harness.daemon import token
from tests.harness.net import publish, recv_events
from tests.harness.waiting import wait_for
from tests.harness.writers import OpsWriter

pytestmark = pytest.mark.integration


def journal_events(d):
    recs = d.ctx.journal.read(0, 100_000)
    return [json.loads(r.wire) for r in recs]


def summary(events):
    out = []
    for e in events:
        if e["type"] == "key_change":
            out.append(("key", e["key"]))
        elif e["type"] in ("flush_status", "compaction_status"):
            if e["status"] != "running":
                out.append((e["type"], e["status"], e.get("job")))
        elif e["type"] == "snapshot_event":
            out.append(("snap", e["name"], e["status"]))
        elif e["type"] == "sync_event":
            out.append(("sync", e["status"]))
    return out


@pytest.mark.slow
async def test_ops_events_in_order_with_key_changes(tmp_path, daemon_factory):
    db = str(tmp_path / "store")
    snapdir = tmp_path / "snaps"
    snapdir.mkdir()
    with OpsWriter(db, rate=4 << 20) as w:
        w.cmd("put", key="k0", value="v")
        d = await daemon_factory(components=None, db=db, snapshots_dir=str(snapdir))
        async with d.connect("since=0") as ws:
            got: list[dict] = []

            async def until(pred, n=1, timeout=30.0):
                while not pred(got):
                    got.extend(await recv_events(ws, n, timeout=timeout))

            await until(lambda g: ("key", "k0") in summary(g))
            # a flush between two keys
            w.cmd("put", key="before-flush", value="v")
            await until(lambda g: ("key", "before-flush") in summary(g))
            w.cmd("flush")
            await until(lambda g: any(s[:2] == ("flush_status", "completed") for s in summary(g)))
            w.cmd("put", key="after-flush", value="v")
            await until(lambda g: ("key", "after-flush") in summary(g))
            # a compaction of a few seconds between two keys, with progress
            for _ in range(3):
                w.cmd("fill", count=3000, value_size=1000)
                w.cmd("flush")
            await until(lambda g: len([s for s in summary(g) if s[:2] == ("flush_status", "completed")]) == 4, timeout=30)
            w.cmd("put", key="before-compaction", value="v")
            await until(lambda g: ("key", "before-compaction") in summary(g))
            w.cmd("compact_bg")
            await until(lambda g: any(s[:2] == ("compaction_status", "completed") for s in summary(g)), timeout=60)
            w.cmd("wait_bg")
            w.cmd("put", key="after-compaction", value="v")
            await until(lambda g: ("key", "after-compaction") in summary(g))
            # a checkpoint and a published sync event
            w.cmd("checkpoint", dir=str(snapdir / "cp"))
            await until(lambda g: ("snap", "cp", "completed") in summary(g))
            r = await publish(d.port, d.admin, {"type": "sync_event", "status": "completed", "details": {"peer": "eu-1"}})
            assert r.status == 202, r.body
            await until(lambda g: ("sync", "completed") in summary(g))
            shutil.rmtree(snapdir / "cp")
            await until(lambda g: ("snap", "cp", "deleted") in summary(g))

    s = summary(got)
    # every event exactly once, and the stream equals the journal
    ids = [e["id"] for e in got]
    assert ids == sorted(set(ids))
    journal = [e for e in journal_events(d) if e["type"] != "health_change"]
    streamed = [e for e in got if e["type"] != "health_change"]
    assert streamed == journal[: len(streamed)], (streamed[-3:], journal[len(streamed) - 3 :])
    assert all(e["type"] == "compaction_status" for e in journal[len(streamed) :]), journal[len(streamed) :]
    keys = [x[1] for x in s if x[0] == "key"]
    assert keys.count("before-flush") == 1 and keys.count("after-compaction") == 1

    def pos(item):
        assert s.count(item) == 1, (item, s)
        return s.index(item)

    first_flush = next(x for x in s if x[0] == "flush_status")
    fjob = first_flush[2]
    assert pos(("key", "before-flush")) < pos(("flush_status", "started", fjob)) < pos(
        ("flush_status", "completed", fjob)) < pos(("key", "after-flush"))
    cjob = next(x for x in s if x[0] == "compaction_status")[2]
    assert pos(("key", "before-compaction")) < pos(("compaction_status", "started", cjob)) < pos(
        ("compaction_status", "completed", cjob)) < pos(("key", "after-compaction"))
    running = [e for e in got if e["type"] == "compaction_status" and e["status"] == "running"]
    assert len(running) >= 1 and all(e["job"] == cjob for e in running), running
    assert pos(("snap", "cp", "started")) < pos(("snap", "cp", "completed")) < pos(("sync", "completed")) < pos(
        ("snap", "cp", "deleted"))
    from tests.harness.net import http_request

    metrics = (await http_request(d.port, "GET", "/metrics")).body.decode()
    assert 'cdc_ops_events_total{type="compaction_status"}' in metrics, metrics[:2000]
    assert 'cdc_ops_events_total{type="snapshot_event"}' in metrics
    sync = next(e for e in got if e["type"] == "sync_event")
    assert sync["details"] == {"peer": "eu-1"} and sync["timestamp"] > 0


async def test_publish_validation_answers_400(daemon):
    cases = [
        ({"type": "sync_event", "status": "bogus"}, "field 'status' must be one of"),
        ({"type": "sync_event", "status": "started", "id": 5}, "field 'id' is assigned by the server"),
        ({"type": "key_change", "key": "x"}, "cannot be published"),
        ({"type": "nodot"}, "unknown type"),
        ({"type": "sync_event", "status": "started", "details": "x"}, "field 'details' must be an object"),
    ]
    for body, msg in cases:
        r = await publish(daemon.port, daemon.admin, body)
        assert r.status == 400, (body, r.status, r.body)
        assert msg in r.body.decode(), r.body
    before = daemon.ctx.journal.latest_id
    r = await publish(daemon.port, daemon.admin, {"type": "myapp.reindex", "progress": 3})
    assert r.status == 202 and r.json()["id"] > before
    # non-admin tokens may not publish
    r = await publish(daemon.port, token(), {"type": "sync_event", "status": "started"})
    assert r.status in (401, 403)
    await wait_for(lambda: daemon.ctx.journal.latest_id >= r.json().get("id", 0) if r.status == 202 else True)


async def test_kill9_daemon_ops_events_exactly_once(tmp_path, daemon_proc_factory):
    """kill -9 of the daemon (subprocess) while flushes happen, restart: every flush's
    started/completed is in the journal exactly once (events + LOG offset commit together)."""
    db = str(tmp_path / "store")
    with OpsWriter(db) as w:
        w.cmd("put", key="k", value="v")
        p = daemon_proc_factory(db=db)
        n = 0
        for _ in range(3):
            w.cmd("fill", count=100)
            w.cmd("flush")
            n += 1
        # let the daemon see some of it, then kill it mid-stream
        async with websockets_connect(p, "since=0") as ws:
            await recv_until_types(ws, "flush_status", 2)
        for _ in range(2):
            w.cmd("fill", count=100)
            w.cmd("flush")
            n += 1
        p.kill9()
        for _ in range(2):  # while the daemon is down
            w.cmd("fill", count=100)
            w.cmd("flush")
            n += 1
        p.restart()
        w.cmd("fill", count=100)
        w.cmd("flush")
        n += 1
        async with websockets_connect(p, "since=0") as ws:
            events = await recv_until_types(ws, "flush_status", 2 * n)
        p.terminate()
    flushes = [e for e in events if e["type"] == "flush_status"]
    by_job: dict[int, list[str]] = {}
    for e in flushes:
        by_job.setdefault(e["job"], []).append(e["status"])
    assert len(flushes) == 2 * n and len(by_job) == n, by_job
    assert all(v == ["started", "completed"] for v in by_job.values()), by_job


def websockets_connect(p, query=""):
    import websockets

    return websockets.connect(p.ws_url(query), max_size=None)


async def recv_until_types(ws, etype, count, timeout=30.0):
    got: list[dict] = []
    while len([e for e in got if e["type"] == etype]) < count:
        got.extend(await recv_events(ws, 1, timeout=timeout))
    return got
