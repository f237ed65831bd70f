"""InfoLogWatcher on real rocksdict stores: compaction/flush events, progress, rotation, restart,
MANIFEST fallback — against the real journal + bus."""

from __future__ import annotations

import os

import msgspec
import pytest

from cdc.ops.infolog import InfoLogWatcher
from tests.ops.opshelpers import run_components, wait_for
from tests.harness.writers import OpsWriter

pytestmark = pytest.mark.integration


def _by_job(events, etype="compaction_status"):
    out = {}
    for e in events:
        if e["type"] == etype:
            out.setdefault(e.get("job"), []).append(e["status"])
    return out


@pytest.mark.slow
async def test_slow_compaction_started_running_completed(tmp_path, ops_config):
    db = str(tmp_path / "db")
    with OpsWriter(db, rate=6 << 20) as w:
        async with run_components(ops_config(db), str(tmp_path), [InfoLogWatcher]) as h:
            for _ in range(4):
                w.cmd("fill", count=4000, value_size=1000)
                w.cmd("flush")
            await wait_for(lambda: len([e for e in h.events("flush_status") if e["status"] == "completed"]) == 4)
            w.cmd("compact_bg")
            await wait_for(lambda: any(e["status"] == "completed" for e in h.events("compaction_status")), 30)
            w.cmd("wait_bg")
            comp = h.events("compaction_status")
            statuses = [e["status"] for e in comp]
            assert statuses[0] == "started" and statuses[-1] == "completed"
            assert statuses.count("started") == 1 and statuses.count("completed") == 1
            running = [e for e in comp if e["status"] == "running"]
            assert len(running) >= 3, statuses
            prog = [e["details"]["progress"] for e in running]
            assert prog == sorted(prog) and 0 < prog[0] < prog[-1] <= 99.9
            started, done = comp[0], comp[-1]
            assert started["details"]["input_file_count"] == 4
            assert started["details"]["input_bytes"] > 15_000_000
            assert done["details"]["output_bytes"] > 15_000_000
            assert done["details"]["records_in"] == 16000
            assert done["cf"] == "default" and done["job"] == started["job"]
            # at most 4 progress events per second
            ts = [e["timestamp"] for e in running]
            span = max(1, ts[-1] - ts[0])
            assert (len(ts) - 1) / (span / 1000) <= 4.5
            flushes = _by_job(h.events("flush_status"), "flush_status")
            assert all(v == ["started", "completed"] for v in flushes.values())


async def test_log_rotation_loses_nothing(tmp_path, ops_config):
    """A LOG rolled by size (many times, faster than the poll) is read through LOG.old.*."""
    db = str(tmp_path / "db")
    with OpsWriter(db, max_log_file_size=40_000) as w:
        async with run_components(ops_config(db), str(tmp_path), [InfoLogWatcher]) as h:
            w.cmd("fill", count=20, value_size=100)
            w.cmd("flush")  # the watcher follows LOG from here (a first start reads only LOG)
            await wait_for(lambda: len([e for e in h.events("flush_status") if e["status"] == "completed"]) >= 1)
            for _ in range(20):
                w.cmd("fill", count=20, value_size=100)
                w.cmd("flush")
            await wait_for(lambda: len([e for e in h.events("flush_status") if e["status"] == "completed"]) >= 21)
            w.cmd("put", key="after", value="x")
            w.cmd("flush")
            await wait_for(lambda: len([e for e in h.events("flush_status") if e["status"] == "completed"]) >= 22)
            olds = [n for n in os.listdir(db) if n.startswith("LOG.old.")]
            assert len(olds) >= 3
    flushes = _by_job(h.events("flush_status"), "flush_status")
    assert len(flushes) == 22
    assert all(v == ["started", "completed"] for v in flushes.values()), flushes


async def test_store_restart_and_daemon_restart(tmp_path, ops_config):
    """The store reopens (new LOG, job ids start over) and the daemon restarts from its
    checkpoint: every flush is reported exactly once, the reused job ids included."""
    db = str(tmp_path / "db")
    cfg = ops_config(db)
    with OpsWriter(db) as w:
        async with run_components(cfg, str(tmp_path), [InfoLogWatcher]) as h:
            for _ in range(3):
                w.cmd("fill", count=50)
                w.cmd("flush")
            await wait_for(lambda: len([e for e in h.events("flush_status") if e["status"] == "completed"]) == 3)
            first = h.events("flush_status")
        w.cmd("fill", count=50)
        w.cmd("flush")  # while the daemon is down
        w.close()
    with OpsWriter(db) as w:  # the store restarts: LOG -> LOG.old.*, job ids restart
        for _ in range(2):
            w.cmd("fill", count=50)
            w.cmd("flush")
        async with run_components(cfg, str(tmp_path), [InfoLogWatcher]) as h2:
            await wait_for(lambda: len([e for e in h2.events("flush_status") if e["status"] == "completed"]) >= 3)
            w.cmd("fill", count=50)
            w.cmd("flush")
            await wait_for(lambda: len([e for e in h2.events("flush_status") if e["status"] == "completed"]) >= 4)
            # the daemon's second run saw only what is new (no replay of the first 3)
            second = [e for e in h2.events("flush_status") if e["id"] > max(x["id"] for x in first)]
    statuses = [e["status"] for e in first + second]
    assert statuses.count("started") == 3 + 4 == statuses.count("completed"), statuses
    # the new session reuses small job ids: they are distinct reports, all completed
    assert [e["status"] for e in second].count("failed") == 0


