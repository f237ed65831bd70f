"""client.js keeps the journal identity (``epoch``) with its cursor (issue 9 item 6), in node."""

from __future__ import annotations

from tests.frontend.test_client_node import _node


def test_client_sends_epoch_with_since_and_follows_a_reset() -> None:
    r = _node(
        """
        const c = new m.CdcClient({ url: "ws://127.0.0.1:1/ws/events", since: 1000, epoch: "aaaa" });
        const q1 = c._query().toString();
        const resets = [];
        c.resets.subscribe((x) => resets.push(x.reason));
        c._wsHello = false;
        c._handleFrame({ type: "hello", latest_id: 12, heartbeat_ms: 15000, epoch: "bbbb" }, "ws");
        const afterHello = { lastId: c.lastId, epoch: c.epoch, resets: resets.slice() };
        c._handleFrame({ type: "reset", reason: "epoch_changed", since: 1000, latest_id: 12, epoch: "bbbb" }, "ws");
        c._deliver({ id: 13, type: "sync_event" });   // the new journal's ids are not "duplicates"
        const q2 = c._query().toString();
        c.disconnect();
        return { q1, afterHello, resets, lastId: c.lastId, delivered: c.stats.delivered, q2 };
        """
    )
    assert r["q1"] == "since=1000&epoch=aaaa"
    assert r["afterHello"] == {"lastId": 1000, "epoch": "bbbb", "resets": []}  # the server's reset follows
    assert r["resets"] == ["epoch_changed"]
    assert r["lastId"] == 13 and r["delivered"] == 1
    assert r["q2"] == "since=13&epoch=bbbb"
