"""Pure logic of /client.js run in node (no sockets): backoff bounds and jitter, stream semantics."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parents[2] / "cdc" / "static" / "client.js"


def _node(script: str) -> object:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    code = f'import("{CLIENT}").then(async (m) => {{ const r = await (async () => {{ {script} }})(); console.log(JSON.stringify(r)); }})'
    out = subprocess.run([node, "-e", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_backoff_is_exponential_full_jitter_and_bounded() -> None:
    r = _node(
        """
        const c = new m.CdcClient({ url: "ws://127.0.0.1:1/ws/events", backoff: { baseMs: 100, maxMs: 3000 } });
        const rows = [];
        for (let k = 0; k < 12; k++) {
            const caps = [], ds = [];
            for (let i = 0; i < 2000; i++) { c._attempt = k; ds.push(c._backoffDelay()); }
            rows.push({ k, min: Math.min(...ds), max: Math.max(...ds), mean: ds.reduce((a, b) => a + b, 0) / ds.length });
        }
        return rows;
        """
    )
    assert isinstance(r, list)
    for row in r:
        cap = min(3000, 100 * 2 ** row["k"])
        assert 0 <= row["min"] < cap * 0.1, row  # full jitter: can be ~0
        assert row["max"] < cap and row["max"] > cap * 0.9, row  # never above the bound
        assert cap * 0.4 < row["mean"] < cap * 0.6, row  # uniform on [0, cap)


def test_streams_are_observable_and_multicast() -> None:
    r = _node(
        """
        const c = new m.CdcClient({ url: "ws://127.0.0.1:1/ws/events" });
        const got = [], typed = [];
        const s1 = c.events.subscribe((e) => got.push(e.id));
        const s2 = c.events[Symbol.observable ?? "@@observable"]().subscribe({ next: (e) => got.push(-e.id) });
        c.onSyncEvents().subscribe((e) => typed.push(e.id));
        const bad = c.events.subscribe(() => { throw new Error("observer error"); });
        process.on("uncaughtException", () => {});  // reported asynchronously, like RxJS
        c._deliver({ id: 5, type: "sync_event" });
        c._deliver({ id: 5, type: "sync_event" });   // duplicate: dropped
        c._deliver({ id: 4, type: "key_change" });   // older: dropped
        c._deliver({ id: 6, type: "key_change" });
        s2.unsubscribe();
        c._deliver({ id: 7, type: "sync_event" });
        const statuses = [];
        c.status.subscribe((s) => statuses.push(s));   // replays the current value
        return { got, typed, lastId: c.lastId, dups: c.stats.duplicates, statuses, closed: s2.closed,
                 interop: typeof c.events["@@observable"] === "function" };
        """
    )
    assert r == {
        "got": [5, -5, 6, -6, 7],
        "typed": [5, 7],
        "lastId": 7,
        "dups": 2,
        "statuses": ["disconnected"],
        "closed": True,
        "interop": True,
    }
