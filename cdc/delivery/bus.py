"""The event bus: producers emit, one writer commits batches to the journal, the hub fans out.

Invariants:
- Lossless and ordered: events are committed in emit order; nothing emitted is dropped.
  While the journal is full the writer keeps the batch and retries (readiness reports it),
  and producers wait once ``max_pending`` events or ``max_pending_bytes`` bytes (the events'
  key/value/field sizes, see :func:`event_size`) are queued (backpressure: capture waits, loses
  nothing). One item is always accepted into an empty queue, however large.
- One writer: a single task runs the commits through ``asyncio.to_thread`` (LMDB write
  transactions never span an await); with a journal that does not fsync, commits of at most
  ``inline_max`` events run on the loop thread (cheaper than the thread hop). Batching is natural: whatever was emitted while the
  previous commit ran goes into the next transaction (capped at ``max_batch`` events), so a
  trickle commits at once and a flood commits in large batches.
- Checkpoints given with events are committed in the same transaction as those events.
- Committed records go to the ``on_commit`` callback (the hub) in id order, synchronously
  from the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import operator
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from cdc.errors import JournalError
from cdc.model.events import EVENT_TYPES, Event
from cdc.journal.lmdb_journal import Journal
from cdc.model.chunk import Committed
from cdc.model.wire import PreEncoded, Record

__all__ = ["EventBus", "event_size"]

log = logging.getLogger("cdc.bus")

_Item = tuple[Sequence[Any], "dict[str, bytes] | None", int, "asyncio.Future[list[int]] | None", int]

_EVENT_OVERHEAD = 128
"""Bytes counted per event besides its variable fields (ids, timestamps, JSON punctuation)."""


_SIZED_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f for f in ("key", "end_key", "value", "cf", "origin") if f in cls.__struct_fields__)  # type: ignore[attr-defined]
    for cls in EVENT_TYPES.values()
}
_WITH_DETAILS = frozenset(cls for cls in EVENT_TYPES.values() if "details" in cls.__struct_fields__)  # type: ignore[attr-defined]


def event_size(ev: Any) -> int:
    """Bytes an event holds while queued: its encoded parts for a pre-encoded tuple, else its
    key, end key, value, cf and details (the variable-size fields) plus a fixed overhead."""
    if type(ev) is PreEncoded:
        try:
            return len(ev[0]) + len(ev[1]) + _EVENT_OVERHEAD
        except (IndexError, TypeError):
            return _EVENT_OVERHEAD
    if isinstance(ev, dict):
        try:
            return len(_json_encode(ev)) + _EVENT_OVERHEAD
        except Exception:  # noqa: BLE001 - the journal rejects it later; count it small
            return _EVENT_OVERHEAD
    n = _EVENT_OVERHEAD
    for name in _SIZED_FIELDS.get(type(ev), ()):
        v = getattr(ev, name)  # a Struct field by name (the event types have different fields)
        if isinstance(v, str | bytes):
            n += len(v)
    details = ev.details if type(ev) in _WITH_DETAILS else None
    if details:
        try:
            n += len(_json_encode(details))
        except Exception:  # noqa: BLE001
            pass
    return n


_json_encode = msgspec.json.Encoder().encode


_CORE = operator.itemgetter(0)
_VALUE = operator.itemgetter(1)


def _batch_size(events: Sequence[Any]) -> int:
    """Sum of :func:`event_size`, fast for capture's pre-encoded tuples (their core JSON already
    holds the key)."""
    if events and type(events[0]) is PreEncoded:
        try:
            return sum(map(len, map(_CORE, events))) + sum(map(len, map(_VALUE, events))) + _EVENT_OVERHEAD * len(events)
        except (TypeError, IndexError, KeyError):
            pass
    return sum(map(event_size, events))


class EventBus:
    """Queue -> journal -> hub.

    Args:
        journal: the open journal.
        on_commit: called with each list of committed records (in order).
        max_pending: events queued before ``emit`` waits.
        max_pending_bytes: bytes of events (see :func:`event_size`) queued before ``emit`` waits.
        max_batch: most events per write transaction.
        on_journal_state: called with (ok, reason) when the journal becomes full / writable.
    """

    def __init__(
        self,
        journal: Journal,
        *,
        on_commit: Callable[[list[Record]], None] | None = None,
        max_pending: int = 100_000,
        max_pending_bytes: int = 256 << 20,
        max_batch: int = 20_000,
        on_journal_state: Callable[[bool, str], None] | None = None,
    ) -> None:
        self.journal = journal
        self.on_commit = on_commit
        self.on_journal_state = on_journal_state
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.max_batch_bytes = max(1 << 20, min(16 << 20, max_pending_bytes // 4))
        """Most bytes per write transaction (the journal encodes a batch before committing it: a
        second copy in memory)."""
        self.max_batch = max_batch
        self.inline_max = 256  # journal without fsync: commits this small run on the loop thread
        self._queue: collections.deque[_Item] = collections.deque()
        self._pending_events = 0
        self._pending_bytes = 0
        self.emit_waits = 0  # times a producer waited for room (events or bytes)
        self._emitted_seq = 0  # items emitted so far
        self._committed_seq = 0  # items committed so far
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._committed = asyncio.Event()
        self._closing = False
        self._close_evt = asyncio.Event()
        self._journal_ok = True
        self._batch_limit = max_batch  # halved while the journal is full, so that a smaller batch can fit
        # statistics (read by metrics)
        self.commits = 0
        self.committed_events = 0
        self.last_commit_s = 0.0
        self.last_error: str = ""
        self.failed_batches = 0  # commits that raised something other than JournalError
        self.dropped_events = 0  # events lost because they could not be committed at all
        self.on_error: Callable[[str], None] | None = None  # told about failed_batches (health)

    # ------------------------------------------------------------------ producers

    async def emit(self, events: Sequence[Event | dict[str, Any]], checkpoints: dict[str, bytes] | None = None, *, size: int | None = None) -> None:
        """Queue events (and checkpoints to commit with them); waits while the queue is full.

        ``size``: the events' bytes when the producer knows them (see :func:`event_size`;
        capture passes its own count instead of a pass over every event here).
        Returns once queued, not committed (see :meth:`flush`).
        """
        while self._full() and not self._closing:
            self.emit_waits += 1
            self._space.clear()
            await self._space.wait()
        self.emit_nowait(events, checkpoints, size=size)

    async def emit_and_wait(self, events: Sequence[Event | dict[str, Any]]) -> list[int]:
        """Emit and wait for the commit; returns the ids given to the events (skipped ones omitted)."""
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        while self._full() and not self._closing:
            self.emit_waits += 1
            self._space.clear()
            await self._space.wait()
        self.emit_nowait(events, None, _future=fut)
        return await fut

    def emit_nowait(
        self,
        events: Sequence[Event | dict[str, Any]],
        checkpoints: dict[str, bytes] | None = None,
        *,
        size: int | None = None,
        _future: asyncio.Future[list[int]] | None = None,
    ) -> None:
        """Queue without waiting (for rare control events such as health changes)."""
        if not events and not checkpoints:
            if _future is not None:
                _future.set_result([])
            return
        self._emitted_seq += 1
        if size is None:
            size = _batch_size(events)
        self._queue.append((events, checkpoints, self._emitted_seq, _future, size))
        self._pending_events += len(events)
        self._pending_bytes += size
        self._wake.set()

    async def flush(self) -> None:
        """Wait until everything emitted before this call is committed."""
        target = self._emitted_seq
        while self._committed_seq < target:
            self._committed.clear()
            await self._committed.wait()

    @property
    def pending(self) -> int:
        """Events queued but not committed yet."""
        return self._pending_events

    @property
    def pending_bytes(self) -> int:
        """Bytes of the events queued but not committed yet (see :func:`event_size`)."""
        return self._pending_bytes

    def _full(self) -> bool:
        """No room for another emit: too many events, or too many bytes (an empty queue has room)."""
        return self._pending_events >= self.max_pending or (self._pending_bytes >= self.max_pending_bytes and bool(self._queue))

    # ------------------------------------------------------------------ writer

    async def run(self) -> None:
        """The writer loop; returns after :meth:`close` once the queue is drained."""
        replaced = self.journal.replaced
        if replaced:  # a new journal where another one was: announce it (README "Recovering the journal")
            self.emit_nowait([{"type": "cdc.journal_replaced", "timestamp": int(time.time() * 1000), **replaced}])
        retry_s = 0.05
        deferred: Any = None  # committed records whose fan-out runs while the next commit is in its thread
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if deferred is not None:
                    self._publish(deferred)
                    deferred = None
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            items: list[_Item] = []
            events: list[Any] = []
            checkpoints: dict[str, bytes] = {}
            limit = self._batch_limit
            batch_bytes = 0
            max_bytes = self.max_batch_bytes
            while self._queue and (
                not items or (len(events) + len(self._queue[0][0]) <= limit and batch_bytes + self._queue[0][4] <= max_bytes)
            ):
                item = self._queue.popleft()
                if not items and (len(item[0]) >= limit or not self._queue):
                    events = item[0]  # type: ignore[assignment]  # alone in this commit: no copy (never mutated)
                else:
                    if len(items) == 1 and events is items[0][0]:
                        events = list(events)
                    events.extend(item[0])
                items.append(item)
                batch_bytes += item[4]
                if item[1]:
                    checkpoints.update(item[1])
            t0 = time.perf_counter()
            try:
                if len(events) <= self.inline_max and not self.journal.sync:
                    # no fsync: a small commit takes ~50 us, less than the hop to a worker thread
                    if deferred is not None:
                        self._publish(deferred)
                        deferred = None
                    records = self.journal.append(events, checkpoints or None)
                else:
                    # the commit starts in a worker thread now; the previous commit's fan-out runs
                    # meanwhile on this thread (LMDB and fsync release the GIL): still in id order
                    fut = loop.run_in_executor(None, self.journal.append, events, checkpoints or None)
                    if deferred is not None:
                        self._publish(deferred)
                        deferred = None
                    records = await fut
            except JournalError as exc:
                # Keep the batch (in order) and retry; readiness reports the problem.
                self._queue.extendleft(reversed(items))
                self._batch_limit = max(1, len(events) // 2)
                self.last_error = str(exc)
                if self._journal_ok:
                    self._journal_ok = False
                    log.error("%s; events are held until the journal accepts them", exc)
                    if self.on_journal_state is not None:
                        self.on_journal_state(False, str(exc))
                if self._closing:
                    log.error("shutting down with %d uncommitted events: %s", self._pending_events, exc)
                    return
                await self._sleep_or_close(retry_s)
                retry_s = min(retry_s * 2, 1.0)
                try:  # retention may free pages (limits lowered, events aged out)
                    await asyncio.to_thread(self.journal.prune)
                except JournalError:
                    pass
                except Exception:  # noqa: BLE001 - the writer loop must go on (lmdb errors while full)
                    log.debug("prune failed", exc_info=True)
                continue
            except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the writer
                # Not a journal state problem (those are JournalError): commit the batch one event
                # at a time so that only the event(s) that fail are lost (counted, logged).
                self.failed_batches += 1
                self.last_error = f"{type(exc).__name__} in a journal commit"
                if self.failed_batches == 1:
                    log.exception("journal commit failed; retrying the batch event by event")
                else:
                    log.error("journal commit failed (%s); retrying the batch event by event", type(exc).__name__)
                if self.on_error is not None:
                    self.on_error(self.last_error)
                try:
                    records, skipped, done = await asyncio.to_thread(self._salvage, items)
                except Exception:  # noqa: BLE001 - the writer loop must go on
                    log.exception("salvage failed")
                    records, skipped, done = [], set(), 0
                if done < len(items):
                    # a JournalError stopped the salvage: the rest is retried later (in order)
                    self._queue.extendleft(reversed(items[done:]))
                    items = items[:done]
                    events = [ev for item in items for ev in item[0]]
                    if not items:
                        await self._sleep_or_close(retry_s)
                        continue
            else:
                skipped = None
            retry_s = 0.05
            self._batch_limit = self.max_batch
            self.last_commit_s = time.perf_counter() - t0
            self.commits += 1
            self.committed_events += len(records)
            self._pending_events -= len(events)
            self._pending_bytes -= sum(item[4] for item in items)
            self._committed_seq = items[-1][2]
            if not self._journal_ok:
                self._journal_ok = True
                log.warning("journal writable again")
                if self.on_journal_state is not None:
                    self.on_journal_state(True, "")
            if any(item[3] is not None for item in items):
                self._resolve(items, records, set(self.journal.last_skipped) if skipped is None else skipped)
            self._committed.set()
            if not self._full():
                self._space.set()
            if records:
                if self._queue and not self._closing:
                    deferred = records  # fanned out as soon as the next commit is under way
                else:
                    self._publish(records)

    def _publish(self, records: Any) -> None:
        """Hand committed records to ``on_commit`` (the hub)."""
        if self.on_commit is not None:
            try:
                self.on_commit(records)
            except Exception:  # noqa: BLE001 - a hub bug must not stop commits
                log.exception("fan-out failed")

    def _salvage(self, items: list[_Item]) -> tuple[list[Record], set[int], int]:
        """Commit ``items`` one event per transaction (worker thread), skipping events that fail.

        Returns (records, indices of skipped events in the concatenated batch, number of items
        fully handled). An item's checkpoints are committed with its last event (or alone), so a
        crash in between replays events rather than losing them. A JournalError (journal full)
        on an item's first event stops here and that item and the rest are retried later; on a
        later event of an item the rest of that item is dropped and counted (never duplicated).
        """
        records: list[Record] = []
        skipped: set[int] = set()
        idx = 0
        for n, (events, cps, _seq, _fut, _size) in enumerate(items):
            start_idx, start_len = idx, len(records)
            try:
                last = len(events) - 1
                for j, ev in enumerate(events):
                    cp = cps if j == last else None
                    try:
                        recs = self.journal.append([ev], cp)
                    except JournalError:
                        raise
                    except Exception as exc:  # noqa: BLE001
                        self.dropped_events += 1
                        log.error("dropped one event that cannot be committed (%s)", type(exc).__name__)
                        skipped.add(idx)
                        if cp:
                            self._append_checkpoints(cp)
                    else:
                        if recs:
                            records.extend(recs)
                        else:
                            skipped.add(idx)
                    idx += 1
                if not events and cps:
                    self._append_checkpoints(cps)
            except JournalError:
                if not events or j == 0:
                    del records[start_len:]
                    skipped = {i for i in skipped if i < start_idx}
                    return records, skipped, n
                # part of this item is committed: count the rest as dropped rather than duplicate
                for k in range(j, len(events)):
                    skipped.add(start_idx + k)
                    self.dropped_events += 1
                idx = start_idx + len(events)
        return records, skipped, len(items)

    def _append_checkpoints(self, cps: dict[str, bytes]) -> None:
        """Commit checkpoints alone (salvage); ones LMDB cannot store are dropped and logged
        instead of failing the salvage (which re-queued events already committed: duplicates)."""
        try:
            self.journal.append([], cps)
        except JournalError:
            raise
        except Exception as exc:  # noqa: BLE001
            log.error("dropped checkpoints that cannot be committed (%s)", type(exc).__name__)

    @staticmethod
    def _resolve(items: list[_Item], records: list[Record] | Committed, skipped: set[int]) -> None:
        """Give each waiting emitter the ids of its own events."""
        idx = 0  # index into the concatenated events
        ri = 0  # index into records
        id_at = records.id_at if type(records) is Committed else (lambda i: records[i].id)
        for events, _cp, _seq, fut, _size in items:
            ids: list[int] = []
            for _ in range(len(events)):
                if idx not in skipped:
                    ids.append(id_at(ri))
                    ri += 1
                idx += 1
            if fut is not None and not fut.done():
                fut.set_result(ids)

    async def _sleep_or_close(self, delay_s: float) -> None:
        try:
            async with asyncio.timeout(delay_s):
                await self._close_evt.wait()
        except TimeoutError:
            pass

    async def close(self) -> None:
        """Ask the writer to drain the queue and return (producers are stopped first)."""
        self._closing = True
        self._close_evt.set()
        self._wake.set()
        self._space.set()

    @property
    def journal_ok(self) -> bool:
        return self._journal_ok

