"""EventBus unit tests against a real LMDB journal in a tmp dir (no daemon, no mocks).

The writer loop is started explicitly (``bus.run()`` as a task) so that a test can queue work
first and observe how it is grouped into transactions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cdc.delivery.bus import EventBus, event_size
from cdc.journal.lmdb_journal import Journal, Record
from tests.harness.waiting import wait_for


def ev(i: int, size: int = 0) -> dict[str, Any]:
    return {"type": "sync_event", "status": "completed", "details": {"i": i, "pad": "x" * size}}


@pytest.fixture
def journal(tmp_path: Any) -> Any:
    j = Journal(str(tmp_path / "journal"), map_size=64 << 20, sync=False)
    yield j
    j.close()


class Rig:
    def __init__(self, journal: Journal, **kw: Any) -> None:
        self.batches: list[list[Record]] = []
        self.bus = EventBus(journal, on_commit=self.batches.append, **kw)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.bus.run())

    def ids(self) -> list[int]:
        return [r.id for b in self.batches for r in b]

    def details(self) -> list[int]:
        import json

        return [json.loads(r.wire)["details"]["i"] for b in self.batches for r in b]


@pytest.fixture
async def rig_factory(journal: Journal) -> AsyncIterator[Any]:
    rigs: list[Rig] = []

    def make(**kw: Any) -> Rig:
        r = Rig(journal, **kw)
        rigs.append(r)
        return r

    yield make
    for r in rigs:
        await r.bus.close()
        if r.task is not None:
            await asyncio.wait_for(r.task, 10)


async def test_group_commit_what_queued_meanwhile_goes_in_one_transaction(rig_factory: Any) -> None:
    r = rig_factory()
    for i in range(5):
        r.bus.emit_nowait([ev(2 * i), ev(2 * i + 1)])
    r.start()
    await r.bus.flush()
    assert r.bus.commits == 1 and len(r.batches) == 1
    assert r.ids() == list(range(1, 11)) and r.details() == list(range(10))
    assert r.bus.pending == 0 and r.bus.pending_bytes == 0


async def test_trickle_commits_at_once(rig_factory: Any) -> None:
    r = rig_factory()
    r.start()
    for i in range(3):
        ids = await r.bus.emit_and_wait([ev(i)])
        assert ids == [i + 1]
    assert r.bus.commits == 3


async def test_batch_count_bound_never_splits_an_emit(rig_factory: Any) -> None:
    r = rig_factory(max_batch=10)
    for i in range(6):
        r.bus.emit_nowait([ev(4 * i + k) for k in range(4)])  # 6 items of 4 events
    r.start()
    await r.bus.flush()
    assert [len(b) for b in r.batches] == [8, 8, 8]  # 4 + 4 fits in 10, a third item would not
    assert r.details() == list(range(24))


async def test_batch_byte_bound(rig_factory: Any) -> None:
    r = rig_factory()
    r.bus.max_batch_bytes = 3 * event_size(ev(0, 1000)) - 1  # room for two of these, not three
    for i in range(6):
        r.bus.emit_nowait([ev(i, 1000)])
    r.start()
    await r.bus.flush()
    assert [len(b) for b in r.batches] == [2, 2, 2]
    assert r.details() == list(range(6))


async def test_backpressure_on_event_count_waits_and_loses_nothing(rig_factory: Any) -> None:
    r = rig_factory(max_pending=10)
    await r.bus.emit([ev(i) for i in range(10)])  # fills the queue (the writer is not running)
    blocked = asyncio.create_task(r.bus.emit([ev(10)]))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not blocked.done() and r.bus.emit_waits == 1 and r.bus.pending == 10
    r.start()
    await asyncio.wait_for(blocked, 10)
    await r.bus.flush()
    assert r.details() == list(range(11))


async def test_backpressure_on_bytes_but_one_item_always_fits(rig_factory: Any) -> None:
    big = ev(0, 50_000)
    r = rig_factory(max_pending_bytes=10_000)
    await asyncio.wait_for(r.bus.emit([big]), 5)  # larger than the bound: accepted into an empty queue
    assert r.bus.pending_bytes >= event_size(big)
    blocked = asyncio.create_task(r.bus.emit([ev(1)]))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not blocked.done() and r.bus.emit_waits == 1
    r.start()
    await asyncio.wait_for(blocked, 10)
    await r.bus.flush()
    assert r.details() == [0, 1]


async def test_checkpoints_commit_with_their_events(rig_factory: Any, journal: Journal) -> None:
    r = rig_factory()
    r.bus.emit_nowait([ev(0)], {"capture": b"cp-1"})
    r.bus.emit_nowait([], {"capture": b"cp-2"})  # a checkpoint alone
    r.start()
    await r.bus.flush()
    assert journal.get_checkpoint("capture") == b"cp-2"
    assert r.details() == [0]


async def test_unstorable_event_is_skipped_and_ids_tell_which(rig_factory: Any) -> None:
    r = rig_factory()
    r.start()
    ids = await r.bus.emit_and_wait([ev(0), {"type": "x", "bad": object()}, ev(2)])
    assert ids == [1, 2] and r.details() == [0, 2]


async def test_on_error_a_failing_batch_is_retried_event_by_event(rig_factory: Any) -> None:
    """A commit that raises something other than JournalError (here: a checkpoint LMDB cannot
    store) is salvaged event by event: on_error is told, the good events commit once, in order."""
    r = rig_factory()
    errors: list[str] = []
    r.bus.on_error = errors.append
    r.bus.emit_nowait([ev(0), ev(1)])
    r.bus.emit_nowait([ev(2)], {"capture": 123})  # type: ignore[dict-item]
    r.bus.emit_nowait([ev(3)])
    r.start()
    await wait_for(lambda: errors, 10, "on_error")
    await wait_for(lambda: 3 in r.details(), 10, "the events after the bad one")
    assert errors[0] == "TypeError in a journal commit" and r.bus.failed_batches >= 1
    assert r.details() == [0, 1, 3], "each good event exactly once, in order"
    assert r.bus.dropped_events == 1


async def test_fan_out_overlaps_the_next_commit_in_order_and_flush_waits_for_it(tmp_path: Any) -> None:
    import threading

    j = Journal(str(tmp_path / "synced"), map_size=64 << 20, sync=True)  # fsync per commit: threaded commits
    published: list[tuple[int, int]] = []
    started: list[int] = []
    cond = threading.Condition()
    overlapped: list[bool] = []
    real_append = j.append

    def append(events: Any, checkpoints: Any = None) -> Any:
        with cond:
            started.append(len(events))
            cond.notify_all()
        return real_append(events, checkpoints)

    def on_commit(records: Any) -> None:
        # the fan-out of commit k while more is queued: commit k+1 must already be under way
        # (before, it only started after this call returned: the wait timed out)
        k = len(published) + 1
        if k < 20:
            with cond:
                overlapped.append(cond.wait_for(lambda: len(started) >= k + 1, timeout=2))
        published.append((records[0].id, records[-1].id))

    j.append = append  # type: ignore[method-assign]
    bus = EventBus(j, on_commit=on_commit, max_batch=10)
    task = asyncio.create_task(bus.run())
    try:
        for i in range(0, 200, 10):
            bus.emit_nowait([ev(k) for k in range(i, i + 10)])
        await bus.flush()
        # everything emitted before flush() is published when it returns, in id order, once
        assert [i for a, b in published for i in range(a, b + 1)] == list(range(1, 201))
        assert len(overlapped) == 19 and all(overlapped)
        bus.emit_nowait([ev(999)])
        await bus.flush()
        assert published[-1] == (201, 201)  # a lone commit is published at once
    finally:
        await bus.close()
        await asyncio.wait_for(task, 10)
        j.close()
