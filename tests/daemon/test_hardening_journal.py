"""The journal never raises on an event's content, and the bus writer survives a bad batch.

Reviewer's finding: a cf of 70,000 characters made ``struct`` fail inside the write
transaction (cf length packed in 16 bits) and a cf of exactly 65,535 bytes collided with the
"no cf" marker; the bus only caught JournalError, so its writer task died with the daemon.
"""

from __future__ import annotations

import logging
from typing import Any

from cdc.model.events import KeyChange
from cdc.journal.lmdb_journal import Journal
from cdc.model.wire import PreEncoded, WireFormat
from tests.harness.net import recv_events


def _cf_lens(records: list[Any]) -> list[int | None]:
    return [None if r.cf is None else len(r.cf) for r in records]


def test_long_cfs_are_stored_and_read_back(tmp_path: Any, caplog: Any) -> None:
    j = Journal(str(tmp_path / "j"), sync=False)
    try:
        events = [
            {"type": "app.a", "cf": "a"},
            {"type": "app.b", "cf": "b" * 70_000},
            {"type": "app.c", "cf": "c" * 65_535},  # the old "no cf" marker value
            {"type": "app.d", "cf": "d" * 65_534},  # the long-cf marker value
            {"type": "app.e"},
            KeyChange(timestamp=1, operation="put", cf="k" * 65_535, key="x", seq=1),
        ]
        recs = j.append(events)
        assert j.last_skipped == []
        assert _cf_lens(recs) == [1, 70_000, 65_535, 65_534, None, 65_535]
        back = j.read(0)
        assert _cf_lens(back) == [1, 70_000, 65_535, 65_534, None, 65_535]
        assert back[1].cf == "b" * 70_000 and back[4].cf is None
        assert [r.type for r in back] == ["app.a", "app.b", "app.c", "app.d", "app.e", "key_change"]
        assert b'"cf":"' + b"b" * 10 in back[1].frame(WireFormat.JSON)
    finally:
        j.close()
    j2 = Journal(str(tmp_path / "j"), sync=False)  # reopened: same layout
    try:
        assert _cf_lens(j2.read(0)) == [1, 70_000, 65_535, 65_534, None, 65_535]
    finally:
        j2.close()


def test_unstorable_events_are_skipped_not_raised(tmp_path: Any, caplog: Any) -> None:
    j = Journal(str(tmp_path / "j"), sync=False)
    caplog.set_level(logging.ERROR, logger="cdc.journal")
    try:
        events = [
            {"type": "app.ok1"},
            {"type": "app." + "t" * 70_000},  # type over 64 KiB
            {"type": "app.bad", "cf": "\ud800" * 3},  # lone surrogate: not UTF-8
            {"type": "app.ok2", "cf": "x" * 70_000},
            {"type": "app.bad", "cf": "\ud800"},  # second one of that type: counted, not logged again
        ]
        recs = j.append(events, {"cp": b"1"})
        assert [r.type for r in recs] == ["app.ok1", "app.ok2"]
        assert j.last_skipped == [1, 2, 4]
        assert j.rejected == 3
        assert j.get_checkpoint("cp") == b"1"
        assert [r.id for r in j.read(0)] == [1, 2]
        msgs = [r.getMessage() for r in caplog.records if r.name == "cdc.journal"]
        assert sum("app.bad" in m for m in msgs) == 1, msgs
        assert all("\ud800" not in m and "t" * 100 not in m for m in msgs)
        # pre-encoded events (capture's path) with an unstorable key are skipped too
        good = PreEncoded(b'{"type":"app.t"}', b"", "app.t", None, None, None)
        bad = PreEncoded(b'{"type":"app.t"}', b"", "app.t", None, "not-bytes", None)  # type: ignore[arg-type]
        recs = j.append([good, bad, good])
        assert [r.id for r in recs] == [3, 4] and j.last_skipped == [1]
    finally:
        j.close()


async def test_daemon_survives_unstorable_and_failing_events(daemon_factory: Any) -> None:
    d = await daemon_factory()
    bus = d.ctx.bus
    async with d.connect("types=app.x,app.y") as ws:
        await d.emit([{"type": "app.x", "n": 1}, {"type": "app.x", "cf": "c" * 70_000}, {"type": "app.y", "cf": "c" * 65_535}])
        evs = await recv_events(ws, 3)
        assert [len(e.get("cf", "")) for e in evs] == [0, 70_000, 65_535]
        # an exception that is not a JournalError (a bug, a broken event) fails one commit: the
        # writer retries event by event and only the broken event is lost
        real_append = bus.journal.append

        def flaky(events: Any, checkpoints: Any = None, **kw: Any) -> Any:
            if any(isinstance(e, dict) and e.get("boom") for e in events):
                raise RuntimeError("boom")
            return real_append(events, checkpoints, **kw)

        bus.journal.append = flaky  # type: ignore[method-assign]
        try:
            await d.emit([{"type": "app.x", "n": 2}, {"type": "app.x", "boom": 1}, {"type": "app.y", "n": 3}])
            evs = await recv_events(ws, 2)
            assert [e.get("n") for e in evs] == [2, 3]
            assert bus.failed_batches == 1 and bus.dropped_events == 1
        finally:
            bus.journal.append = real_append  # type: ignore[method-assign]
        await d.emit([{"type": "app.x", "n": 4}])
        (ev,) = await recv_events(ws, 1)
        assert ev["n"] == 4
    assert not d.task.done()
    assert bus.journal_ok
