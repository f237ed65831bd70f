"""Health probes, metrics and a full journal, on a real daemon."""

from __future__ import annotations


from cdc.model.events import KeyChange
from cdc.delivery.health import Health
from tests.harness.net import http_request, publish, recv_events, recv_json
from tests.harness.waiting import wait_for


def test_health_transitions_emit_once():
    out = []
    h = Health(None)
    h.set("startup", "server", False, "not yet")  # initial state, before emit is attached
    h.emit = out.extend
    h.set("readiness", "a", True)
    assert out == [] and h.healthy("readiness") and not h.healthy("startup")
    h.set("readiness", "b", False, "b is broken")
    h.set("readiness", "b", False, "b is broken")
    assert [(e.probe, e.status, e.reason) for e in out] == [("readiness", "unhealthy", "b is broken")]
    assert h.body("readiness") == {"status": "unhealthy", "reason": "b is broken", "failing": {"b": "b is broken"}}
    h.set("readiness", "b", True)
    assert out[-1].status == "healthy" and len(out) == 2
    h.beat("capture")
    h.check_beats(now=10**9)
    assert not h.healthy("liveness") and "capture" in h.status("liveness")[1]


async def test_journal_full_is_readiness_failure_not_crash(daemon_factory):
    d = await daemon_factory(journal_map_size=1 << 20, retention_count=0, retention_bytes=0, retention_age_s=0)
    async with d.connect("types=key_change") as ws, d.connect("types=health_change") as hws:
        await recv_json(ws), await recv_json(hws)
        big = "x" * 4000
        for i in range(400):
            await d.ctx.bus.emit([KeyChange(timestamp=1, operation="put", key=f"k{i}", seq=i, value=big)])
            if not d.ctx.bus.journal_ok:
                break
        await wait_for(lambda: not d.ctx.bus.journal_ok, 10, "journal full")
        r = await http_request(d.port, "GET", "/health/ready")
        assert r.status == 503 and "journal" in r.json()["reason"]
        assert (await http_request(d.port, "GET", "/health/live")).status == 200
        r = await publish(d.port, d.admin, {"type": "sync_event", "status": "started"})
        assert r.status == 503
        assert "cdc_journal_full 1.0" in (await http_request(d.port, "GET", "/metrics")).body.decode()
        committed = d.ctx.journal.latest_id
        # Lowering retention lets the writer free space and commit what it held: nothing lost.
        d.ctx.journal.retention_count = 20
        await wait_for(lambda: d.ctx.bus.journal_ok and d.ctx.bus.pending == 0, 15, "journal recovered")
        assert (await http_request(d.port, "GET", "/health/ready")).status == 200
        keys = [e["key"] for e in await recv_events(ws, i + 1, timeout=15)]
        assert keys == [f"k{j}" for j in range(i + 1)]
        health = await recv_events(hws, 2)
        assert [(e["probe"], e["status"]) for e in health] == [("readiness", "unhealthy"), ("readiness", "healthy")]
        assert d.ctx.journal.latest_id > committed


async def test_metrics_count_deliveries_and_subscribers(daemon):
    async with daemon.connect() as ws:
        await recv_json(ws)
        await daemon.emit([KeyChange(timestamp=1, operation="put", key="a", seq=1)])
        await recv_events(ws, 1)
        text = (await http_request(daemon.port, "GET", "/metrics")).body.decode()
        assert "cdc_subscribers 1.0" in text
        assert 'cdc_events_captured_total{type="key_change"} 1.0' in text
        line = [ln for ln in text.splitlines() if ln.startswith("cdc_events_delivered_total")][0]
        assert float(line.split()[1]) >= 1
