"""SnapshotWatcher on real checkpoints (rocksdict Checkpoint API, Debian's ldb checkpoint) and
real BackupEngine backups (ldb backup), against the real journal + bus."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from cdc.ops.snapshots import SnapshotWatcher
from tests.ops.opshelpers import run_components, wait_for
from tests.harness.writers import OpsWriter

pytestmark = pytest.mark.integration

LDB = shutil.which("ldb")


def snaps(h, name=None):
    return [(e["name"], e["status"]) for e in h.events("snapshot_event") if name is None or e["name"] == name]


@pytest.fixture
def closed_store(tmp_path):
    """A closed RocksDB store (table format 5: readable by Debian's ldb 7.8)."""
    db = str(tmp_path / "db")
    with OpsWriter(db) as w:
        for _ in range(3):
            w.cmd("fill", count=300, value_size=200)
            w.cmd("flush")
        w.cmd("fill", count=10, value_size=10)
        w.close()
    return db


def ldb(*args: str) -> None:
    r = subprocess.run([LDB, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "OK" in r.stdout + r.stderr, r.stdout + r.stderr


async def test_checkpoint_from_live_store_started_completed_deleted(tmp_path, ops_config):
    db, snapdir = str(tmp_path / "db"), tmp_path / "snaps"
    snapdir.mkdir()
    with OpsWriter(db) as w:
        w.cmd("fill", count=500, value_size=200)
        w.cmd("flush")
        w.cmd("fill", count=50, value_size=200)
        async with run_components(ops_config(db, snapshots_dir=str(snapdir)), str(tmp_path), [SnapshotWatcher]) as h:
            await wait_for(lambda: h.ctx.journal.get_checkpoint("snapshots") is not None)
            w.cmd("checkpoint", dir=str(snapdir / "cp-1"))
            await wait_for(lambda: ("cp-1", "completed") in snaps(h))
            done = h.events("snapshot_event")[-1]
            d = done["details"]
            assert d["kind"] == "checkpoint" and d["files"] >= 4 and d["bytes"] > 100_000
            assert d["sst_files"] >= 1 and d["sequence"] >= 550 and d["column_families"] == ["default"]
            shutil.rmtree(snapdir / "cp-1")
            await wait_for(lambda: ("cp-1", "deleted") in snaps(h))
            assert snaps(h) == [("cp-1", "started"), ("cp-1", "completed"), ("cp-1", "deleted")]


@pytest.mark.skipif(LDB is None, reason="Debian rocksdb-tools (ldb) not installed")
async def test_ldb_checkpoint_and_backups(tmp_path, ops_config, closed_store):
    snapdir = tmp_path / "snaps"
    snapdir.mkdir()
    copy = str(tmp_path / "copy")
    shutil.copytree(closed_store, copy)
    async with run_components(ops_config(closed_store, snapshots_dir=str(snapdir)), str(tmp_path), [SnapshotWatcher]) as h:
        await wait_for(lambda: h.ctx.journal.get_checkpoint("snapshots") is not None)
        ldb(f"--db={copy}", "--ignore_unknown_options", "checkpoint", f"--checkpoint_dir={snapdir / 'ldb-cp'}")
        await wait_for(lambda: ("ldb-cp", "completed") in snaps(h))
        ldb(f"--db={copy}", "--ignore_unknown_options", "backup", f"--backup_dir={snapdir / 'backups'}")
        await wait_for(lambda: ("backups/backup-1", "completed") in snaps(h))
        ldb(f"--db={copy}", "--ignore_unknown_options", "backup", f"--backup_dir={snapdir / 'backups'}")
        await wait_for(lambda: ("backups/backup-2", "completed") in snaps(h))
        b1 = next(e for e in h.events("snapshot_event") if e["name"] == "backups/backup-1" and e["status"] == "completed")
        d = b1["details"]
        assert d["kind"] == "backup" and d["backup_id"] == 1 and d["files"] >= 6 and d["bytes"] > 100_000
        assert d["sequence"] == 910
        # BackupEngine purge of backup 1: its meta file and private dir go
        os.remove(snapdir / "backups" / "meta" / "1")
        shutil.rmtree(snapdir / "backups" / "private" / "1")
        await wait_for(lambda: ("backups/backup-1", "deleted") in snaps(h))
        assert snaps(h) == [
            ("ldb-cp", "started"), ("ldb-cp", "completed"),
            ("backups/backup-1", "started"), ("backups/backup-1", "completed"),
            ("backups/backup-2", "started"), ("backups/backup-2", "completed"),
            ("backups/backup-1", "deleted"),
        ]


async def test_abandoned_and_stale_and_restart(tmp_path, ops_config, closed_store, monkeypatch):
    snapdir = tmp_path / "snaps"
    snapdir.mkdir()
    cfg = ops_config(closed_store, snapshots_dir=str(snapdir))
    monkeypatch.setattr(SnapshotWatcher, "stale_s", 1.0)
    async with run_components(cfg, str(tmp_path), [SnapshotWatcher]) as h:
        await wait_for(lambda: h.ctx.journal.get_checkpoint("snapshots") is not None)
        # a checkpoint being built in <name>.tmp, then abandoned (tmp dir removed)
        tmp = snapdir / "nightly.tmp"
        tmp.mkdir()
        (tmp / "000009.sst").write_bytes(b"x" * 100)
        await wait_for(lambda: ("nightly", "started") in snaps(h))
        shutil.rmtree(tmp)
        await wait_for(lambda: ("nightly", "failed") in snaps(h))
        ev = h.events("snapshot_event")[-1]
        assert "abandoned" in ev["details"]["reason"]
        # a dir that never completes -> failed as stale after stale_s
        (snapdir / "stuck").mkdir()
        (snapdir / "stuck" / "CURRENT").write_bytes(b"MANIFEST-000099\n")
        await wait_for(lambda: ("stuck", "failed") in snaps(h))
        assert "stale" in h.events("snapshot_event")[-1]["details"]["reason"]
        # a complete checkpoint (copied from a real one)
        shutil.copytree(closed_store, snapdir / "keep", ignore=shutil.ignore_patterns("LOCK", "LOG*", "*.log"))
        await wait_for(lambda: ("keep", "completed") in snaps(h))
        first = snaps(h)
    # the snapshots dir vanishing for a while (unmounted) reports nothing
    os.rename(snapdir, tmp_path / "snaps-away")
    async with run_components(cfg, str(tmp_path), [SnapshotWatcher]) as h1:
        await wait_for(lambda: h1.components[0].scans >= 3)
    os.rename(tmp_path / "snaps-away", snapdir)
    assert snaps(h1) == []
    # while the daemon is down: "keep" removed, "new" created complete
    shutil.rmtree(snapdir / "keep")
    shutil.copytree(closed_store, snapdir / "new", ignore=shutil.ignore_patterns("LOCK", "LOG*", "*.log"))
    async with run_components(cfg, str(tmp_path), [SnapshotWatcher]) as h2:
        await wait_for(lambda: ("keep", "deleted") in snaps(h2) and ("new", "completed") in snaps(h2))
        await wait_for(lambda: h2.ctx.bus.pending == 0)
    second = snaps(h2)
    assert first == [("nightly", "started"), ("nightly", "failed"), ("stuck", "started"), ("stuck", "failed"),
                     ("keep", "started"), ("keep", "completed")]
    # exactly what changed while down; "stuck" (still failed) is not re-reported
    assert sorted(second) == sorted([("keep", "deleted"), ("new", "started"), ("new", "completed")])


async def test_no_snapshots_dir_is_a_noop(tmp_path, ops_config, closed_store):
    async with run_components(ops_config(closed_store), str(tmp_path), [SnapshotWatcher]) as h:
        pass
    assert h.events() == []


@pytest.mark.skipif(LDB is None, reason="Debian rocksdb-tools (ldb) not installed")
async def test_snapshots_dir_is_the_backup_dir(tmp_path, ops_config, closed_store):
    bk = tmp_path / "bk"
    copy = str(tmp_path / "copy")
    shutil.copytree(closed_store, copy)
    ldb(f"--db={copy}", "--ignore_unknown_options", "backup", f"--backup_dir={bk}")
    async with run_components(ops_config(closed_store, snapshots_dir=str(bk)), str(tmp_path), [SnapshotWatcher]) as h:
        await wait_for(lambda: ("backup-1", "completed") in snaps(h))  # found at the first start
        ldb(f"--db={copy}", "--ignore_unknown_options", "backup", f"--backup_dir={bk}")
        await wait_for(lambda: ("backup-2", "completed") in snaps(h))
    assert snaps(h) == [("backup-1", "completed"), ("backup-2", "started"), ("backup-2", "completed")]
    first = h.events("snapshot_event")[0]
    assert first["details"]["discovered"] is True and first["details"]["backup_id"] == 1
