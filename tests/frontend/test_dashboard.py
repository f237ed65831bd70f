"""The dashboard at ``/`` in real headless Chromium, fed by a real RocksDB writer and POST /publish.

Saves ``test-artifacts/dashboard.png`` (a screenshot with live data) and
``test-artifacts/dashboard-explorer.png`` (the key explorer with origin flags) for humans.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness.writers import OriginWriter, build_origin_writer as build
from tests.harness.writers import StoreWriter

from .conftest import TOKEN, Daemon, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture
def store_daemon(tmp_path: Path) -> Any:
    """A RocksDB held open by a writer subprocess (WAL stays on disk) and the daemon tailing it."""
    d = Daemon(tmp_path / "d", ["--stats-interval-ms", "300"])
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


@pytest.mark.slow
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
    daemon.publish({"type": "compaction_status", "status": "completed", "cf": "orders", "job": 6, "details": {"trivial_move": True, "output_level": 3}})
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
    assert "trivial move" in page.locator('#jobs [data-job="compaction:6"]').inner_text()
    # headline numbers, the chart and the store table come from stats frames, not from counting
    wait_for(lambda: page.evaluate("window.cdc.stats()?.cf?.orders?.total?.put ?? 0") >= 8, 10, what="stats frames counted the orders")
    wait_for(lambda: page.locator('#stats-cf tr[data-cf="orders"]').count() == 1, 10, what="orders row in the store table")
    st = page.evaluate("window.cdc.stats()")
    total = sum(sum(c["total"][o] for o in ("put", "delete", "merge", "delete_range")) for c in st["cf"].values())
    wait_for(lambda: _text(page, "#h-changes").replace(",", "") == str(int(page.evaluate(
        "Object.values(window.cdc.stats().cf).reduce((a, c) => a + c.total.put + c.total.delete + c.total.merge + c.total.delete_range, 0)"))), 5, what="headline = stats totals")
    assert total >= 40
    assert _text(page, "#h-subs") == str(page.evaluate("window.cdc.stats().subscribers"))
    assert page.evaluate("window.cdc.client.filter.types").count("stats") == 0  # the user's filter is untouched
    orders_row = page.locator('#stats-cf tr[data-cf="orders"]').inner_text()
    assert "orders" in orders_row

    page.wait_for_timeout(1100)  # let the 1 s chart tick draw the latest second
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    assert not page_errors, page_errors

    # server-side filter from the filter bar: only the prefix asked for arrives afterwards
    page.evaluate(
        "() => { window.__sub = 0; window.cdc.client.control.subscribe((f) => { if (f.type === 'subscribed') window.__sub++; }); }"
    )
    assert _rows(page) > 0
    page.fill("#f-prefix", "user:2")
    page.check("#f-values")
    # the event-type checkboxes live in the subscription bar, with the filters they go with
    assert page.locator("#subscription #type-filters input[type=checkbox]").count() >= 7
    page.click("#f-apply")
    wait_for(lambda: page.evaluate("window.__sub") == 1, 5, what="subscribed frame")
    wait_for(lambda: page.locator("#others .item", has_text="prefix=user:2").count() == 1, 5, what="filter notice")
    assert _rows(page) == 0  # applying a filter clears the table
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


@pytest.mark.slow
def test_key_explorer_flags_foreign_origins(tmp_path: Path, context: Any, artifacts: Path) -> None:
    exe = build(tmp_path)
    if exe is None:
        pytest.skip("g++ and librocksdb-dev are needed for the origin writer")
    daemon = Daemon(tmp_path / "d", ["--stats-interval-ms", "300"]).start()
    try:
        page = context.new_page()
        page_errors: list[str] = []
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.goto(f"{daemon.base}/#token={TOKEN}&values=1&origin=tab-me")
        wait_for(lambda: _text(page, "#status") == "connected", 10, what="dashboard connected")
        assert page.input_value("#kx-origin") == "tab-me"
        for key in ("user:ada", "user:alan"):
            page.fill("#kx-input", key)
            page.click("#kx-add")
        wait_for(lambda: page.evaluate("window.cdc.explorer?.state") == "connected", 10, what="explorer connected")
        wait_for(lambda: page.evaluate("window.cdc.explorer.filter.key.length") == 2, 10, what="both keys in the explorer's key filter")
        wait_for(lambda: page.evaluate("(window.cdc.explorer.server?.filter?.key?.length ?? 0) + 0") >= 1, 10, what="server key filter")
        with OriginWriter(exe, daemon.db) as w:
            w.batch("tab-me", ("user:ada", '{"city":"Oslo"}'))
            w.batch("tab-other", ("user:ada", '{"city":"Lyon"}'), ("user:alan", '{"city":"Kyoto"}'))
            w.batch(None, ("user:alan", None))
            w.batch("tab-other", ("user:grace", "unwatched"))
            ada = '#kx-list [data-key="user:ada"] .chg'
            alan = '#kx-list [data-key="user:alan"] .chg'
            wait_for(lambda: page.locator(ada).count() == 2 and page.locator(alan).count() == 2, 10, what="watched changes")
        assert page.locator(ada + ".mine").count() == 1 and page.locator(ada + ".foreign").count() == 1
        assert "not yours: tab-other" in page.locator(ada).first.inner_text()  # newest first
        assert "yours" in page.locator(ada).nth(1).inner_text() and "Oslo" in page.locator(ada).nth(1).inner_text()
        assert "not yours: unknown writer" in page.locator(alan).first.inner_text()  # no origin marker
        assert "batch ×2" in page.locator(alan).nth(1).inner_text()
        assert page.locator("#kx-list", has_text="grace").count() == 0
        # the key changes reached the main table too, and the stats panel counted them
        wait_for(lambda: page.evaluate("window.cdc.stats()?.cf?.default?.total?.put ?? 0") >= 4, 10, what="stats")
        page.wait_for_timeout(400)  # one more stats tick for the chart
        page.screenshot(path=str(artifacts / "dashboard-explorer.png"), full_page=True)
        page.click('#kx-list [data-key="user:alan"] button')
        wait_for(lambda: page.evaluate("window.cdc.explorer.filter.key") == ["user:ada"], 5, what="unwatched")
        assert not page_errors, page_errors
    finally:
        daemon.stop()
