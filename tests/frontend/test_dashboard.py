"""The dashboard at ``/`` in real headless Chromium, fed by a real RocksDB writer and POST /publish.

Saves ``test-artifacts/dashboard.png`` (a screenshot with live data) for humans to look at.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.writer import StoreWriter

from .conftest import TOKEN, Daemon, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture
def store_daemon(tmp_path: Path) -> Any:
    """A RocksDB held open by a writer subprocess (WAL stays on disk) and the daemon tailing it."""
    d = Daemon(tmp_path / "d")
    writer = StoreWriter(d.db, cfs=["orders"]).start()
    try:
        d.start()
        yield d, writer
    finally:
        d.stop()
        writer.kill()


def _text(page: Any, selector: str) -> str:
    return str(page.locator(selector).first.inner_text())


def _rows(page: Any) -> int:
    return int(page.locator("#keys tr").count())


def test_dashboard_shows_live_data(store_daemon: Any, context: Any, artifacts: Path) -> None:
    daemon, writer = store_daemon
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.goto(f"{daemon.base}/#token={TOKEN}")
    wait_for(lambda: _text(page, "#status") == "connected", 10, what="dashboard connected")
    assert TOKEN not in page.url, "the token must be removed from the address bar"
    assert not page.locator("#login.show").count()

    daemon.publish({"type": "snapshot_event", "status": "completed", "name": "nightly-2026-11-24", "details": {"files": 42, "bytes": 73400320}})
    daemon.publish({"type": "snapshot_event", "status": "started", "name": "hourly-18", "details": {"kind": "checkpoint"}})
    daemon.publish({"type": "compaction_status", "status": "started", "cf": "default", "job": 7, "details": {"input_bytes": 268435456, "output_level": 1, "compaction_reason": "LevelL0FilesNum"}})
    daemon.publish({"type": "compaction_status", "status": "completed", "cf": "orders", "job": 5, "details": {"input_bytes": 50331648, "output_bytes": 41943040, "output_level": 2, "duration_ms": 812.4}})
    for i in range(8):  # a few seconds of activity, so the chart has several bars
        writer.batch(
            [{"op": "put", "key": f"user:{1000 + i * 3 + j}", "value": f'{{"name":"u{i}{j}","visits":{i * j}}}'} for j in range(3 + i % 4)]
        )
        writer.put(f"order:{500 + i}", f"total={i * 19.5:.2f}", cf="orders")
        if i % 3 == 2:
            writer.delete(f"user:{1000 + i}")
        daemon.publish({"type": "compaction_status", "status": "running", "cf": "default", "job": 7, "details": {"progress": 12.5 * (i + 1), "bytes_written": 33554432 * (i + 1), "input_bytes": 268435456, "output_level": 1}})
        daemon.publish({"type": "sync_event", "status": "conflict" if i == 5 else "completed", "details": {"peer": f"replica-{i % 3}", "keys": 10 + i}})
        time.sleep(0.3)
    writer.delete_range("user:1000", "user:1003")

    wait_for(lambda: _rows(page) >= 30, 15, what=f"key change rows (have {_rows(page)})")
    wait_for(lambda: page.locator('#jobs [data-job="compaction:7"]').count() == 1, 10, what="compaction job 7")
    wait_for(lambda: page.locator('#snapshots [data-name="hourly-18"]').count() == 1, 10, what="snapshot row")
    wait_for(lambda: page.locator("#syncs .item").count() >= 8, 10, what="sync rows")
    wait_for(lambda: "healthy" in _text(page, '#probes [data-probe="readiness"]'), 10, what="readiness probe")

    # key rows carry what the WAL said (the delete_range was the last write)
    wait_for(lambda: "delete_range" in page.locator("#keys tr").first.inner_text(), 10, what="delete_range row on top")
    first = page.locator("#keys tr").first.inner_text()
    assert "delete_range" in first and "user:1000" in first
    assert page.locator("#keys tr", has_text="orders").count() >= 8
    # progress bar of the running compaction reflects details.progress
    width = page.locator('#jobs [data-job="compaction:7"] .bar > div').evaluate("e => e.style.width")
    assert width == "100%"
    counts = page.evaluate("window.cdc.counts")
    assert counts["key_change"] >= 40 and counts["sync_event"] == 8
    assert int(_text(page, "#last-id")) == page.evaluate("window.cdc.client.lastId")

    page.wait_for_timeout(1100)  # let the 1 s chart tick draw the latest second
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    assert not page_errors, page_errors

    # server-side filter from the filter bar: only the prefix asked for arrives afterwards
    page.evaluate(
        "() => { window.__sub = 0; window.cdc.client.control.subscribe((f) => { if (f.type === 'subscribed') window.__sub++; }); }"
    )
    page.fill("#f-prefix", "user:2")
    page.check("#f-values")
    page.click("#f-apply")
    wait_for(lambda: page.evaluate("window.__sub") == 1, 5, what="subscribed frame")
    wait_for(lambda: page.locator("#others .item", has_text="prefix=user:2").count() == 1, 5, what="filter notice")
    page.click("#f-clear")
    assert _rows(page) == 0
    writer.put("order:999", "x", cf="orders")
    writer.put("user:1999", "not under the prefix")
    writer.put("user:2001", "value-of-2001")
    wait_for(lambda: _rows(page) >= 1, 10, what="filtered row")
    texts = page.locator("#keys tr").all_inner_texts()
    assert len(texts) == 1 and "user:2001" in texts[0], texts  # in id order: earlier writes would show first
    assert "value-of-2001" in texts[0], texts  # values asked for at runtime (subscribe op)


def test_dashboard_login_field_and_bad_token(daemon: Daemon, context: Any) -> None:
    page = context.new_page()
    page.goto(daemon.base + "/")
    page.wait_for_selector("#login.show")
    assert _text(page, "#status") == "disconnected"
    page.fill("#token-input", "wrong-token")
    page.click("#login button[type=submit]")
    wait_for(lambda: _text(page, "#status") == "unauthorized", 10, what="unauthorized")
    page.wait_for_selector("#login.show")
    assert "unauthorized" in _text(page, "#login-err")
    page.fill("#token-input", TOKEN)
    page.click("#login button[type=submit]")
    wait_for(lambda: _text(page, "#status") == "connected", 10, what="connected")
    daemon.publish({"type": "sync_event", "status": "started", "details": {"peer": "a"}})
    wait_for(lambda: page.locator("#syncs .item").count() == 1, 10, what="sync row")
    # a reload keeps the token for this tab only (sessionStorage), never in the URL
    page.reload()
    wait_for(lambda: _text(page, "#status") == "connected", 10, what="connected after reload")
    assert TOKEN not in page.url
