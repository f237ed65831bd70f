"""2PC across a daemon restart (issue 9 item 4): a transaction prepared before the daemon is
killed (kill -9) or stopped (SIGTERM) and committed after its restart is delivered exactly, with
the store's own sequence numbers, no capture_gap and readiness 200."""

from __future__ import annotations

import base64
from collections import Counter
from typing import Any

import pytest

from tests.harness.daemon import OPAQUE_TOKEN
from tests.harness.net import http_request_sync
from tests.harness.waiting import wait_for_sync


def _events(port: int) -> list[dict[str, Any]]:
    r = http_request_sync(port, "GET", f"/events?since=0&limit=10000&token={OPAQUE_TOKEN}")
    assert r.status == 200, r.body
    return r.json()["events"]


def _key_changes(port: int) -> Counter[tuple[str, bytes, int, str]]:
    out: Counter[tuple[str, bytes, int, str]] = Counter()
    for e in _events(port):
        if e["type"] == "key_change":
            k = base64.b64decode(e["key"]) if e.get("key_encoding") == "base64" else e["key"].encode()
            out[(e["cf"], k, e["seq"], e["operation"])] += 1
    return out


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
@pytest.mark.parametrize("policy", ["committed", "prepared", "unprepared"])
def test_prepared_before_restart_committed_after(tmp_path: Any, cxx_writer: Any, daemon_proc_factory: Any, policy: str, how: str) -> None:
    db = str(tmp_path / "store")
    w = cxx_writer(db, policy=policy, cfs=("c1",))
    w.script("""
        put default before 1
        txn t1
        put default p1 a
        put default p1 b
        put c1 p2 c
        merge default p3 d
        end
        prepare t1
        txn t2
        put default q1 a
        end
        prepare t2
        put default seen 1
    """)
    p = daemon_proc_factory(db=db)
    wait_for_sync(lambda: any(k == b"seen" for (_c, k, _s, _o) in _key_changes(p.port)), what="the put after the prepares")
    if how == "kill9":
        p.kill9()
    else:
        assert p.terminate() == 0
    w.script("""
        commit t1
        put default after 1
        rollback t2
        put default last 1
    """)
    rep = w.report()
    p.restart()
    # the rolled-back prepared put of q1 is never delivered (WritePrepared logs a restoring delete: delivered)
    expected = Counter((cf, k, s, t) for cf, k, s, t, _v in rep.versions if (k, t) != (b"q1", "put"))
    wait_for_sync(lambda: any(k == b"last" for (_c, k, _s, _o) in _key_changes(p.port)), what="the last put")
    got = _key_changes(p.port)
    assert got == expected
    assert not [e for e in _events(p.port) if e["type"] == "capture_gap"]
    r = http_request_sync(p.port, "GET", "/health/ready")
    assert r.status == 200, r.body
