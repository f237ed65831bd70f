"""Torn writes and corrupt records in a WAL: wait first, then report + resync; never crash.

The store is a real RocksDB written by rocksdict; the test then edits a *copy* of its WAL the
way a crash or a bad disk would (capture itself never writes into a store).
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.capture.conftest import wait_for

pytestmark = pytest.mark.integration


def _make_store(writer_factory, tmp_path, n: int, value_size: int = 40) -> tuple[str, str, bytes]:
    src = str(tmp_path / "src")
    w = writer_factory(src)
    w.put_many(n, batch=1, prefix="k", value_size=value_size)
    w.exit_without_close()  # the WAL stays on disk
    db = str(tmp_path / "db")
    shutil.copytree(src, db, ignore=shutil.ignore_patterns("LOCK"))
    (wal,) = [os.path.join(db, f) for f in os.listdir(db) if f.endswith(".log")]
    with open(wal, "rb") as f:
        data = f.read()
    return db, wal, data


async def test_torn_write_at_live_tail_is_waited_for(rig, writer_factory, tmp_path):
    db, wal, data = _make_store(writer_factory, tmp_path, 50)
    cut = len(data) - 30  # the last record is only partly written
    with open(wal, "r+b") as f:
        f.truncate(cut)
    await rig.start(corrupt_retry_s=0.2)
    await wait_for(lambda: len(rig.key_changes()) >= 49, what="complete records")
    # the tail arrives as zeros first (allocated but not yet written), then the real bytes
    with open(wal, "r+b") as f:
        f.seek(cut)
        f.write(b"\0" * 30)
    await wait_for(lambda: rig.capture.retrying_bad_record, what="bad record seen")
    with open(wal, "r+b") as f:
        f.seek(cut)
        f.write(data[cut:])
    await wait_for(lambda: len(rig.key_changes()) >= 50, what="the torn record")
    assert [e["seq"] for e in rig.key_changes()] == list(range(1, 51))
    assert rig.capture.decode_errors == 0
    assert rig.of_type("capture_gap") == []


async def test_corrupt_record_reported_and_resynced_at_next_block(rig, writer_factory, tmp_path):
    db, wal, data = _make_store(writer_factory, tmp_path, 2000)  # ~4 blocks of 32 KiB
    assert len(data) > 3 * 32768
    bad = 1000  # a byte inside a record of block 0
    with open(wal, "r+b") as f:
        f.seek(bad)
        f.write(bytes([data[bad] ^ 0xFF]))
    await rig.start(corrupt_retry_s=0.2)
    await wait_for(lambda: rig.capture.decode_errors >= 1, what="decode error")
    await wait_for(lambda: rig.key_changes() and rig.key_changes()[-1]["seq"] == 2000, what="records after the bad block")
    seqs = [e["seq"] for e in rig.key_changes()]
    (gap,) = rig.of_type("capture_gap")
    lost = list(range(gap["from_seq"], gap["to_seq"] + 1))
    assert sorted(seqs + lost) == list(range(1, 2001))  # everything delivered or reported
    assert 0 < len(lost) < 600  # about one block's worth, not the rest of the file
    assert rig.capture.decode_errors == 1  # the orphan fragment after the resync is no 2nd error
    assert rig.health.ok("readiness", "capture_decode") is False
    assert "corrupt WAL" in rig.health.state[("readiness", "capture_decode")][1]


async def test_garbage_wal_never_crashes(rig, writer_factory, tmp_path):
    db, wal, data = _make_store(writer_factory, tmp_path, 20)
    with open(wal, "wb") as f:  # every block starts with an impossible record length
        f.write(b"\xab" * 100_000)
    await rig.start(corrupt_retry_s=0.05)
    await wait_for(lambda: rig.capture.decode_errors >= 2, what="decode errors")
    assert not rig.tasks[1].done()  # capture keeps running
    assert rig.health.beats > 0


@pytest.mark.parametrize("seed", range(6))
async def test_any_flipped_byte_loses_at_most_a_block_and_reports_it(rig, writer_factory, tmp_path, seed):
    """Big values make fragmented records (FIRST/MIDDLE/LAST across blocks); one flipped byte
    anywhere: everything not delivered is covered by a reported gap, nothing twice, in order."""
    import random

    rnd = random.Random(seed)
    src = str(tmp_path / "src")
    w = writer_factory(src)
    for i in range(60):
        size = rnd.choice((10, 100, 5_000, 40_000, 70_000))
        w.put(f"k{i:03d}", "v" * size)
    w.put("end", "1")
    w.exit_without_close()
    db = str(tmp_path / "db")
    shutil.copytree(src, db, ignore=shutil.ignore_patterns("LOCK"))
    (wal,) = [os.path.join(db, f) for f in os.listdir(db) if f.endswith(".log")]
    data = bytearray(open(wal, "rb").read())
    pos = rnd.randrange(len(data) - 2000)
    data[pos] ^= 0x5A
    with open(wal, "wb") as f:
        f.write(bytes(data))
    await rig.start(corrupt_retry_s=0.05)
    # the last record is intact unless the flip hit it: wait for it, or for the reader to settle
    await wait_for(
        lambda: (rig.key_changes() and rig.key_changes()[-1]["key"] == "end") or rig.capture.retrying_bad_record,
        timeout=20,
        what="end of the WAL",
    )
    seqs = [e["seq"] for e in rig.key_changes()]
    assert seqs == sorted(set(seqs))
    lost = set()
    for g in rig.of_type("capture_gap"):
        lost.update(range(g["from_seq"], g["to_seq"] + 1))
    assert not lost & set(seqs)
    print(f"seed {seed}: flip @{pos}, {len(seqs)} delivered, {len(lost)} reported lost, {rig.capture.decode_errors} errors")
    if rig.key_changes() and rig.key_changes()[-1]["key"] == "end":
        assert sorted(lost | set(seqs)) == list(range(1, 62))
        if lost:
            assert rig.capture.decode_errors >= 1
