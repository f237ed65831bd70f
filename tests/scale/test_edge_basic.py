"""Capture node -> JetStream -> edge on a single nats-server: same events, same ids, same bytes;
POST /publish forwarded; a new edge starts from the stream; subjects filterable by type/cf."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from tests.harness.daemon import token
from tests.harness.net import http_request_sync
from tests.scale.conftest import ResumingSubscriber, assert_same_events, wait_caught_up
from tests.harness.waiting import wait_for
from tests.harness.writers import StoreWriter


@pytest.mark.slow
async def test_edge_serves_the_journal_with_the_same_ids(tmp_path, nats_single, nodes):
    with StoreWriter(tmp_path / "db", cfs=["users"]) as w:
        w.put("boot", "1")
        cap = nodes("capture", "serve", ["--db", w.path, "--nats-url", nats_single.url])
        edge = nodes("edge1", "edge", ["--nats-url", nats_single.url], ready="ready")
        subs = [
            ResumingSubscriber("cap", [cap], "values=1").start(),
            ResumingSubscriber("edge", [edge], "values=1").start(),
        ]
        try:
            for i in range(50):
                w.put(f"k{i:03d}", f"v{i}", cf="users" if i % 3 == 0 else None)
            w.batch([{"op": "put", "key": "b1", "value": "x"}, {"op": "delete", "key": "k001"}])
            # POST /publish on the edge: the capture node's journal assigns the id
            body = json.dumps({"type": "sync_event", "status": "completed", "details": {"n": 1}}).encode()
            hdr = {"Authorization": f"Bearer {token(admin=True)}", "Content-Type": "application/json"}
            r = http_request_sync(edge.port, "POST", "/publish", body, hdr)
            assert r.status == 202, r.body
            pub_id = json.loads(r.body)["id"]
            # a reader token cannot publish on the edge either
            r = http_request_sync(edge.port, "POST", "/publish", body, {**hdr, "Authorization": f"Bearer {token()}"})
            assert r.status == 403
            await wait_for(lambda: any(e["id"] == pub_id for e in subs[1].events), 15, "published event on the edge")
            truth = cap.all_events()
            await wait_caught_up(subs, truth[-1]["id"])
            truth = cap.all_events()
            assert any(e["id"] == pub_id and e["type"] == "sync_event" for e in truth)
            for s in subs:
                assert_same_events(s, truth)
            # the edge's /events and hello agree with the capture node's
            assert edge.all_events() == truth
            async with websockets.connect(edge.ws_url("since=0")) as ws:
                hello = json.loads(await ws.recv())
                assert hello["type"] == "hello" and hello["latest_id"] == truth[-1]["id"]
                # the edge speaks for the capture node's journal: the same epoch in hello and /events
                assert hello["epoch"] and hello["epoch"] == cap.get("/events?since=0&timeout=0")[1]["epoch"]
                assert edge.get("/events?since=0&timeout=0")[1]["epoch"] == hello["epoch"]
            # a second edge started now gets the history from the stream
            edge2 = nodes("edge2", "edge", ["--nats-url", nats_single.url], ready="ready")
            assert edge2.all_events() == truth
            st, metrics = edge.get("/metrics")
            assert st == 200
            st, metrics = cap.get("/metrics")
            assert b"cdc_nats_publish_lag_events 0.0" in metrics
        finally:
            for s in subs:
                await s.stop()


async def test_stream_subjects_filter_by_type_and_cf(tmp_path, nats_single, nodes):
    import nats

    with StoreWriter(tmp_path / "db", cfs=["users"]) as w:
        w.put("boot", "1")
        cap = nodes("capture", "serve", ["--db", w.path, "--nats-url", nats_single.url, "--nats-stream", "S1"])
        w.put("a", "1", cf="users")
        w.put("b", "2")
        await wait_for(lambda: b"cdc_nats_publish_lag_events 0.0" in cap.get("/metrics")[1] and cap.get("/events?since=0&timeout=0")[1]["cursor"] >= 3, 15)
        nc = await nats.connect(nats_single.url)
        try:
            js = nc.jetstream()
            sub = await js.subscribe("cdc.S1.key_change.users", ordered_consumer=True)
            msg = await sub.next_msg(timeout=5)
            from cdc.delivery.natsbus import unpack_records

            recs = unpack_records(msg.data)
            assert len(recs) == 1 and b'"key":"a"' in recs[0][1] and b'"cf":"users"' in recs[0][1]
            assert msg.headers["Cdc-First-Id"] == str(recs[0][0])
        finally:
            await nc.close()
    await asyncio.sleep(0)


async def test_stream_of_another_journal_is_refused_loudly(tmp_path, nats_single, nodes):
    """A stream that already holds ids beyond this journal (another journal's history) is not
    published into: readiness says why, nothing is published (a loss is never silent)."""
    import nats

    nc = await nats.connect(nats_single.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="CDC", subjects=["cdc.CDC.*.*"])
        await js.publish("cdc.CDC.key_change.~", b"x", headers={"Cdc-First-Id": "9999", "Cdc-Last-Id": "9999"})
    finally:
        await nc.close()
    with StoreWriter(tmp_path / "db") as w:
        w.put("boot", "1")
        cap = nodes("capture", "serve", ["--db", w.path, "--nats-url", nats_single.url])

        def refused() -> bool:
            st, body = cap.get("/health/ready")
            return st == 503 and "holds ids up to 9999" in body["reason"]

        await wait_for(refused, 15, "readiness names the foreign stream")
        assert "another journal" in cap.log()


async def test_stream_of_another_journal_epoch_is_refused(tmp_path, nats_single, nodes):
    """A stream whose last message carries another journal's epoch is refused even when its ids
    are below this journal's (a re-created journal at the same ids would otherwise interleave)."""
    import nats

    nc = await nats.connect(nats_single.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="CDC", subjects=["cdc.CDC.*.*"])
        await js.publish(
            "cdc.CDC.key_change.~", b"x", headers={"Cdc-First-Id": "1", "Cdc-Last-Id": "1", "Cdc-Epoch": "00000000deadbeef"}
        )
    finally:
        await nc.close()
    with StoreWriter(tmp_path / "db") as w:
        for i in range(5):
            w.put(f"k{i}", "1")
        cap = nodes("capture", "serve", ["--db", w.path, "--nats-url", nats_single.url])

        def refused() -> bool:
            st, body = cap.get("/health/ready")
            return st == 503 and "journal epoch 00000000deadbeef" in body["reason"]

        await wait_for(refused, 15, "readiness names the other journal's epoch")


async def test_capture_starts_and_serves_while_nats_is_down(tmp_path, nats_single, nodes):
    """NATS down when the capture node starts: it captures and serves locally, readiness says
    NATS is unreachable; once NATS is up the stream gets everything and an edge serves it."""
    nats_single.stop()
    with StoreWriter(tmp_path / "db") as w:
        w.put("boot", "1")
        cap = nodes("capture", "serve", ["--db", w.path, "--nats-url", nats_single.url, "--nats-max-down-s", "0.5"])
        for i in range(20):
            w.put(f"k{i}", "v")
        await wait_for(lambda: cap.get("/events?since=0&timeout=0")[1]["cursor"] >= 21, 15, "local capture")
        await wait_for(lambda: cap.get("/health/ready")[0] == 503, 15, "readiness fails while NATS is down")
        assert "NATS unreachable" in cap.get("/health/ready")[1]["reason"]
        nats_single.start()
        await wait_for(lambda: cap.get("/health/ready")[0] == 200, 30, "ready once NATS is back")
        edge = nodes("edge", "edge", ["--nats-url", nats_single.url], ready="ready")
        await wait_for(lambda: edge.all_events() == cap.all_events(), 15, "edge has the whole journal")