def _log_text(db: str) -> str:
    out = ""
    for n in os.listdir(db):
        if n.startswith("LOG"):
            with open(os.path.join(db, n), encoding="utf-8", errors="replace") as f:
                out += f.read()
    return out


@pytest.mark.slow
async def test_compaction_missed_while_down_is_reported_from_manifest(tmp_path, ops_config, monkeypatch):
    monkeypatch.setattr(InfoLogWatcher, "manifest_grace_s", 0.3)
    db = str(tmp_path / "db")
    cfg = ops_config(db)
    with OpsWriter(db, keep_log_file_num=1) as w:
        async with run_components(cfg, str(tmp_path), [InfoLogWatcher]) as h:
            for _ in range(4):
                w.cmd("fill", count=200, value_size=200)
                w.cmd("flush")
            await wait_for(lambda: len([e for e in h.events("flush_status") if e["status"] == "completed"]) == 4)
            await wait_for(lambda: h.ctx.journal.get_checkpoint("infolog_files") is not None
                           and len(msgspec.msgpack.decode(h.ctx.journal.get_checkpoint("infolog_files"))[2]) == 4)
        w.cmd("compact")  # while the daemon is down
        w.close()
    for _ in range(2):  # two store restarts: the LOG with the compaction's lines is purged
        with OpsWriter(db, keep_log_file_num=1) as w:
            w.close()
    assert "compaction_started" not in _log_text(db)
    with OpsWriter(db, keep_log_file_num=1) as w:
        async with run_components(cfg, str(tmp_path), [InfoLogWatcher]) as h2:
            await wait_for(lambda: h2.events("compaction_status"))
            w.cmd("fill", count=10)
            w.cmd("flush")
            await wait_for(lambda: any(e["status"] == "completed" for e in h2.events("flush_status")))
            comps = h2.events("compaction_status")
    assert len(comps) == 1, comps
    d = comps[0]["details"]
    assert comps[0]["status"] == "completed" and comps[0]["cf"] == "default" and d["source"] == "manifest"
    assert d["input_file_count"] == 4 and len(d["input_files"]["L0"]) == 4
    assert d["output_level"] == 6 and d["output_file_count"] >= 1 and d["output_bytes"] > 100_000


async def test_live_compaction_not_double_reported_by_manifest(tmp_path, ops_config, monkeypatch):
    monkeypatch.setattr(InfoLogWatcher, "manifest_grace_s", 0.3)
    db = str(tmp_path / "db")
    with OpsWriter(db) as w:
        async with run_components(ops_config(db), str(tmp_path), [InfoLogWatcher]) as h:
            for _ in range(3):
                w.cmd("fill", count=200, value_size=200)
                w.cmd("flush")
            await wait_for(lambda: len([e for e in h.events("flush_status") if e["status"] == "completed"]) == 3)
            w.cmd("compact")
            await wait_for(lambda: any(e["status"] == "completed" for e in h.events("compaction_status")))
            # another MANIFEST change after the grace period: a duplicate would show up by now
            w.cmd("fill", count=10)
            w.cmd("flush")
            await wait_for(lambda: len([e for e in h.events("flush_status") if e["status"] == "completed"]) == 4)
            w.cmd("fill", count=10)
            w.cmd("flush")
            await wait_for(lambda: len([e for e in h.events("flush_status") if e["status"] == "completed"]) == 5)
    comps = h.events("compaction_status")
    assert [e["status"] for e in comps] == ["started", "completed"], comps
    assert all("source" not in e["details"] for e in comps)


