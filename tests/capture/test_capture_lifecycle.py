"""WAL lifecycle: rotation, deletion, archive, daemon crash/restart, gaps, directory moves."""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.capture.conftest import wait_for

pytestmark = pytest.mark.integration


def _seqs(events):
    return [e["seq"] for e in events]


async def test_rotation_while_tailing_old_wal_deleted(rig, writer_factory, tmp_path):
    w = writer_factory(cfs=["a"])
    await rig.start()
    total = 0
    for round_ in range(4):
        await w.aput_many(500, batch=50, prefix=f"r{round_}-")
        await w.aput(f"a{round_}", "x", cf="a")
        total += 501
        await w.aflush()
        await w.aflush("a")  # both CFs flushed: the old WAL becomes obsolete and is deleted
    logs = sorted(n for n in os.listdir(tmp_path / "db") if n.endswith(".log"))
    assert len(logs) <= 2, logs  # rotation really happened
    await wait_for(lambda: len(rig.key_changes()) >= total, what="all events")
    evs = rig.key_changes()
    assert len(evs) == total
    assert _seqs(evs) == list(range(1, total + 1))
    assert rig.of_type("capture_gap") == []


async def test_tiny_write_buffer_many_rotations_never_silent(rig, writer_factory):
    """WALs that live ~1 ms (64 KiB memtables at full speed) may be deleted before capture can
    open them; whatever is lost must be reported: events + gap ranges cover every seq once."""
    w = writer_factory(options={"write_buffer_size": 64 << 10})
    await rig.start()
    # first start captures from the WALs present when capture looks: wait until it has looked
    await wait_for(lambda: rig.health.ok("startup", "capture"), what="startup")
    n = 20_000
    await w.acmd("put_many", count=n, batch=100, prefix="t", value_size=64)

    def covered():
        seqs = _seqs(rig.key_changes())
        for g in rig.of_type("capture_gap"):
            seqs.extend(range(g["from_seq"], g["to_seq"] + 1))
        return sorted(seqs)

    try:
        await wait_for(lambda: len(covered()) >= n, timeout=30, what="all events or gaps")
    except AssertionError:
        c = rig.capture
        got = covered()
        missing = sorted(set(range(1, n + 1)) - set(got))
        raise AssertionError(
            f"missing {len(missing)} seqs {missing[:3]}..{missing[-3:]}; last_seq {c.last_seq}; cur "
            f"{c.cur and c.cur.number} pos {c.pos} state {c.reader and c.reader.state}; tails "
            f"{[(t.number, t.gone, t.has_record, t.size()) for t in c.tails.values()]}; health {rig.health.state}"
        ) from None
    assert covered() == list(range(1, n + 1))
    kc = _seqs(rig.key_changes())
    assert kc == sorted(kc)
    if rig.of_type("capture_gap"):
        assert rig.health.ok("readiness", "capture_gap") is False
    print(f"lost {n - len(kc)} of {n}")


@pytest.mark.parametrize("grab", [True, False])
async def test_inotify_grabber_opens_short_lived_wals(rig, writer_factory, grab):
    """Notifications off, rescans every 0.2 s: WALs that live a few ms are only read when the
    grabber thread opens them at creation; without it their records are a reported gap."""
    w = writer_factory()
    await rig.start(watch=False, grab=grab, hot_poll_s=0)
    total = 0
    for round_ in range(5):
        await w.aput_many(200, batch=20, prefix=f"g{round_}-")
        await w.aflush()  # the WAL is deleted right away
        total += 200
    gap_seqs = lambda: sum(g["to_seq"] - g["from_seq"] + 1 for g in rig.of_type("capture_gap"))  # noqa: E731
    await w.aput("last", "1")
    total += 1
    await wait_for(lambda: len(rig.key_changes()) + gap_seqs() >= total, what="all events or gaps")
    if grab:
        assert rig.of_type("capture_gap") == []
        assert _seqs(rig.key_changes()) == list(range(1, total + 1))
    else:
        assert gap_seqs() > 0  # documents what the grabber is for


