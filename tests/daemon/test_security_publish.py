"""POST /publish with oversized label strings: a 400 naming the field, and the daemon keeps serving.

The reviewer's crash: with ``max_message_bytes`` raised, a ``cf`` of 70,000 characters reached
the journal writer (which stores a cf's length in 16 bits). Published strings are bounded
before they get anywhere near the journal.
"""

from __future__ import annotations

from typing import Any

import pytest

from cdc.model.published import MAX_KEY_LEN, MAX_NAME_BYTES, MAX_STRING_BYTES
from tests.harness.net import publish, recv_events

BIG = 70_000


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"type": "compaction_status", "status": "started", "cf": "c" * BIG}, "'cf'"),
        ({"type": "flush_status", "status": "started", "cf": "é" * (MAX_NAME_BYTES // 2 + 1)}, "'cf'"),
        ({"type": "snapshot_event", "status": "completed", "name": "n" * BIG}, "'name'"),
        ({"type": "myapp.reindex", "cf": "c" * BIG}, "'cf'"),
        ({"type": "myapp.reindex", "name": "n" * (MAX_NAME_BYTES + 1)}, "'name'"),
        ({"type": "myapp.reindex", "k" * (MAX_KEY_LEN + 1): 1}, "field name"),
        ({"type": "sync_event", "status": "started", "details": {"note": "x" * (MAX_STRING_BYTES + 1)}}, "longer than"),
        ({"type": "myapp." + "t" * 5000}, "unknown type"),
    ],
)
async def test_oversized_strings_are_400_and_daemon_keeps_serving(daemon_factory: Any, body: dict[str, Any], needle: str) -> None:
    d = await daemon_factory(max_message_bytes=1 << 20)
    r = await publish(d.port, d.admin, body)
    assert r.status == 400, (r.status, r.body[:200])
    assert needle in r.json()["error"], r.json()
    # still serving: a normal event goes through the journal and out to a subscriber
    async with d.connect("types=compaction_status") as ws:
        ok = await publish(d.port, d.admin, {"type": "compaction_status", "status": "started", "cf": "c" * MAX_NAME_BYTES})
        assert ok.status in (200, 201, 202), ok.body
        (ev,) = await recv_events(ws, 1)
        assert ev["cf"] == "c" * MAX_NAME_BYTES
    assert d.ctx.bus.journal_ok
