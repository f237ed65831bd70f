"""The protocol on an edge is the protocol of ``cdc serve``: the same requests are made to the
capture node and to an edge, and the answers (close codes, control frames, events, bytes) must
be the same."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

from tests.harness.daemon import OPAQUE_TOKEN, token
from tests.harness.net import http_request_sync
from tests.scale.conftest import Node
from tests.harness.waiting import wait_for
from tests.harness.writers import StoreWriter


async def _session(node: Node, query: str, tok: str | None, *, send: list[dict[str, Any]] | None = None, origin: str | None = None, idle_s: float = 0.4) -> dict[str, Any]:
    """Connect, optionally send client messages, collect frames until idle; what happened."""
    parts = [query] if query else []
    if tok is not None:
        parts.append(f"token={tok}")
    url = f"ws://127.0.0.1:{node.port}/ws/events" + ("?" + "&".join(parts) if parts else "")
    frames: list[Any] = []
    out: dict[str, Any] = {"frames": frames, "close": None, "status": None}
    try:
        async with websockets.connect(url, max_size=None, open_timeout=5, origin=origin) as ws:  # type: ignore[arg-type]
            for m in send or []:
                await ws.send(json.dumps(m))
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), idle_s)
                except TimeoutError:
                    break
                frames.append(raw)
    except websockets.exceptions.ConnectionClosed as exc:
        out["close"] = exc.rcvd.code if exc.rcvd else None
    except websockets.exceptions.InvalidStatus as exc:
        out["status"] = exc.response.status_code
    return out


def _normalize(frames: list[Any]) -> list[Any]:
    """Frames with the node-specific parts (hello's version/latest, heartbeats) taken out."""
    out = []
    for raw in frames:
        if isinstance(raw, bytes):
            import msgspec

            msg = msgspec.msgpack.decode(raw)
        else:
            msg = json.loads(raw)
        if isinstance(msg, dict) and msg.get("type") == "heartbeat" and "id" not in msg:
            continue
        if isinstance(msg, dict) and msg.get("type") == "hello" and "id" not in msg:
            msg = {k: v for k, v in msg.items() if k in ("type", "filter", "values", "heartbeat_ms")}
        out.append(raw if isinstance(raw, bytes) and not (isinstance(msg, dict) and msg.get("type") == "hello") else msg)
    return out


@pytest.fixture
async def pair(tmp_path, nats_single, nodes):
    with StoreWriter(tmp_path / "db", cfs=["users", "logs"]) as w:
        w.put("boot", "1")
        common = ["--nats-url", nats_single.url, "--allow-origin", "https://app.example"]
        cap = nodes("capture", "serve", ["--db", w.path, *common])
        edge = nodes("edge", "edge", common, ready="ready")
        for i in range(30):
            w.put(f"user{i:02d}", f"u{i}", cf="users")
            w.put(f"log{i:02d}", f"l{i}", cf="logs")
        w.delete("user03", cf="users")
        w.batch([{"op": "put", "key": "pfx-a", "value": "1"}, {"op": "put", "key": "pfx-b", "value": "2"}])
        pub = json.dumps({"type": "sync_event", "status": "started"}).encode()
        r = http_request_sync(cap.port, "POST", "/publish", pub, {"Authorization": f"Bearer {token(admin=True)}", "Content-Type": "application/json"})
        assert r.status == 202
        latest = cap.get("/events?since=0&timeout=0&limit=10000")[1]["cursor"]
        try:
            await wait_for(lambda: edge.get(f"/events?since={latest - 1}&timeout=0")[1].get("cursor") == latest, 15, "edge caught up")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- edge log:\n{edge.log()[-3000:]}\n--- capture log:\n{cap.log()[-3000:]}") from None
        yield cap, edge, w


CASES: list[tuple[str, str, str | None]] = [
    ("no token", "since=0", None),
    ("bad token", "since=0", "not-a-token"),
    ("expired token", "since=0", token(ttl=-30)),
    ("opaque token", "since=0&types=key_change&cf=users", OPAQUE_TOKEN),
    ("scope refuses types", "since=0&types=key_change", token(types=["sync_event"])),
    ("scope narrows", "since=0", token(cf=["logs"])),
    ("values not allowed", "since=0&values=1", token()),
    ("values", "since=0&values=1&cf=users", token(values=True)),
    ("types filter", "since=0&types=sync_event,health_change", token()),
    ("prefix filter", "since=0&prefix=pfx-", token()),
    ("batch", "since=0&batch=1&cf=logs", token()),
    ("msgpack", "since=0&format=msgpack&values=1", token(values=True)),
    ("bad parameter", "since=abc", token()),
    ("cursor ahead", "since=999999", token()),
    ("resume mid-way", "since=20&types=key_change", token()),
]


@pytest.mark.slow
async def test_same_answers_on_serve_and_edge(pair):
    cap, edge, w = pair
    for name, query, tok in CASES:
        a = await _session(cap, query, tok)
        b = await _session(edge, query, tok)
        assert a["close"] == b["close"] and a["status"] == b["status"], (name, a, b)
        assert _normalize(a["frames"]) == _normalize(b["frames"]), name
        if name in ("no token", "bad token", "expired token"):
            assert a["close"] == 4401
        if name in ("scope refuses types", "values not allowed"):
            assert a["close"] == 4403
        if name in ("values", "types filter", "prefix filter", "batch", "msgpack"):
            assert len(a["frames"]) > 1, name
    tok = token()
    send = [{"op": "ping", "ref": 1}, {"op": "subscribe", "types": ["key_change"], "cf": ["users"], "ref": 2}, {"op": "nonsense"}]
    a = await _session(cap, "", tok, send=send)
    b = await _session(edge, "", tok, send=send)
    assert _normalize(a["frames"]) == _normalize(b["frames"])
    # a foreign Origin is refused before the upgrade on both
    a = await _session(cap, "", tok, origin="https://evil.example")
    b = await _session(edge, "", tok, origin="https://evil.example")
    assert a["status"] == b["status"] == 403
    # long-poll fallback: the same events and cursor
    for q in ("since=0&timeout=0", "since=5&cf=users&timeout=0", "since=999999&timeout=0"):
        assert cap.get("/events?" + q, tok) == edge.get("/events?" + q, tok), q
    st_a, _ = cap.get("/events?since=0", "nope")
    st_b, _ = edge.get("/events?since=0", "nope")
    assert st_a == st_b == 401
    # a live event reaches both with the same id, and a long-poll on the edge wakes up for it
    latest = cap.get("/events?since=0&timeout=0&limit=10000")[1]["cursor"]
    loop = asyncio.get_running_loop()
    poll = loop.run_in_executor(None, edge.get, f"/events?since={latest}&timeout=10", tok)
    await asyncio.sleep(0.2)
    w.put("live", "x")
    st, body = await asyncio.wait_for(poll, 15)
    assert st == 200 and [e["key"] for e in body["events"]] == ["live"]
    assert body == cap.get(f"/events?since={latest}&timeout=0", tok)[1]


async def test_reset_when_the_stream_no_longer_holds_the_cursor(tmp_path, nats_single, nodes):
    import nats

    nc = await nats.connect(nats_single.url)
    try:
        await nc.jetstream().add_stream(name="CDC", subjects=["cdc.CDC.*.*"], max_msgs=5)  # a stream that keeps little
    finally:
        await nc.close()
    with StoreWriter(tmp_path / "db") as w:
        w.put("boot", "1")
        cap = nodes("capture", "serve", ["--db", w.path, "--nats-url", nats_single.url, "--retention-count", "10"])
        for i in range(40):
            w.put(f"k{i:02d}", "v")
        latest = await wait_for(lambda: (c := cap.get("/events?since=0&timeout=0")[1]["cursor"]) >= 41 and c, 15)
        edge = nodes("edge", "edge", ["--nats-url", nats_single.url], ready="ready")
        await wait_for(lambda: edge.get("/events?since=0&timeout=0")[1].get("cursor") == latest, 15, "edge caught up")
        for node in (cap, edge):
            s = await _session(node, "since=3", token())
            resets = [json.loads(f) for f in s["frames"] if json.loads(f).get("type") == "reset"]
            assert [r["reason"] for r in resets] == ["cursor_expired"], (node.name, s)
            st, body = node.get("/events?since=3&timeout=0")
            assert body["reset"]["reason"] == "cursor_expired"
        # from the oldest retained: both end with the same events
        a = cap.all_events()
        b = edge.all_events()
        assert b and a[-len(b):] == b[-len(a):][-len(b):] or a[-1] == b[-1]
        assert b[-1]["id"] == a[-1]["id"] == latest
