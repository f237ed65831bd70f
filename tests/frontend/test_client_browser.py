"""CdcClient (/client.js) in real headless Chromium against the real daemon subprocess.

Covers CONTRACT.md section 7: events arrive once and in order; kill -9 + restart -> reconnecting
then connected with nothing lost or duplicated; a dead (SIGSTOPped) server is detected by the
heartbeat; WebSocket refused -> long-poll "polling" and back to "connected"; wrong token ->
"unauthorized" with no retry storm; filters, runtime subscribe, batch=1, RxJS interop.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from .conftest import RXJS_BUNDLE, TIMEOUT_FACTOR, TOKEN, Daemon, Harness, refused_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]

FAST = {"backoff": {"baseMs": 100, "maxMs": 800}, "connectTimeoutMs": 3000}


def _sync(n: int, **extra: Any) -> dict[str, Any]:
    return {"type": "sync_event", "status": "completed", "details": {"n": n, **extra}}


def _assert_exactly(events: list[dict[str, Any]], ns: list[int]) -> None:
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), f"ids not strictly increasing: {ids}"
    got = [e["details"]["n"] for e in events if e["type"] == "sync_event"]
    assert got == ns, f"expected {ns}, got {got}"


def test_events_arrive_in_order_once(daemon: Daemon, harness: Harness) -> None:
    harness.start_client(**FAST)
    harness.wait_status("connected")
    published = [daemon.publish(_sync(i)) for i in range(25)]
    events = harness.wait_events(25)
    _assert_exactly(events, list(range(25)))
    assert [e["id"] for e in events] == published
    assert all(isinstance(e["details"], dict) for e in events)
    assert all(isinstance(e["timestamp"], int) for e in events)
    assert harness.page.evaluate("window.client.lastId") == published[-1]
    hello = [f for f in harness.rec("control") if f["type"] == "hello"]
    assert hello and isinstance(hello[0]["heartbeat_ms"], int)
    # typed streams see only their type
    n_sync = harness.page.evaluate(
        """() => new Promise((resolve) => {
            let n = 0;
            const sub = window.client.onSyncEvents().subscribe(() => n++);
            const other = window.client.onKeyChanges().subscribe(() => { throw new Error("wrong stream"); });
            setTimeout(() => { sub.unsubscribe(); other.unsubscribe(); resolve(n); }, 50);
        })"""
    )
    assert n_sync == 0  # hot streams: nothing replayed to late subscribers


def test_rxjs_from_interop(daemon: Daemon, harness: Harness) -> None:
    if not RXJS_BUNDLE.exists():
        pytest.skip("rxjs is not installed in examples/angular/node_modules (run npm ci there)")
    harness.page.add_script_tag(content=RXJS_BUNDLE.read_text())
    harness.start_client(**FAST)
    harness.wait_status("connected")
    harness.page.evaluate(
        """() => {
            window.rxGot = [];
            window.rxStatus = [];
            rxjs.from(window.client.onSyncEvents()).pipe(rxjs.map((e) => e.details.n)).subscribe((n) => window.rxGot.push(n));
            rxjs.from(window.client.status).subscribe((s) => window.rxStatus.push(s));
        }"""
    )
    for i in range(3):
        daemon.publish(_sync(i))
    wait_for(lambda: harness.page.evaluate("window.rxGot.length") >= 3, what="rxjs events")
    assert harness.page.evaluate("window.rxGot") == [0, 1, 2]
    assert harness.page.evaluate("window.rxStatus") == ["connected"]  # status replays its current value


def test_kill9_and_restart_resumes_without_loss_or_duplicates(daemon: Daemon, harness: Harness) -> None:
    harness.start_client(pollAfterFailures=100, **FAST)
    harness.wait_status("connected")
    for i in range(10):
        daemon.publish(_sync(i))
    harness.wait_events(10)

    daemon.kill9()
    harness.wait_status("reconnecting", timeout_s=10)
    daemon.start()  # same port, same state dir
    for i in range(10, 20):  # some may land before the client is back: it resumes with since
        daemon.publish(_sync(i))
    harness.wait_status("connected", timeout_s=15)
    for i in range(20, 25):
        daemon.publish(_sync(i))
    events = harness.wait_events(25, timeout_s=15)
    time.sleep(0.2)  # a duplicate would arrive right behind; then check nothing extra came
    events = harness.rec("events")
    _assert_exactly(events, list(range(25)))
    statuses = harness.rec("statuses")
    assert statuses[:2] == ["disconnected", "connected"]
    i = statuses.index("reconnecting")
    assert "connected" in statuses[i:], statuses
    assert "polling" not in statuses  # pollAfterFailures=100: this test is about WebSocket resume


def test_heartbeat_detects_a_dead_connection(serve_daemon_factory: Any, harness_factory: Any) -> None:
    daemon = serve_daemon_factory("--heartbeat-ms", "300")
    h = harness_factory(daemon)
    h.start_client(**FAST, polling=False, stableMs=400)
    h.wait_status("connected")
    daemon.publish(_sync(0))
    h.wait_events(1)
    daemon.pause()  # TCP stays up, nothing is sent any more
    try:
        t0 = time.monotonic()
        h.wait_status("reconnecting", timeout_s=5)
        detected_s = time.monotonic() - t0
        assert detected_s < (2 * 0.3 + 0.6) * TIMEOUT_FACTOR, f"dead connection detected after {detected_s:.2f}s"
        errors = h.rec("errors")
        assert any("heartbeat" in (e.get("reason") or "") for e in errors), errors
    finally:
        daemon.resume()
    h.wait_status("connected", timeout_s=15)
    assert h.page.evaluate("window.client._attempt") >= 1  # backed off while the server was frozen
    # ...and the backoff resets once the new connection has been stable for stableMs
    wait_for(lambda: h.page.evaluate("window.client._attempt") == 0, 5, what="backoff reset after a stable connection")
    daemon.publish(_sync(1))
    _assert_exactly(h.wait_events(2), [0, 1])


def test_websocket_blocked_falls_back_to_polling_then_back(daemon: Daemon, harness: Harness) -> None:
    blocked = f"ws://127.0.0.1:{refused_port()}/ws/events"
    harness.start_client(url=blocked, pollUrl=daemon.base + "/events", pollTimeoutS=2, **FAST)
    harness.wait_status("polling", timeout_s=15)
    assert harness.page.evaluate("window.client.stats.wsAttempts") >= 3
    for i in range(15):
        daemon.publish(_sync(i))
    harness.wait_events(15, timeout_s=15)
    # WebSocket keeps being retried in the background; once it works the client switches back.
    attempts = harness.page.evaluate("window.client.stats.wsAttempts")
    wait_for(lambda: harness.page.evaluate("window.client.stats.wsAttempts") > attempts, 10, what="background WS retry")
    harness.page.evaluate(f"window.client.url = {daemon.ws_endpoint!r}")
    harness.wait_status("connected", timeout_s=15)
    for i in range(15, 20):
        daemon.publish(_sync(i))
    harness.wait_events(20, timeout_s=10)
    time.sleep(0.2)
    _assert_exactly(harness.rec("events"), list(range(20)))
    statuses = harness.rec("statuses")
    assert statuses.index("polling") < len(statuses) - 1 - statuses[::-1].index("connected")


def test_wrong_token_is_unauthorized_without_retry_storm(daemon: Daemon, harness: Harness, proxy_factory: Any) -> None:
    proxy = proxy_factory(daemon.port)  # counts the TCP connections the server is offered
    harness.start_client(token="not-a-valid-token", url=f"ws://127.0.0.1:{proxy.port}/ws/events", **FAST)
    harness.wait_status("unauthorized", timeout_s=10)
    errors = harness.rec("errors")
    assert any(e.get("code") == 4401 for e in errors), errors
    assert "not-a-valid-token" not in repr(errors)
    # With a 100 ms backoff a retrying client would make ~10+ attempts in this window.
    time.sleep(1.5)
    assert harness.page.evaluate("window.client.stats.wsAttempts") == 1
    assert harness.page.evaluate("window.client.stats.polls") == 0
    assert harness.status() == "unauthorized"
    assert proxy.connections == 1, f"server was offered {proxy.connections} connections"
    assert "not-a-valid-token" not in daemon.metrics()
    assert "not-a-valid-token" not in daemon.log()
    # a good token afterwards works
    harness.page.evaluate("(t) => window.client.setToken(t)", TOKEN)
    harness.wait_status("connected")
    assert proxy.connections == 2


def test_filters_batch_and_runtime_subscribe(daemon: Daemon, harness: Harness) -> None:
    harness.start_client(types=["snapshot_event"], batch=True, **FAST)
    harness.wait_status("connected")
    daemon.publish(_sync(0))
    daemon.publish({"type": "snapshot_event", "status": "completed", "name": "snap-1", "details": {}})
    events = harness.wait_events(1)
    assert [e["type"] for e in events] == ["snapshot_event"]
    harness.page.evaluate("window.client.subscribe({ types: ['sync_event'] })")
    wait_for(lambda: any(f["type"] == "subscribed" for f in harness.rec("control")), what="subscribed frame")
    daemon.publish({"type": "snapshot_event", "status": "deleted", "name": "snap-1", "details": {}})
    daemon.publish(_sync(1))
    events = harness.wait_events(2)
    assert [e["type"] for e in events] == ["snapshot_event", "sync_event"]
    assert events[1]["details"]["n"] == 1


def test_since_zero_replays_history(daemon: Daemon, harness: Harness) -> None:
    for i in range(5):
        daemon.publish(_sync(i))
    harness.start_client(since=0, types="sync_event", **FAST)
    _assert_exactly(harness.wait_events(5), list(range(5)))


def test_polling_with_wrong_token_is_unauthorized(daemon: Daemon, harness: Harness) -> None:
    blocked = f"ws://127.0.0.1:{refused_port()}/ws/events"
    harness.start_client(token="bad-token", url=blocked, pollUrl=daemon.base + "/events", pollTimeoutS=2, **FAST)
    harness.wait_status("unauthorized", timeout_s=15)
    polls = harness.page.evaluate("window.client.stats.polls")
    time.sleep(1.0)
    assert harness.page.evaluate("window.client.stats.polls") == polls == 1


def test_reset_when_the_cursor_expired(serve_daemon_factory: Any, harness_factory: Any) -> None:
    daemon = serve_daemon_factory("--retention-count", "5")
    ids = [daemon.publish(_sync(i)) for i in range(20)]
    h = harness_factory(daemon)
    h.start_client(since=1, types="sync_event", **FAST)
    wait_for(lambda: h.rec("resets"), 10, what="reset frame")
    reset = h.rec("resets")[0]
    assert reset["reason"] == "cursor_expired" and reset["oldest_id"] > 2, reset
    h.wait_status("connected")
    new_id = daemon.publish(_sync(99))
    wait_for(lambda: any(e["id"] == new_id for e in h.rec("events")), 10, what="live event after reset")
    got = [e["id"] for e in h.rec("events")]
    assert got == sorted(set(got)) and all(i > ids[0] for i in got)


def test_batch_frames_values_and_byte_exact_keys(daemon: Daemon, harness: Harness) -> None:
    from tests.harness.writers import StoreWriter

    harness.start_client(batch=True, values=True, types=["key_change"], spyFrames=True, **FAST)
    harness.wait_status("connected")
    writer = StoreWriter(daemon.db).start()
    try:
        writer.put_many(count=400, batch=100, prefix="k", start=0, value_size=16)
        writer.put(b"bin\xff\x00key", b"\x00\x01\xfe")
        writer.put("ключ", "значение")
        events = harness.wait_events(402, timeout_s=20)
    finally:
        writer.kill()
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert len({e["id"] for e in events}) == len(events)
    assert [e["key"] for e in events[:400]] == ["k%010d" % i for i in range(400)]
    assert all(isinstance(e.get("value"), str) for e in events)
    assert all(e["cf"] == "default" for e in events)  # omitted on the wire, filled in by the client
    binary = events[400]
    assert binary["key_encoding"] == "base64" and binary["value_encoding"] == "base64"
    import base64

    assert base64.b64decode(binary["key"]) == b"bin\xff\x00key"
    assert base64.b64decode(binary["value"]) == b"\x00\x01\xfe"
    assert events[401]["key"] == "ключ" and events[401]["value"] == "значение"
    frames = harness.page.evaluate("window.frames_")
    assert frames["arrays"] >= 1, frames  # the server batched, the client unpacked the arrays


def test_set_token_refreshes_on_the_open_connection(daemon: Daemon, harness: Harness) -> None:
    from cdc.delivery.auth import mint_token

    from .conftest import SECRET

    harness.start_client(**FAST)
    harness.wait_status("connected")
    fresh = mint_token(SECRET, subject="browser", ttl=600)
    harness.page.evaluate("(t) => window.client.setToken(t)", fresh)
    wait_for(lambda: any(f["type"] == "authenticated" for f in harness.rec("control")), 5, what="authenticated frame")
    assert harness.status() == "connected"
    assert harness.page.evaluate("window.client.stats.wsAttempts") == 1  # no reconnect needed
    daemon.publish(_sync(1))
    _assert_exactly(harness.wait_events(1), [1])
    # a revoked / invalid token on the open connection: the server closes 4401, the client stops
    harness.page.evaluate("(t) => window.client.setToken(t)", "garbage")
    harness.wait_status("unauthorized")
    assert harness.page.evaluate("window.client.stats.wsAttempts") == 1


def _subscribers(daemon: Daemon) -> int:
    for line in daemon.metrics().splitlines():
        if line.startswith("cdc_subscribers "):
            return int(float(line.split()[1]))
    raise AssertionError("no cdc_subscribers metric")


@pytest.mark.slow
def test_slow_consumer_4429_reconnects_and_loses_nothing(serve_daemon_factory: Any, harness_factory: Any) -> None:
    from tests.harness.writers import StoreWriter

    daemon = serve_daemon_factory("--subscriber-queue", "1")
    h = harness_factory(daemon)
    h.start_client(batch=False, values=True, types="key_change", pollAfterFailures=100, **FAST)
    h.wait_status("connected")
    wait_for(lambda: _subscribers(daemon) == 1, 5, what="one subscriber")
    # Freeze the page's main thread with a synchronous long-poll that only a `test.unfreeze`
    # event ends: Chromium stops reading the socket, the server's buffer fills, its 1-event
    # queue overflows and it closes the subscriber with 4429.
    h.page.evaluate(
        """(token) => setTimeout(() => {
            const x = new XMLHttpRequest();
            x.open("GET", "/events?types=test.unfreeze&timeout=30", false);
            x.setRequestHeader("Authorization", "Bearer " + token);
            x.send();
        }, 0)""",
        TOKEN,
    )
    writer = StoreWriter(daemon.db).start()
    try:
        round_ = 0
        deadline = time.monotonic() + 30
        while _subscribers(daemon) > 0:  # write until the server sheds the frozen subscriber
            assert time.monotonic() < deadline, "the server never closed the slow subscriber"
            writer.put_many(count=1000, batch=1000, prefix=f"r{round_}:", start=0, value_size=4000)
            round_ += 1
    finally:
        daemon.publish({"type": "test.unfreeze"})
        writer.kill()
    n = 1000 * round_
    h.wait_events(n, timeout_s=60)
    time.sleep(0.2)
    events = h.rec("events")
    assert len(events) == n
    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids))
    assert [e["key"] for e in events] == [f"r{r}:{i:010d}" for r in range(round_) for i in range(1000)]
    assert any(e.get("code") == 4429 for e in h.rec("errors")), h.rec("errors")
    assert h.page.evaluate("window.client.stats.wsAttempts") >= 2
    assert h.status() == "connected"


def test_get_token_refreshes_before_expiry(daemon: Daemon, harness: Harness) -> None:
    from cdc.delivery.auth import mint_token

    from .conftest import SECRET

    short = mint_token(SECRET, subject="short", ttl=2)
    long_ = mint_token(SECRET, subject="long", ttl=600)
    harness.start_client(token=None, **FAST)
    harness.page.evaluate(
        """([short, long]) => {
            let calls = 0;
            window.client._getToken = async () => (calls++ === 0 ? short : long);
            window.client.connect();
        }""",
        [short, long_],
    )
    harness.wait_status("connected")
    hello = next(f for f in harness.rec("control") if f["type"] == "hello")
    assert "exp" in hello
    # before the short token's exp the client fetched a new one and sent {"op":"auth"}
    wait_for(lambda: any(f["type"] == "authenticated" for f in harness.rec("control")), 5, what="token refreshed")
    time.sleep(max(0.0, hello["exp"] - time.time()) + 0.5)  # past the first token's expiry
    assert harness.status() == "connected"
    assert harness.page.evaluate("window.client.stats.wsAttempts") == 1
    daemon.publish(_sync(7))
    _assert_exactly(harness.wait_events(1), [7])