async def test_archived_wals_are_read(rig, writer_factory, tmp_path):
    w = writer_factory(options={"wal_ttl_seconds": 3600})
    await w.aput_many(300, batch=10, prefix="x")
    await w.aflush()  # WAL moves to archive/
    await w.aput_many(300, batch=10, prefix="y")
    assert os.listdir(tmp_path / "db" / "archive")
    await rig.start()  # first start: from the oldest WAL on disk, archive included
    await wait_for(lambda: len(rig.key_changes()) >= 600, what="all events")
    assert _seqs(rig.key_changes()) == list(range(1, 601))


async def test_wal_deleted_before_read_is_a_gap(rig, writer_factory):
    w = writer_factory()
    await rig.start()
    await w.aput_many(10, batch=5, prefix="a")
    await wait_for(lambda: len(rig.key_changes()) >= 10, what="first events")
    await rig.stop()
    # daemon down: the writer writes and flushes -> that WAL is deleted unread
    await w.aput_many(20, batch=5, prefix="b")
    await w.aflush()
    await w.aput_many(5, batch=5, prefix="c")
    await rig.start()
    await wait_for(lambda: rig.of_type("capture_gap"), what="gap event")
    (gap,) = rig.of_type("capture_gap")
    assert (gap["from_seq"], gap["to_seq"]) == (11, 30)
    assert rig.health.ok("readiness", "capture_gap") is False
    assert "11..30" in rig.health.state[("readiness", "capture_gap")][1]
    await wait_for(lambda: len(rig.key_changes()) >= 5, what="events after the gap")
    assert _seqs(rig.key_changes()) == list(range(31, 36))


async def test_gap_when_remaining_wals_are_empty(rig, writer_factory):
    w = writer_factory()
    await rig.start()
    await w.aput_many(10, batch=5, prefix="a")
    await wait_for(lambda: len(rig.key_changes()) >= 10, what="first events")
    await rig.stop()
    await w.aput_many(20, batch=5, prefix="b")
    await w.aflush()  # the current WAL is new and empty now
    await rig.start()
    gaps = await wait_for(lambda: rig.of_type("capture_gap"), what="gap event")
    assert (gaps[0]["from_seq"], gaps[0]["to_seq"]) == (11, 30)
    seq = await w.aput("after", "gap")
    await wait_for(lambda: rig.key_changes(), what="next event")
    assert _seqs(rig.key_changes()) == [seq]
    assert len(rig.of_type("capture_gap")) == 1


async def test_gap_clears_after_hold(rig, writer_factory):
    w = writer_factory()
    await rig.start()
    await w.aput("a", "1")
    await wait_for(lambda: rig.key_changes(), what="event")
    await rig.stop()
    await w.aput("b", "2")
    await w.aflush()
    await w.aput("c", "3")
    await rig.start(gap_hold_s=0.3)
    await wait_for(lambda: rig.health.ok("readiness", "capture_gap") is False, what="unhealthy")
    await wait_for(lambda: rig.health.ok("readiness", "capture_gap") is True, what="healthy again")


async def test_store_dir_renamed_away_and_back(rig, writer_factory, tmp_path):
    w = writer_factory()
    await rig.start()
    await w.aput("a", "1")
    await wait_for(lambda: rig.health.ok("startup", "capture"), what="startup")
    db, away = tmp_path / "db", tmp_path / "moved"
    os.rename(db, away)
    await wait_for(lambda: rig.health.ok("readiness", "capture_store") is False, what="unhealthy")
    assert str(db) in rig.health.state[("readiness", "capture_store")][1]
    await w.aput("b", "2")  # the writer keeps its fds: it writes into the moved directory
    os.rename(away, db)
    await wait_for(lambda: rig.health.ok("readiness", "capture_store") is True, what="healthy again")
    await w.aput("c", "3")
    await wait_for(lambda: len(rig.key_changes()) >= 3, what="all events")
    assert [e["key"] for e in rig.key_changes()] == ["a", "b", "c"]
    # the watcher was re-armed on the directory that came back: new writes arrive promptly
    await w.aflush()
    await w.aput("d", "4")
    await wait_for(lambda: len(rig.key_changes()) >= 4, what="after rotation")
    assert _seqs(rig.key_changes()) == [1, 2, 3, 4]