async def test_leveldb_compactions_from_manifest(tmp_path, ops_config):
    """LevelDB logs no EVENT_LOG_v1: its compactions are reported from the MANIFEST."""
    import plyvel

    path = str(tmp_path / "ldb")
    db = plyvel.DB(path, create_if_missing=True, write_buffer_size=256 << 10)
    try:
        for i in range(3000):
            db.put(b"k%06d" % i, os.urandom(200))
        async with run_components(ops_config(path), str(tmp_path), [InfoLogWatcher]) as h:
            await wait_for(lambda: h.ctx.journal.get_checkpoint("infolog_files") is not None)
            from cdc.sources.store import load_manifest

            before = set(load_manifest(path, leveldb=True).files)
            for _ in range(10):  # overwrite until LevelDB compacts some file away
                for i in range(3000):
                    db.put(b"k%06d" % i, os.urandom(200))
                db.compact_range()
                now = set(load_manifest(path, leveldb=True).files)
                if before - now:
                    break
                before = now
            else:
                raise AssertionError("LevelDB never compacted")
            await wait_for(lambda: h.events("compaction_status"), 20)
    finally:
        db.close()
    comps = h.events("compaction_status")
    assert comps and all(e["status"] == "completed" and e["details"]["source"] == "manifest" for e in comps)
    assert all(e["details"]["input_file_count"] >= 1 for e in comps)


@pytest.mark.slow
async def test_daemon_restart_during_compaction_keeps_tracking_it(tmp_path, ops_config):
    db = str(tmp_path / "db")
    cfg = ops_config(db)
    with OpsWriter(db, rate=4 << 20) as w:
        for _ in range(4):
            w.cmd("fill", count=4000, value_size=1000)
            w.cmd("flush")
        async with run_components(cfg, str(tmp_path), [InfoLogWatcher]) as h:
            await wait_for(lambda: len([e for e in h.events("flush_status") if e["status"] == "completed"]) == 4)
            w.cmd("compact_bg")
            await wait_for(lambda: any(e["status"] == "running" for e in h.events("compaction_status")))
        first = h.events("compaction_status")
        async with run_components(cfg, str(tmp_path), [InfoLogWatcher]) as h2:
            await wait_for(lambda: any(e["status"] == "completed" for e in h2.events("compaction_status")), 30)
            w.cmd("wait_bg")
        second = [e for e in h2.events("compaction_status") if e["id"] > first[-1]["id"]]
    statuses = [e["status"] for e in first + second]
    assert statuses.count("started") == 1 and statuses.count("completed") == 1, statuses
    assert [e["status"] for e in second][-1] == "completed"
    assert any(e["status"] == "running" for e in second), statuses  # progress continues
    done = second[-1]
    assert done["details"]["input_file_count"] == 4 and done["details"]["input_bytes"] > 15_000_000
    assert "source" not in done["details"]


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 20 MB tmpfs (needs root with mount rights; skipped otherwise)."""
    import subprocess

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield str(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


async def test_real_disk_full_compaction_reported_failed(tmp_path, ops_config, small_tmpfs):
    db = os.path.join(small_tmpfs, "db")
    with OpsWriter(db) as w:
        async with run_components(ops_config(db), str(tmp_path), [InfoLogWatcher]) as h:
            for _ in range(4):
                w.cmd("fill", count=3500, value_size=1000)
                w.cmd("flush")
            await wait_for(lambda: len([e for e in h.events("flush_status") if e["status"] == "completed"]) == 4)
            w.cmd("compact")  # needs ~14 MB more than the disk has
            await wait_for(lambda: any(e["status"] == "failed" for e in h.events("compaction_status")))
        w.kill()
    comps = h.events("compaction_status")
    assert [e["status"] for e in comps if e["status"] != "running"] == ["started", "failed"], comps
    assert "No space left on device" in comps[-1]["details"]["reason"]


async def test_info_log_in_db_log_dir(tmp_path, ops_config):
    """With db_log_dir the LOG is <dir>/<flattened db path>_LOG (found through OPTIONS)."""
    db, logs = str(tmp_path / "my db.v1"), tmp_path / "logs"
    logs.mkdir()
    with OpsWriter(db, db_log_dir=str(logs), max_log_file_size=40_000) as w:
        assert not os.path.exists(os.path.join(db, "LOG"))
        async with run_components(ops_config(db), str(tmp_path), [InfoLogWatcher]) as h:
            w.cmd("fill", count=20, value_size=100)
            w.cmd("flush")  # the watcher follows the LOG from here (a first start reads only LOG)
            await wait_for(lambda: len([e for e in h.events("flush_status") if e["status"] == "completed"]) == 1)
            for _ in range(6):
                w.cmd("fill", count=20, value_size=100)
                w.cmd("flush")
            await wait_for(lambda: len([e for e in h.events("flush_status") if e["status"] == "completed"]) == 7)
            assert h.components[0].log_path.endswith("_my_db.v1_LOG")
    assert [n for n in os.listdir(logs) if ".old." in n]  # it rolled, and nothing was lost
