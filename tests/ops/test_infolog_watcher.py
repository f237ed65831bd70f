"""InfoLogWatcher on real rocksdict stores: compaction/flush events, progress, rotation, restart,
MANIFEST fallback — against the real journal + bus."""

from __future__ import annotations

import os

import pytest

from cdc.ops import InfoLogWatcher
from conftest import run_components, wait_for
from opswriter import OpsWriter

pytestmark = pytest.mark.integration


def _by_job(events, etype="compaction_status"):
    out = {}
    for e in events:
        if e["type"] == etype:
            out.setdefault(e.get("job"), []).append(e["status"])
    return out


async def test_slow_compaction_started_running_completed(tmp_path, ops_config):
    db = str(tmp_path / "db")
    with OpsWriter(db, rate=6 << 20) as w:
        async with run_components(ops_config(db), str(tmp_path), [InfoLogWatcher]) as h:
            for _ in range(4):
                w.cmd("fill", count=4000, value_size=1000)
                w.cmd("flush")
            await wait_for(lambda: len([e for e in h.events("flush_status") if e["status"] == "completed"]) == 4)
            w.cmd("compact_bg")
            await wait_for(lambda: any(e["status"] == "completed" for e in h.events("compaction_status")), 30)
            w.cmd("wait_bg")
            comp = h.events("compaction_status")
            statuses = [e["status"] for e in comp]
            assert statuses[0] == "started" and statuses[-1] == "completed"
            assert statuses.count("started") == 1 and statuses.count("completed") == 1
            running = [e for e in comp if e["status"] == "running"]
            assert len(running) >= 3, statuses
            prog = [e["details"]["progress"] for e in running]
            assert prog == sorted(prog) and 0 < prog[0] < prog[-1] <= 99.9
            started, done = comp[0], comp[-1]
            assert started["details"]["input_file_count"] == 4
            assert started["details"]["input_bytes"] > 15_000_000
            assert done["details"]["output_bytes"] > 15_000_000
            assert done["details"]["records_in"] == 16000
            assert done["cf"] == "default" and done["job"] == started["job"]
            # at most 4 progress events per second
            ts = [e["timestamp"] for e in running]
            span = max(1, ts[-1] - ts[0])
            assert (len(ts) - 1) / (span / 1000) <= 4.5
            flushes = _by_job(h.events("flush_status"), "flush_status")
            assert all(v == ["started", "completed"] for v in flushes.values())
