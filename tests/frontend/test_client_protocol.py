"""CdcClient's second-wave options in real Chromium against the real daemon: key filters and
onKey(), skipOrigin (a C++ writer marks its batches with cdc-origin: LogData), coalesce,
onStats() over the WebSocket and over the long-poll fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.harness.writers import OriginWriter, build_origin_writer as build

from .conftest import TOKEN, Daemon, Harness, refused_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]

FAST = {"backoff": {"baseMs": 100, "maxMs": 800}, "connectTimeoutMs": 3000}


@pytest.fixture(scope="module")
def writer_exe(tmp_path_factory: Any) -> Path:
    exe = build(tmp_path_factory.mktemp("cxx"))
    if exe is None:
        pytest.skip("g++ and librocksdb-dev are needed for the origin writer")
    return exe


def _record(h: Harness, js_stream: str, name: str) -> None:
    h.page.evaluate(f"() => {{ window.rec.{name} = []; {js_stream}.subscribe((x) => window.rec.{name}.push(x)); }}")


def test_key_filter_onkey_skip_origin_and_stats(serve_daemon_factory: Any, harness_factory: Any, writer_exe: Path) -> None:
    daemon: Daemon = serve_daemon_factory("--stats-interval-ms", "200")
    h = harness_factory(daemon)
    h.start_client(types=["key_change"], key=["k1"], skipOrigin="me", **FAST)
    h.wait_status("connected")
    _record(h, "window.client.onKey('k3')", "k3")  # adds k3 to the server's key filter
    wait_for(lambda: any(f["type"] == "subscribed" and "k3" in (f["filter"].get("key") or []) for f in h.rec("control")), 10, "subscribed with k3")
    assert h.page.evaluate("window.client.filter.key") == ["k1", "k3"]
    with OriginWriter(writer_exe, daemon.db) as w:
        w.batch("me", ("k1", "mine"))  # my own write: not emitted
        w.batch("other", ("k1", "theirs"))
        w.batch(None, ("k2", "unwatched"))
        w.batch("other", ("k1", "x"), ("k3", "y"))
        evs = h.wait_events(3)
    assert [(e["key"], e.get("origin")) for e in evs] == [("k1", "other"), ("k1", "other"), ("k3", "other")]
    assert evs[1]["batch_count"] == 2 and evs[1]["batch_seq"] == evs[1]["seq"] and evs[2]["batch_seq"] == evs[1]["seq"]
    assert "batch_count" not in evs[0]
    assert h.page.evaluate("window.client.stats.skipped") == 1
    assert [e["key"] for e in h.rec("k3")] == ["k3"]
    # stats frames: onStats() adds "stats" to the types filter
    _record(h, "window.client.onStats()", "stats")
    wait_for(lambda: len(h.rec("stats")) >= 2, 10, "two stats frames")
    st = h.rec("stats")[-1]
    assert st["type"] == "stats" and "id" not in st and st["interval_ms"] == 200 and "default" in st["cf"]
    assert st["cf"]["default"]["total"]["put"] >= 5
    assert h.page.evaluate("window.client.filter.types").count("stats") == 1
    assert h.page.evaluate("window.client.latestStats.timestamp") >= st["timestamp"]
    assert all(e["type"] != "stats" for e in h.rec("events"))  # never on the event streams


def test_coalesce_and_stats_while_polling(serve_daemon_factory: Any, harness_factory: Any, writer_exe: Path) -> None:
    daemon: Daemon = serve_daemon_factory("--stats-interval-ms", "200")
    h = harness_factory(daemon)
    h.start_client(types=["key_change"], coalesce=400, **FAST)
    h.wait_status("connected")
    assert h.rec("control")[0]["coalesce_ms"] == 400
    with OriginWriter(writer_exe, daemon.db) as w:
        seqs = [w.batch(None, ("hot", f"v{i}")) for i in range(15)]
        h.wait_events(1)
        w.batch(None, ("end", "x"))  # a later change: whatever was held for "hot" came before it
        wait_for(lambda: any(e["key"] == "end" for e in h.rec("events")), 10, "the end marker")
    hot = [e for e in h.rec("events") if e["key"] == "hot"]
    assert [e["seq"] for e in hot] == [seqs[-1]]  # one change per window: the latest
    # long-poll fallback: stats arrive as the `stats` field of /events
    p = harness_factory(daemon)
    p.start_client(url=f"ws://127.0.0.1:{refused_port()}/ws/events", pollUrl=daemon.base + "/events", pollAfterFailures=1, pollTimeoutS=5, token=TOKEN, **FAST)
    p.wait_status("polling")
    _record(p, "window.client.onStats()", "stats")
    wait_for(lambda: len(p.rec("stats")) >= 2, 15, "stats while polling")
    ts = [s["timestamp"] for s in p.rec("stats")]
    assert ts == sorted(set(ts))  # each stats object once
