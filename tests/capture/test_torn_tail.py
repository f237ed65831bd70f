"""A writer crash tearing the last record of a WAL, then a reopen continuing at the next sequence
number in a new WAL (issue 9 item 5): the normal end of that WAL, as RocksDB's recovery treats it.
No decode error, no readiness condition, nothing lost. A torn tail followed by a jump still
reports."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.capture.conftest import CaptureRig, wait_for


def _wal(db: str) -> str:
    (wal,) = sorted(f for f in os.listdir(db) if f.endswith(".log"))
    return os.path.join(db, wal)


def _tear(path: str, how: str) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        if how == "truncate":
            f.truncate(size - 7)  # the last record is cut short
        else:
            f.seek(size - 7)  # the last record's bytes never reached the disk (zeros)
            f.write(b"\0" * 7)


@pytest.mark.parametrize("how", ["truncate", "zeros"])
async def test_torn_tail_then_reopen_is_normal(rig: CaptureRig, cxx_writer: Any, how: str) -> None:
    w = cxx_writer(rig.db)
    w.send(*(f"put default k{i:03d} value-{i}" for i in range(20)))
    w.crash()
    wal = _wal(rig.db)
    _tear(wal, how)
    await rig.start(corrupt_retry_s=0.1)
    await wait_for(lambda: len(rig.key_changes()) >= 19, what="the complete records")
    w2 = cxx_writer(rig.db)  # RocksDB recovers up to the torn record, continues in a new WAL
    assert w2.seq == 19
    w2.send(*(f"put default n{i:03d} v" for i in range(5)))
    await wait_for(lambda: len(rig.key_changes()) >= 24, what="the writes after the reopen")
    await wait_for(lambda: rig.capture.floor > int(os.path.basename(wal)[:-4]), what="torn WAL done")
    assert [e["seq"] for e in rig.key_changes()] == list(range(1, 25))
    assert rig.capture.decode_errors == 0
    assert rig.of_type("capture_gap") == []
    assert rig.health.ok("readiness", "capture_decode") in (None, True)


async def test_torn_tail_then_jump_still_reports(rig: CaptureRig, cxx_writer: Any, tmp_path: Any) -> None:
    """The next WAL does not continue at the next seq (here: another store's WAL starting at 1):
    the torn record is reported as before (decode error, readiness capture_decode)."""
    w = cxx_writer(rig.db)
    w.send(*(f"put default k{i:03d} value-{i}" for i in range(20)))
    w.crash()
    wal = _wal(rig.db)
    _tear(wal, "truncate")
    await rig.start(corrupt_retry_s=0.1)
    await wait_for(lambda: len(rig.key_changes()) >= 19, what="the complete records")
    other = str(tmp_path / "other")
    w3 = cxx_writer(other)
    w3.send(*(f"put default o{i:03d} v" for i in range(25)))
    w3.crash()
    src = _wal(other)
    with open(src, "rb") as f:
        data = f.read()
    nxt = int(os.path.basename(wal)[:-4]) + 1
    with open(os.path.join(rig.db, f"{nxt:06d}.log"), "wb") as f:
        f.write(data)
    await wait_for(lambda: rig.capture.decode_errors >= 1, what="decode error for the torn tail")
    assert rig.health.ok("readiness", "capture_decode") is False
