"""Pure logic of the second-wave client options in node (no sockets): query parameters,
onKey() / onStats() filter changes, skipOrigin, stats frames kept off the event streams."""

from __future__ import annotations

from cdc.model.events import EVENT_TYPES

from .test_client_node import _node


def test_query_key_coalesce_and_streams() -> None:
    r = _node(
        """
        const c = new m.CdcClient({ url: "ws://127.0.0.1:1/ws/events", key: "a,b", coalesce: 250, skipOrigin: "me", types: "key_change" });
        const q1 = c._query({}).toString();
        const sent = [];
        c._ws = { readyState: 1, send: (s) => sent.push(JSON.parse(s)) }; c._wsHello = true;  // as if connected
        const k = []; c.onKey("c").subscribe((e) => k.push(e.id));
        c.onKey("a");  // "a,b" is one key: "a" is added
        c.onKey("c");  // already in the filter: no resubscribe
        const st = []; c.onStats().subscribe((s) => st.push(s.timestamp));
        const evs = []; c.events.subscribe((e) => evs.push(e.id));
        c._deliver({ id: 1, type: "key_change", key: "c", origin: "me" });   // mine: not emitted
        c._deliver({ id: 2, type: "key_change", key: "c", origin: "you" });
        c._deliver({ id: 3, type: "key_change", key: "a" });
        c._handleFrame({ type: "stats", timestamp: 10, cf: {} }, "ws");
        c._handleFrame({ type: "stats", timestamp: 10, cf: {} }, "poll");  // the same object again (polling)
        c._handleFrame({ type: "stats", timestamp: 11, cf: {} }, "ws");
        c._ws = null;
        const plain = new m.CdcClient({ url: "ws://127.0.0.1:1/ws/events" });
        plain.onStats();
        return { q1, sent, k, st, evs, lastId: c.lastId, skipped: c.stats.skipped, filter: c.filter,
                 latest: c.latestStats.timestamp, plainTypes: plain.filter.types };
        """
    )
    assert isinstance(r, dict)
    assert r["q1"] == "types=key_change&key=a%2Cb&coalesce=250"  # a key string is one key, never split
    assert [s["key"] for s in r["sent"]] == [["a,b", "c"], ["a,b", "c", "a"], ["a,b", "c", "a"]]
    assert r["sent"][2]["types"] == ["key_change", "stats"]
    assert r["k"] == [2] and r["evs"] == [2, 3] and r["lastId"] == 3 and r["skipped"] == 1
    assert r["st"] == [10, 11] and r["latest"] == 11
    assert r["filter"]["key"] == ["a,b", "c", "a"]
    # every built-in type, then stats
    assert r["plainTypes"] == [*EVENT_TYPES, "stats"]
