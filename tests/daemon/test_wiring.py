"""The helpers the capture node and the edge share (cdc/daemon/wiring.py, the NATS retry loop,
the bounded event wait, the labelled-counter builder): each does what the inlined copies did."""

from __future__ import annotations

import asyncio

from cdc.daemon.wiring import open_journal, run_guarded
from cdc.delivery.health import Health
from cdc.delivery.metrics import _counter_by
from cdc.delivery.natsbus import close_connection, retry_until_stopped
from cdc.delivery.waits import wait_event
from cdc.model.config import Config


async def test_retry_until_stopped_reports_errors_runs_after_and_stops() -> None:
    stop = asyncio.Event()
    calls: list[str] = []
    errors: list[Exception] = []

    async def attempt() -> None:
        calls.append("attempt")
        if len(calls) == 1:
            raise ConnectionError("down")
        stop.set()

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    async def after() -> None:
        calls.append("after")

    async with asyncio.timeout(5):
        await retry_until_stopped(stop, attempt, on_error, after)
    assert calls == ["attempt", "after", "attempt", "after"]
    assert [type(e) for e in errors] == [ConnectionError]


async def test_retry_until_stopped_returns_at_once_when_stopped() -> None:
    stop = asyncio.Event()
    stop.set()

    async def attempt() -> None:
        raise AssertionError("not called")

    async def on_error(exc: Exception) -> None:
        raise AssertionError("not called")

    await retry_until_stopped(stop, attempt, on_error)


async def test_close_connection_ignores_none_and_errors() -> None:
    class Broken:
        closed = False

        async def close(self) -> None:
            self.closed = True
            raise OSError("gone")

    await close_connection(None)
    b = Broken()
    await close_connection(b)
    assert b.closed


async def test_wait_event() -> None:
    ev = asyncio.Event()
    assert await wait_event(ev, 0.01) is False
    ev.set()
    assert await wait_event(ev, 1.0) is True


async def test_run_guarded_turns_a_crash_into_readiness() -> None:
    health = Health(None)

    async def crash() -> None:
        raise ValueError("bug")

    await run_guarded("Thing", crash(), health)
    ok, reason = health.status("readiness")
    assert not ok and "Thing stopped: ValueError" in reason


def test_counter_by_sorted_string_labels() -> None:
    fam = _counter_by("x", "doc", "code", {1011: 2, 1001: 5})
    assert [(s.labels, s.value) for s in fam.samples if s.name == "x_total"] == [({"code": "1001"}, 5), ({"code": "1011"}, 2)]


def test_open_journal_uses_the_config(tmp_path) -> None:
    cfg = Config(db=str(tmp_path / "db"), state_dir=str(tmp_path / "state"), retention_count=7)
    j = open_journal(cfg, "mirror", sync=False)
    try:
        assert j.path == str(tmp_path / "state" / "mirror")
        assert j.retention_count == 7 and j.sync is False
    finally:
        j.close()
    j.close()  # idempotent
