"""Fault: the capture task gets stuck (issue 4). Liveness must notice, say so, and recover.

Real daemon, real store, real WebSocket/HTTP clients. The one injected fault: the capture's
decode step (which runs in a worker thread) blocks on a lock, as a read from a hung disk
would; the event loop itself stays healthy, so only the watchdog can tell.

Deterministic: the health's beat clock is a :class:`ManualClock`; the test moves it past the beat
timeout once the capture is known to be blocked and runs the watchdog's check itself, so neither
the 30 s production bound nor the machine's load decide the outcome.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from cdc.capture import WalCapture
from tests.harness.clock import ManualClock
from tests.harness.net import http_request, recv_json
from tests.harness.waiting import wait_for
from tests.harness.writers import StoreWriter

pytestmark = pytest.mark.integration


async def test_stuck_capture_makes_liveness_unhealthy_then_recovers(daemon_factory, tmp_path):
    db = str(tmp_path / "store")
    with StoreWriter(db) as w:
        w.put("before", "1")
        cap = WalCapture()
        d = await daemon_factory(components=[cap], db=db)
        health = d.ctx.health
        clock = ManualClock(time.monotonic())
        health.clock = clock  # beats are stamped and aged on the test's clock from now on
        await wait_for(lambda: health.healthy("startup"), what="startup")

        entered = threading.Event()
        gate = threading.Event()
        real_decode = cap._decode

        def stuck_decode(*args: Any, **kw: Any) -> Any:
            entered.set()
            gate.wait(30)  # a hung read: the thread blocks, the capture task awaits it
            return real_decode(*args, **kw)

        cap._decode = stuck_decode  # type: ignore[method-assign]
        cap.thread_min_bytes = 0  # decode in the worker thread even for small reads
        try:
            async with d.connect("types=health_change,key_change") as ws:
                assert (await recv_json(ws))["type"] == "hello"
                w.put("during", "2")  # capture picks it up and blocks in decode
                await wait_for(entered.is_set, 15, "capture blocked in decode")

                clock.advance(health.beat_timeout_s + 1)  # time passes; the blocked capture cannot beat
                health.check_beats()  # what the watchdog does every second
                assert not health.healthy("liveness")
                r = await http_request(d.port, "GET", "/health/live")
                assert r.status == 503 and "capture" in r.json()["reason"]
                ev = await recv_json(ws, timeout=15)
                while not (ev.get("type") == "health_change" and ev["probe"] == "liveness" and ev["status"] == "unhealthy"):
                    ev = await recv_json(ws, timeout=15)
                assert "capture" in ev["reason"], ev

                gate.set()  # the read returns: capture resumes and beats again (on the advanced clock)

                def recovered() -> bool:
                    health.check_beats()
                    return health.healthy("liveness")

                await wait_for(recovered, 15, "liveness healthy again")
                seen: list[dict[str, Any]] = []
                while not (
                    any(e.get("type") == "key_change" and e["key"] == "during" for e in seen)
                    and any(e.get("type") == "health_change" and e["probe"] == "liveness" and e["status"] == "healthy" for e in seen)
                ):
                    seen.append(await recv_json(ws, timeout=15))
                assert (await http_request(d.port, "GET", "/health/live")).status == 200
        finally:
            gate.set()
