"""The hub on the chunked journal: per-chunk frames live, joined frames on replay, chunks a filter
splits, the replay cut at the published id, and every wire format -- always the same events as
the per-event reference (``Filter.match`` over ``Journal.read``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import websockets

from cdc.journal.lmdb_journal import CHUNK_EVENTS
from cdc.model.wire import SubState
from tests.delivery.test_hub import kc, rig_factory  # noqa: F401 - the fixture
from tests.harness.waiting import wait_for


async def _collect(ws: Any, n: int) -> tuple[list[dict], int]:
    events: list[dict] = []
    frames = 0
    while len(events) < n:
        raw = await asyncio.wait_for(ws.recv(), 10)
        frames += 1
        msg = json.loads(raw)
        events += msg if isinstance(msg, list) else [msg]
    return events, frames


async def test_live_batch_frames_are_one_per_chunk_and_filters_split_chunks(rig_factory) -> None:  # noqa: F811
    rig = await rig_factory()
    n = 2 * CHUNK_EVENTS + 500
    async with websockets.connect(rig.url("batch=1"), max_size=None) as all_ws, websockets.connect(rig.url("batch=1&prefix=k1"), max_size=None) as some_ws:
        await wait_for(lambda: len(rig.subs) == 2 and all(s.state == SubState.LIVE for s in rig.subs), 5, "both live")
        await rig.emit([kc(f"k{i}", seq=i + 1) for i in range(n)])  # one commit: 3 chunks
        got, frames = await _collect(all_ws, n)
        assert [e["id"] for e in got] == list(range(1, n + 1)) and frames == 3
        want = [r.id for r in rig.journal.read(0, n) if r.key.startswith(b"k1")]
        got, _ = await _collect(some_ws, len(want))
        assert [e["id"] for e in got] == want
        assert all(e["key"].startswith("k1") and e["value"] == "v" for e in got)


async def test_replay_joins_chunks_and_stops_at_the_published_id(rig_factory) -> None:  # noqa: F811
    rig = await rig_factory()
    await rig.emit([kc(f"k{i}", seq=i + 1) for i in range(3000)])
    await rig.emit([kc(f"x{i}", seq=i + 1) for i in range(10)])
    # events committed to the journal but not published yet are not replayed (the hub's cut)
    rig.journal.append([kc("late", seq=99)])
    assert rig.journal.latest_id == rig.hub.latest_id + 1
    async with websockets.connect(rig.url("since=1500&batch=1"), max_size=None) as ws:
        got, frames = await _collect(ws, 1510)
        assert [e["id"] for e in got] == list(range(1501, 3011)) and frames == 1
        try:
            extra = await asyncio.wait_for(ws.recv(), 0.3)
        except TimeoutError:
            extra = None
        assert extra is None
    async with websockets.connect(rig.url("since=0&prefix=x"), max_size=None) as ws:  # per-event frames, a split chunk
        got, frames = await _collect(ws, 10)
        assert [e["key"] for e in got] == [f"x{i}" for i in range(10)] and frames == 10


async def test_every_format_from_chunks_equals_the_record_encoding(rig_factory) -> None:  # noqa: F811
    from cdc.delivery.hub import _frames
    from cdc.model.wire import build_frames

    rig = await rig_factory()
    await rig.emit([kc(f"k{i}", value="é" * (i % 5), seq=i + 1) for i in range(2100)])
    chunks = rig.journal.read_chunks(0, 5000)
    recs = rig.journal.read(0, 5000)
    for fmt in range(4):
        for batch in (False, True):
            joined = _frames(chunks, fmt, batch)
            assert joined == build_frames(recs, fmt, batch), (fmt, batch)
            per_chunk = _frames(chunks, fmt, batch, merge=False)
            decode = msgspec.msgpack.decode if fmt >= 2 else msgspec.json.decode
            flat = []
            for f in per_chunk:
                d = decode(f)
                flat += d if isinstance(d, list) else [d]
            assert flat == [decode(r.frame(fmt)) for r in recs]
