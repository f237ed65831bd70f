"""The watchfiles loop stays quiet while the inotify thread wakes capture on WAL writes.

A busy WAL used to make watchfiles hand a change set to Python after every write (1 ms quiet
step) or every 5 ms (debounce): a thread hop and a capture wake-up each time, for notifications
the inotify thread had already acted on (~12 % of the daemon's GIL time at 10,000 writes/s).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.capture.conftest import wait_for

pytestmark = pytest.mark.integration


async def test_busy_wal_does_not_flood_the_watch_loop(rig, writer_factory):
    w = writer_factory()
    w.put("seed", "1")
    cap = await rig.start()
    await wait_for(lambda: len(rig.key_changes()) >= 1, what="seed event")
    if not cap._write_wakes:
        pytest.skip("no inotify write wake-ups on this system")
    calls = [0]
    note = cap._note_changes

    def counting(changes):
        calls[0] += 1
        return note(changes)

    cap._note_changes = counting
    # 600 single puts over ~0.6 s: one WAL write per millisecond
    await asyncio.to_thread(w.cmd, "paced", count=600, rate=1000, prefix="p", spin=False)
    await wait_for(lambda: len(rig.key_changes()) >= 601, what="all events")
    # grouped over 100 ms windows: ~6-8 change sets (the old 5 ms / 1 ms grouping: hundreds)
    assert calls[0] <= 30, calls[0]
    keys = [e["key"] for e in rig.key_changes()]
    assert keys == ["seed"] + [f"p{i:010d}" for i in range(600)]
