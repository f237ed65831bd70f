"""What a scoped token sees (documented in README "Protocol summary", tokens paragraph).

- ``prefix`` scope filters only events that carry a key: every keyless event (sync, snapshot,
  compaction, flush, health, capture_gap, custom) still reaches the holder;
- ``cf`` scope filters only events that carry a cf: compaction/flush of other cfs are withheld,
  cf-less events (sync, snapshot, health, capture_gap, custom without ``cf``) are delivered;
- a ``delete_range`` reaches a prefix-scoped token when its range ``[key, end_key)`` overlaps
  the prefix's key range, even if its start key lies outside the prefix;
- adding ``types`` to the scope withholds the rest.
"""

from __future__ import annotations

from typing import Any

from cdc.model.events import CaptureGap, CompactionStatus, KeyChange, SnapshotEvent, SyncEvent
from tests.harness.daemon import token
from tests.harness.net import recv_events, recv_json


def _mixed() -> list[Any]:
    return [
        KeyChange(timestamp=1, operation="put", key="order:1", seq=1),
        KeyChange(timestamp=1, operation="put", key="user:1", seq=2),
        KeyChange(timestamp=1, operation="delete_range", key="a", end_key="z", seq=3),  # overlaps user:
        KeyChange(timestamp=1, operation="delete_range", key="order:0", end_key="order:9", seq=4),  # does not
        SyncEvent(timestamp=1, status="started"),
        SnapshotEvent(timestamp=1, status="completed", name="nightly"),
        CompactionStatus(timestamp=1, status="started", cf="default"),
        CompactionStatus(timestamp=1, status="started", cf="orders"),
        CaptureGap(timestamp=1, from_seq=5, to_seq=6),
        {"type": "myapp.reindex", "timestamp": 1},
        KeyChange(timestamp=1, operation="put", key="user:last", seq=7),
    ]


def _summary(evs: list[dict[str, Any]]) -> list[str]:
    return [f"{e['type']}:{e.get('key') or e.get('cf') or ''}" for e in evs]


async def _received(daemon: Any, tok: str) -> list[str]:
    async with daemon.connect(tok=tok) as ws:
        assert (await recv_json(ws))["type"] == "hello"
        await daemon.emit(_mixed())
        evs = await _until_last(ws)
    return _summary(evs)


async def _until_last(ws: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while not out or out[-1].get("key") != "user:last":
        out.extend(await recv_events(ws, 1))
    return out


async def test_prefix_scope_still_sees_keyless_events(daemon: Any) -> None:
    got = await _received(daemon, token(prefix=["user:"]))
    assert got == [
        "key_change:user:1",
        "key_change:a",  # delete_range [a, z) overlaps user:
        "sync_event:",
        "snapshot_event:",
        "compaction_status:default",
        "compaction_status:orders",
        "capture_gap:",
        "myapp.reindex:",
        "key_change:user:last",
    ]


async def test_cf_scope_withholds_other_cfs_only(daemon: Any) -> None:
    got = await _received(daemon, token(cf=["default"]))
    assert "compaction_status:orders" not in got
    for t in ("sync_event:", "snapshot_event:", "compaction_status:default", "capture_gap:", "myapp.reindex:"):
        assert t in got, (t, got)


async def test_types_scope_withholds_the_rest(daemon: Any) -> None:
    got = await _received(daemon, token(prefix=["user:"], types=["key_change"]))
    assert got == ["key_change:user:1", "key_change:a", "key_change:user:last"]