async def test_leveldb_store(rig, writer_factory, tmp_path):
    w = writer_factory(kind="leveldb", options={"write_buffer_size": 256 << 10})
    await w.aput("first", "1")
    await rig.start()
    assert rig.ctx.store.kind == "leveldb"
    await w.aput(b"\xfe", "bin")
    await w.abatch([{"op": "put", "key": "x", "value": "y"}, {"op": "delete", "key": "first"}])
    n = 4
    for round_ in range(4):  # ~120 KB per round: at most one log rotation between catch-ups
        await w.acmd("put_many", count=1000, batch=100, prefix=f"l{round_}-", value_size=100)
        n += 1000
        await wait_for(lambda: len(rig.key_changes()) >= n, timeout=20, what=f"round {round_}")
    evs = rig.key_changes()
    assert _seqs(evs) == list(range(1, n + 1))
    assert [e["operation"] for e in evs[:4]] == ["put", "put", "put", "delete"]
    assert evs[1]["key_encoding"] == "base64"
    assert all(e.get("cf", "default") == "default" for e in evs)
    assert len([f for f in os.listdir(tmp_path / "db") if f.endswith(".ldb")]) >= 1  # it rotated
    assert rig.of_type("capture_gap") == []


async def test_recycled_wals(rig, writer_factory, tmp_path):
    """recycle_log_file_num: old WAL files are renamed and overwritten in place; the leftovers
    of their previous life (records stamped with the old number) are not delivered again."""
    w = writer_factory(options={"recycle_log_file_num": 2, "wal_recovery_mode": "skip_any_corrupted_record"})
    await rig.start()
    total = 0
    inodes = set()
    for round_, n in enumerate((400, 300, 200, 100, 50, 20)):  # shrinking: old records stay behind
        await w.aput_many(n, batch=10, prefix=f"r{round_}-")
        total += n
        await wait_for(lambda: len(rig.key_changes()) >= total, what=f"round {round_}")
        inodes.update(os.stat(tmp_path / "db" / f).st_ino for f in os.listdir(tmp_path / "db") if f.endswith(".log"))
        await w.aflush()
    await w.aput("last", "1")
    total += 1
    await wait_for(lambda: len(rig.key_changes()) >= total, what="last")
    assert len(inodes) <= 3  # files really were recycled
    assert _seqs(rig.key_changes()) == list(range(1, total + 1))
    assert rig.of_type("capture_gap") == [] and rig.capture.decode_errors == 0


async def test_store_recreated_capture_starts_over_and_says_so(rig, writer_factory, tmp_path):
    import shutil

    db = str(tmp_path / "db")
    w = writer_factory(db)
    for i in range(6):  # push the file numbers up
        await w.aput(f"old{i}", "x")
        await w.aflush()
    await rig.start()
    await w.aput("old-live", "y")
    await wait_for(lambda: len(rig.key_changes()) >= 1, what="old store events")
    await asyncio.to_thread(w.close)
    shutil.rmtree(db)
    w2 = writer_factory(db)  # a new store at the same path: file and sequence numbers restart
    s1 = await w2.aput("new1", "1")
    s2 = await w2.aput("new2", "2")
    await wait_for(lambda: [e["key"] for e in rig.key_changes()][-2:] == ["new1", "new2"], what="new store events")
    assert [e["seq"] for e in rig.key_changes()][-2:] == [s1, s2] == [1, 2]
    assert rig.health.ok("readiness", "capture_reset") is False
    assert "recreated" in rig.health.state[("readiness", "capture_reset")][1]


async def test_resume_from_checkpoint_in_archive(rig, writer_factory, tmp_path):
    w = writer_factory(options={"wal_ttl_seconds": 3600})
    await rig.start()
    await w.aput_many(100, batch=10, prefix="a")
    await wait_for(lambda: len(rig.key_changes()) >= 100, what="first events")
    await rig.stop()
    await w.aput_many(50, batch=10, prefix="b")  # same WAL, unread
    await w.aflush()  # ... which now moves to archive/
    await w.aput_many(50, batch=10, prefix="c")
    assert os.listdir(tmp_path / "db" / "archive")
    await rig.start()
    await wait_for(lambda: len(rig.key_changes()) >= 100, what="resumed events")
    assert _seqs(rig.key_changes()) == list(range(101, 201))
    assert rig.of_type("capture_gap") == []
    all_kc = [e for e in rig.journal_events() if e["type"] == "key_change"]
    assert _seqs(all_kc) == list(range(1, 201))
