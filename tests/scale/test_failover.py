"""No change lost, none duplicated, ids identical to the capture node's own, while parts die:
an edge (kill -9: its subscribers move to the other edge with ``since``), the capture node
(kill -9, restart), NATS itself (stopped for a few seconds) and, on a 3-node JetStream cluster
with an R3 stream, one NATS node (kill -9)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.scale.conftest import NatsServer, Node, ResumingSubscriber, assert_same_events, wait_caught_up
from tests.harness.waiting import wait_for
from tests.harness.writers import StoreWriter

pytestmark = pytest.mark.slow  # NATS cluster failover: ~10 s a test


class BackgroundWriter:
    """Puts at about ``rate``/s from a thread until stopped (the store keeps changing)."""

    def __init__(self, w: StoreWriter, rate: float = 200.0) -> None:
        self.w = w
        self.rate = rate
        self.n = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.w.put(f"key{self.n:06d}", f"v{self.n}", cf="users" if self.n % 5 == 0 else None)
            self.n += 1
            time.sleep(1 / self.rate)

    def __enter__(self) -> BackgroundWriter:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._t.join(10)


async def _writes(bw: BackgroundWriter, n: int) -> None:
    target = bw.n + n
    await wait_for(lambda: bw.n >= target, 30, f"{n} more writes")


async def _run_scenario(w: StoreWriter, nodes: Any, urls: str, faults: Callable[[dict[str, Any], BackgroundWriter], Any], extra: list[str] | None = None) -> None:
    extra = extra or []
    cap = nodes("capture", "serve", ["--db", w.path, "--nats-url", urls, *extra])
    edge_a = nodes("edgeA", "edge", ["--nats-url", urls], ready="ready")
    edge_b = nodes("edgeB", "edge", ["--nats-url", urls], ready="ready")
    subs = [
        ResumingSubscriber("a1", [edge_a, edge_b], "values=1").start(),
        ResumingSubscriber("a2", [edge_a, edge_b], "values=1&batch=1").start(),
        ResumingSubscriber("b1", [edge_b, edge_a], "values=1").start(),
        ResumingSubscriber("direct", [cap], "values=1").start(),
    ]
    parts = {"cap": cap, "a": edge_a, "b": edge_b, "subs": subs}
    try:
        with BackgroundWriter(w) as bw:
            await _writes(bw, 100)
            await faults(parts, bw)
            await _writes(bw, 100)
        truth = cap.all_events()
        await wait_caught_up(subs, truth[-1]["id"], timeout=40)
        truth = cap.all_events()
        assert len(truth) >= bw.n  # every write (plus health changes, start-up events)
        keys = {e["key"] for e in truth if e["type"] == "key_change"}
        assert {f"key{i:06d}" for i in range(bw.n)} <= keys
        assert len(truth) == len({e["id"] for e in truth})
        for s in subs:
            assert_same_events(s, truth)
        await wait_for(lambda: cap.get("/health/ready")[0] == 200, 15, "capture ready again (nats_lag cleared)")
        assert any(s.connects > 1 for s in subs[:2]), "edge A's subscribers never moved"
    finally:
        for s in subs:
            await s.stop()


async def test_kill_edge_capture_and_stop_nats(tmp_path, nats_single: NatsServer, nodes):
    async def faults(p: dict[str, Any], bw: BackgroundWriter) -> None:
        a: Node = p["a"]
        a.kill9()  # subscribers of A go to B with since
        await _writes(bw, 100)
        await wait_for(lambda: all(s.current is p["b"] for s in p["subs"][:3]), 15, "A's subscribers on B")
        a.start("ready")  # resumes its mirror from the stream
        p["cap"].kill9()
        await _writes(bw, 50)
        p["cap"].start()
        direct = p["subs"][3]
        await wait_for(lambda: direct.current is p["cap"], 15, "direct subscriber back on the capture node")
        before = direct.last_id
        nats_single.stop()  # NATS down for ~3 s: capture and local subscribers go on
        await _writes(bw, 600)
        assert direct.last_id > before + 300, (before, direct.last_id)
        st, body = p["cap"].get("/health/ready")
        assert st == 503 and "NATS unreachable" in body["reason"], body
        st, body = p["cap"].get("/metrics")
        assert b"cdc_nats_connected 0.0" in body
        nats_single.start()

    with StoreWriter(tmp_path / "db", cfs=["users"]) as w:
        w.put("boot", "1")
        await _run_scenario(w, nodes, nats_single.url, faults, ["--nats-max-down-s", "1"])


async def test_cluster_r3_kill_one_nats_node(tmp_path, nats_cluster: list[NatsServer], nodes):
    urls = ",".join(s.url for s in nats_cluster)

    async def stream_leader() -> str:
        import nats

        nc = await nats.connect(urls.split(","))
        try:
            info = await nc.jetstream().stream_info("CDC")
            assert info.config.num_replicas == 3
            return info.cluster.leader
        finally:
            await nc.close()

    async def faults(p: dict[str, Any], bw: BackgroundWriter) -> None:
        leader = await stream_leader()
        victim = next(s for s in nats_cluster if s.name == leader)  # the stream's leader: a leader change mid-stream
        def latest() -> int:
            body = p["cap"].get("/metrics")[1]
            return int(float(body.split(b"\ncdc_journal_latest_id ")[1].split()[0]))

        before = latest()
        burst = asyncio.create_task(asyncio.to_thread(bw.w.put_many, 20_000, 100, "burst"))  # several messages in flight
        await wait_for(lambda: latest() > before + 2000, 15, "burst under way")
        victim.kill9()
        await burst
        await _writes(bw, 200)
        p["a"].kill9()
        await _writes(bw, 100)
        victim.start()
        p["a"].start("ready")

    with StoreWriter(tmp_path / "db", cfs=["users"]) as w:
        w.put("boot", "1")
        await _run_scenario(w, nodes, urls, faults, ["--nats-replicas", "3"])
    await asyncio.sleep(0)


async def test_cursor_from_a_faster_edge_waits_for_a_lagging_one(tmp_path, nats_single: NatsServer, nodes):
    """A client moving from an edge that is ahead to one that lags is not answered cursor_ahead:
    the lagging edge catches up first, then delivers every later event exactly once."""
    import signal

    with StoreWriter(tmp_path / "db") as w:
        w.put("boot", "1")
        cap = nodes("capture", "serve", ["--db", w.path, "--nats-url", nats_single.url])
        fast = nodes("fast", "edge", ["--nats-url", nats_single.url], ready="ready")
        slow = nodes("slow", "edge", ["--nats-url", nats_single.url], ready="ready")
        assert slow.proc is not None
        slow.proc.send_signal(signal.SIGSTOP)  # frozen: its mirror falls behind
        try:
            w.put_many(3000, 100, "p")
            latest = await wait_for(lambda: (c := cap.get("/events?since=0&timeout=0&limit=10000")[1]["cursor"]) >= 3001 and c, 30)
            sub = ResumingSubscriber("mover", [fast], "values=1").start()
            await wait_caught_up([sub], latest)
            await sub.stop()
            w.put_many(10, 10, "q", start=0)
        finally:
            slow.proc.send_signal(signal.SIGCONT)
        sub2 = ResumingSubscriber("mover", [slow], "values=1", since=latest).start()
        try:
            await wait_for(lambda: cap.get("/events?since=0&timeout=0&limit=10000")[1]["cursor"] >= latest + 10, 30, "last writes captured")
            truth = [e for e in cap.all_events() if e["id"] > latest]
            await wait_caught_up([sub2], truth[-1]["id"])
            assert not sub2.resets, sub2.resets
            assert_same_events(sub2, truth)
        finally:
            await sub2.stop()
