"""A store that goes back in time, WALs archived while the daemon is paused, stores without WAL
archiving (issue 9, items 2, 3 and 13). Real rocksdict/plyvel stores, the real daemon (in-process
or a subprocess), real WebSocket/HTTP subscribers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal

import pytest
import websockets

import cdc.sources.store as store
from tests.capture.conftest import wait_for
from tests.harness.net import http_request, recv_events, recv_json
from tests.harness.writers import StoreWriter

pytestmark = pytest.mark.integration


def _kc(events):
    return [e for e in events if e["type"] == "key_change"]


def _resets(events):
    return [e for e in events if e["type"] == "store_reset"]


def _live_wal(db: str) -> str:
    logs = sorted(n for n in os.listdir(db) if n.endswith(".log"))
    return os.path.join(db, logs[-1])


# --------------------------------------------------------------------------- 2a: store replaced


async def test_store_replaced_under_running_daemon_new_history_delivered(daemon_factory, tmp_path):
    """The store directory is deleted and a new store is created at the same path while the
    daemon runs (same WAL number 000004, sequence numbers from 1 again): a store_reset event,
    then every change of the new store, with journal ids continuing after the old ones."""
    db = str(tmp_path / "store")
    w = StoreWriter(db).start()
    try:
        await w.aput_many(20, batch=5, prefix="old")
        d = await daemon_factory(components=None, db=db, rescan_interval_s=0.1)
        async with d.connect("since=0&types=key_change,store_reset") as ws:
            await recv_json(ws)
            old = await recv_events(ws, 20)
            assert [e["seq"] for e in old] == list(range(1, 21))
            old_id = open(os.path.join(db, "IDENTITY")).read().strip()
            w.kill()
            shutil.rmtree(db)
            w = StoreWriter(db).start()  # a new store: file and sequence numbers start again
            new_id = open(os.path.join(db, "IDENTITY")).read().strip()
            seqs = [await w.aput(f"new{i}", str(i)) for i in range(5)]
            assert seqs == [1, 2, 3, 4, 5]
            evs = await recv_events(ws, 6)
        (reset,) = _resets(evs)
        assert evs[0] is reset  # announced before the new history
        assert reset["reason"] == "replaced"
        assert (reset["old_seq"], reset["old_db_id"], reset["new_db_id"]) == (20, old_id, new_id)
        assert reset["old_wal"] == reset["new_wal"] == 4 and reset["old_offset"] > 0 and reset["new_offset"] == 0
        assert reset["new_seq"] in (1, -1)
        assert [(e["key"], e["seq"]) for e in _kc(evs)] == [(f"new{i}", i + 1) for i in range(5)]
        ids = [e["id"] for e in old + evs]
        assert ids == sorted(set(ids)) and evs[0]["id"] > old[-1]["id"]
        r = await http_request(d.port, "GET", "/health/ready")
        assert r.status == 503 and "replaced" in r.json()["reason"]
    finally:
        w.kill()


async def test_leveldb_store_replaced_is_detected_without_identity(rig, writer_factory, tmp_path):
    """LevelDB has no IDENTITY: the same WAL number holding another file tells."""
    db = str(tmp_path / "db")
    w = writer_factory(db, kind="leveldb")
    for i in range(10):
        await w.aput(f"old{i}", "x")
    await rig.start()
    await wait_for(lambda: len(rig.key_changes()) >= 10, what="old events")
    w.kill()
    os.rename(db, str(tmp_path / "old-store"))  # (kept: its inodes cannot be reused meanwhile)
    w2 = writer_factory(db, kind="leveldb")
    for i in range(3):
        await w2.aput(f"new{i}", "y")
    await wait_for(lambda: [e["key"] for e in rig.key_changes()][-3:] == ["new0", "new1", "new2"], what="new store events")
    assert [e["seq"] for e in rig.key_changes()] == list(range(1, 11)) + [1, 2, 3]
    (reset,) = rig.of_type("store_reset")
    assert reset["reason"] == "replaced" and reset["old_seq"] == 10


async def test_store_replaced_while_daemon_down(rig, writer_factory, tmp_path):
    """Replaced between two runs of the daemon: the DB id in the checkpoint differs at start."""
    db = str(tmp_path / "db")
    w = writer_factory(db)
    for i in range(4):  # push file numbers so that the new store does not reuse them all
        await w.aput(f"old{i}", "x")
    await rig.start()
    await wait_for(lambda: len(rig.key_changes()) >= 4, what="old events")
    await rig.stop()
    w.kill()
    shutil.rmtree(db)
    w2 = writer_factory(db)
    for i in range(30):  # more changes than the old store had: seqs do not go backwards at the end
        await w2.aput(f"new{i}", "y")
    await rig.start()
    await wait_for(lambda: len(rig.key_changes()) >= 30, what="new store events")
    assert [e["seq"] for e in rig.key_changes()] == list(range(1, 31))
    (reset,) = rig.of_type("store_reset")
    assert reset["reason"] == "replaced" and reset["old_seq"] == 4 and reset["new_seq"] == 1
    assert reset["old_db_id"] != reset["new_db_id"]
    assert rig.of_type("capture_gap") == []


# --------------------------------------------------------------------------- 2b: recovered earlier


async def test_truncated_wal_recovered_earlier_delivered_live_and_across_restart(daemon_proc_factory, tmp_path):
    db = str(tmp_path / "store")
    w = StoreWriter(db).start()
    try:
        await w.aput_many(100, batch=10, prefix="a")
        p = daemon_proc_factory(db=db, rescan_interval_s=0.1)
        async with websockets.connect(p.ws_url("since=0&types=key_change,store_reset,capture_gap")) as ws:
            await recv_json(ws)
            first = await recv_events(ws, 100)
            # the writer dies, its live WAL loses its second half, the writer reopens the store
            w.kill()
            live = _live_wal(db)
            os.truncate(live, os.path.getsize(live) // 2)
            w = StoreWriter(db).start()
            recovered = await w.aseq()
            assert 0 < recovered < 100
            seqs = [await w.aput(f"b{i}", "x") for i in range(5)]
            assert seqs == list(range(recovered + 1, recovered + 6))
            evs = await recv_events(ws, 6)
        (reset,) = _resets(evs)
        assert evs[0] is reset
        assert reset["reason"] == "recovered_earlier"
        assert (reset["old_seq"], reset["new_seq"]) == (100, recovered + 1)
        assert reset["new_wal"] > reset["old_wal"]
        assert [e["seq"] for e in _kc(evs)] == seqs
        await w.aput_many(50, batch=10, prefix="c", start=0)
        top = await w.aseq()
        async with websockets.connect(p.ws_url(f"since={evs[-1]['id']}&types=key_change")) as ws:
            await recv_json(ws)
            await recv_events(ws, 50)
        # the same again while the daemon is down: found at its restart
        await asyncio.to_thread(p.terminate)
        w.kill()
        live = _live_wal(db)
        os.truncate(live, os.path.getsize(live) // 2)
        w = StoreWriter(db).start()
        recovered2 = await w.aseq()
        assert recovered < recovered2 < top
        seqs2 = [await w.aput(f"d{i}", "x") for i in range(5)]
        await asyncio.to_thread(p.restart)
        async with websockets.connect(p.ws_url(f"since={evs[-1]['id']}&types=key_change,store_reset,capture_gap")) as ws:
            await recv_json(ws)
            after = await recv_events(ws, 50 + 1 + 5)
        assert [e["seq"] for e in _kc(after)] == list(range(recovered + 6, top + 1)) + seqs2
        (reset2,) = _resets(after)
        assert (reset2["reason"], reset2["old_seq"], reset2["new_seq"]) == ("recovered_earlier", top, recovered2 + 1)
        assert [e["type"] for e in after[50:]] == ["store_reset"] + ["key_change"] * 5
        ids = [e["id"] for e in first + evs + after]
        assert ids == sorted(set(ids))
        assert "capture caught up" in p.log()
    finally:
        w.kill()


# --------------------------------------------------------------------------- no false alarms


async def test_normal_restarts_rolls_and_recycling_raise_no_store_reset(rig, writer_factory, tmp_path):
    db = str(tmp_path / "db")
    w = writer_factory(db, options={"recycle_log_file_num": 2, "wal_recovery_mode": "skip_any_corrupted_record"})
    await rig.start()
    total = 0
    for round_ in range(3):
        await w.aput_many(100, batch=10, prefix=f"r{round_}-")
        total += 100
        await w.aflush()  # WAL roll (recycled files)
        await wait_for(lambda: len(rig.key_changes()) >= total, what=f"round {round_}")
    w.kill()  # writer crash + reopen: RocksDB recovers every record
    w = writer_factory(db, options={"recycle_log_file_num": 2, "wal_recovery_mode": "skip_any_corrupted_record"})
    await w.aput_many(50, batch=10, prefix="after")
    total += 50
    await wait_for(lambda: len(rig.key_changes()) >= total, what="after writer restart")
    await rig.stop()
    await asyncio.to_thread(w.close)  # clean close, then reopen (new session, new MANIFEST)
    w = writer_factory(db)
    await w.aput_many(30, batch=10, prefix="reopened")
    total += 30
    await rig.start()
    await wait_for(lambda: len([e for e in rig.journal_events() if e["type"] == "key_change"]) >= total, what="all")
    events = rig.journal_events()
    assert [e for e in events if e["type"] in ("store_reset", "capture_gap")] == []
    assert [e["seq"] for e in events if e["type"] == "key_change"] == list(range(1, total + 1))
    assert rig.health.ok("readiness", "capture_reset") is None


# --------------------------------------------------------------------------- 3: archived while paused


async def _metric(port: int, name: str) -> float:
    text = (await http_request(port, "GET", "/metrics")).body.decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1.0


async def test_wals_created_and_archived_while_daemon_stopped_are_not_skipped(daemon_proc_factory, tmp_path):
    """SIGSTOP the daemon while it is busy reading the live WAL, make the writer roll through
    several WALs that are archived at once (WAL_ttl_seconds), SIGCONT: every change arrives, no
    gap (the daemon resumes in the middle of its read and must not jump to the newest WAL)."""
    db = str(tmp_path / "store")
    w = StoreWriter(db, options={"wal_ttl_seconds": 3600, "wal_size_limit_mb": 1024}).start()
    try:
        await w.aput_many(10, batch=10, prefix="seed")
        junk = os.path.join(db, "junk")  # a directory the daemon's recursive watch covers
        os.mkdir(junk)
        p = daemon_proc_factory(db=db)
        for round_ in range(2):
            # the writer writes fast; the daemon is stopped while it is busy reading that
            await w.aput_many(100_000, batch=1000, prefix=f"r{round_}-big-", value_size=100)
            p.proc.send_signal(signal.SIGSTOP)  # while it still reads what was just written
            try:
                # more filesystem events than an inotify queue holds (16384): notifications
                # about what follows are lost, as in a long pause under load
                for i in range(17_000):
                    open(os.path.join(junk, f"{round_}-{i}"), "wb").close()
                await w.aflush()  # the WAL being read is archived
                for k in range(3):  # three more WALs, each archived before the daemon runs again
                    await w.aput_many(500, batch=100, prefix=f"r{round_}-{k}-")
                    await w.aflush()
                await w.aput_many(10, batch=10, prefix=f"r{round_}-tail-")
            finally:
                p.proc.send_signal(signal.SIGCONT)
            assert len(os.listdir(os.path.join(db, "archive"))) >= 4 * (round_ + 1)
            final = await w.aseq()
            await wait_for_async(lambda: _metric(p.port, "cdc_capture_last_seq"), lambda v: v >= final, timeout=60)
            assert await _metric(p.port, "cdc_capture_gaps_total") == 0, p.log()[-3000:]
        final = await w.aseq()
        async with websockets.connect(p.ws_url("since=0&types=key_change,capture_gap&batch=1"), max_size=None) as ws:
            await recv_json(ws)
            got = await recv_events(ws, final, timeout=60)
        assert [e["type"] for e in got if e["type"] != "key_change"] == []
        assert [e["seq"] for e in got] == list(range(1, final + 1))
        r = await http_request(p.port, "GET", "/health/ready")
        assert "capture_gap" not in r.body.decode()
    finally:
        w.kill()


async def wait_for_async(get, ok, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        v = await get()
        if ok(v):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: last value {v}")
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- 13: no WAL archiving


async def test_store_without_wal_archiving_is_reported(daemon_factory, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="cdc.capture")
    db = str(tmp_path / "plain")
    with StoreWriter(db) as w:
        await w.aput("a", "1")
        assert store.read_wal_archiving(db) == {"WAL_ttl_seconds": 0, "WAL_size_limit_MB": 0}
        d = await daemon_factory(components=None, db=db)
        await wait_for(lambda: d.ctx.health.healthy("startup"), 10, "startup")
        r = await http_request(d.port, "GET", "/health/ready")
        assert r.status == 200
        body = r.json()
        assert body["status"] == "healthy" and "WAL_ttl_seconds" in body["warnings"]["wal_archiving"]
        m = (await http_request(d.port, "GET", "/metrics")).body.decode()
        assert "cdc_wal_archiving_enabled 0.0" in m
        warnings = [r for r in caplog.records if "does not archive WALs" in r.getMessage()]
        assert len(warnings) == 1
        await w.aflush()  # a new MANIFEST/OPTIONS-free change: still one warning
        await w.aput("b", "2")
        w.kill()
    db2 = str(tmp_path / "archiving")
    with StoreWriter(db2, options={"wal_ttl_seconds": 600}) as w:
        await w.aput("a", "1")
        d2 = await daemon_factory(components=None, db=db2)
        await wait_for(lambda: d2.ctx.health.healthy("startup"), 10, "startup")
        body = (await http_request(d2.port, "GET", "/health/ready")).json()
        assert "warnings" not in body
        m = (await http_request(d2.port, "GET", "/metrics")).body.decode()
        assert "cdc_wal_archiving_enabled 1.0" in m
        w.kill()
    assert len([r for r in caplog.records if "does not archive WALs" in r.getMessage()]) == 1


def test_demo_store_archives_wals(tmp_path):
    from cdc.cli.demo import DemoWriter

    writer = DemoWriter(str(tmp_path / "demo-db"))
    try:
        opts = store.read_wal_archiving(str(tmp_path / "demo-db"))
    finally:
        writer.stop()
    assert opts is not None and opts["WAL_ttl_seconds"] > 0 and opts["WAL_size_limit_MB"] > 0


def test_read_wal_archiving_takes_the_newest_options_file(tmp_path):
    def write(name: str, ttl: int, size: int) -> None:
        (tmp_path / name).write_text(
            f"[Version]\n  rocksdb_version=9.10.0\n[DBOptions]\n  WAL_ttl_seconds={ttl}\n  WAL_size_limit_MB={size}\n"
            "[CFOptions \"default\"]\n  WAL_ttl_seconds=99\n"
        )

    assert store.read_wal_archiving(str(tmp_path)) is None
    write("OPTIONS-000007", 0, 0)
    assert store.read_wal_archiving(str(tmp_path)) == {"WAL_ttl_seconds": 0, "WAL_size_limit_MB": 0}
    write("OPTIONS-000012", 0, 16)
    assert store.read_wal_archiving(str(tmp_path)) == {"WAL_ttl_seconds": 0, "WAL_size_limit_MB": 16}
    json.dumps(store.read_wal_archiving(str(tmp_path)))


async def test_leveldb_store_replaced_while_daemon_down(rig, writer_factory, tmp_path):
    """No IDENTITY, same WAL number, sequence numbers from 1 again: the inode of the WAL capture
    read last (kept with the position) tells that the file is another one."""
    db = str(tmp_path / "db")
    w = writer_factory(db, kind="leveldb")
    for i in range(10):
        await w.aput(f"old{i}", "x")
    await rig.start()
    await wait_for(lambda: len(rig.key_changes()) >= 10, what="old events")
    await rig.stop()
    w.kill()
    keep = os.path.join(str(tmp_path), "old-store")
    os.rename(db, keep)  # (kept: its inodes cannot be reused by the new store's files)
    w2 = writer_factory(db, kind="leveldb")
    for i in range(3):
        await w2.aput(f"new{i}", "y")
    await rig.start()
    await wait_for(lambda: len(rig.key_changes()) >= 3, what="new store events")
    assert [(e["key"], e["seq"]) for e in rig.key_changes()] == [("new0", 1), ("new1", 2), ("new2", 3)]
    (reset,) = rig.of_type("store_reset")
    assert reset["reason"] == "replaced" and reset["old_seq"] == 10 and reset["new_seq"] == 1


async def test_replaced_store_old_wal_tail_is_still_delivered(rig, writer_factory, tmp_path):
    """Changes the old store wrote just before it was swapped out, not read yet when capture
    notices the new store, are read through the open file before the new history starts."""
    db, new_db = str(tmp_path / "db"), str(tmp_path / "new")
    w2 = writer_factory(new_db)
    for i in range(3):
        await w2.aput(f"new{i}", "y")
    w2.kill()
    w = writer_factory(db)
    for i in range(10):
        await w.aput(f"old{i}", "x")
    # no watch, no inotify, no hot polling: capture looks only every rescan interval (0.2 s)
    await rig.start(watch=False, grab=False, hot_poll_s=0)
    await wait_for(lambda: len(rig.key_changes()) >= 10, what="old events")
    for i in range(10, 15):
        await w.aput(f"old{i}", "x")
    w.kill()
    os.rename(db, str(tmp_path / "old-store"))
    os.rename(new_db, db)  # the swap: microseconds, well within one rescan interval
    await wait_for(lambda: len(rig.key_changes()) >= 18, what="all events")
    assert [e["key"] for e in rig.key_changes()] == [f"old{i}" for i in range(15)] + ["new0", "new1", "new2"]
    kinds = [r.type for r in rig.records if r.type in ("key_change", "store_reset")]
    assert kinds == ["key_change"] * 15 + ["store_reset"] + ["key_change"] * 3
    (reset,) = rig.of_type("store_reset")
    assert reset["old_seq"] == 15 and reset["new_seq"] == 1
