"""SIGTERM with a long-poll in flight: the poll is answered at once and the daemon exits 0."""

from __future__ import annotations

import asyncio
import time

from tests.harness.daemon import token
from tests.harness.net import http_request, http_request_sync
from tests.harness.waiting import wait_for


def _polls_waiting(port: int) -> int:
    body = http_request_sync(port, "GET", "/metrics", timeout=5).body.decode()
    for line in body.splitlines():
        if line.startswith("cdc_http_polls_waiting "):
            return int(float(line.split()[1]))
    raise AssertionError("cdc_http_polls_waiting not exported")


async def test_sigterm_answers_inflight_long_poll(daemon_proc_factory):
    p = daemon_proc_factory(shutdown_timeout_s=10.0)
    poll = asyncio.create_task(http_request(p.port, "GET", f"/events?timeout=30&token={token()}", timeout=30))
    await wait_for(lambda: _polls_waiting(p.port) == 1, 10, "the long-poll to be parked", interval=0.02)
    t0 = time.monotonic()
    rc = await asyncio.to_thread(p.terminate, 20.0)
    took = time.monotonic() - t0
    r = await asyncio.wait_for(poll, 5)
    assert r.status == 200, r.body
    body = r.json()
    assert body["events"] == [] and isinstance(body["cursor"], int)
    assert rc == 0, p.log()[-2000:]
    assert took < 3, f"shutdown took {took:.1f} s"
    assert "shutdown took longer" not in p.log()
