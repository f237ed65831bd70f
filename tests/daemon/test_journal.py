"""Journal on a real LMDB environment: ids, checkpoints, retention, map full."""

from __future__ import annotations

import json
import time

import pytest

from cdc.errors import JournalFull
from cdc.model.events import KeyChange, SyncEvent
from cdc.journal.lmdb_journal import Journal
from cdc.model.wire import WireFormat

import msgspec


def kc(i: int, value: str | None = None, key: str | None = None) -> KeyChange:
    return KeyChange(timestamp=1000 + i, operation="put", key=key or f"k{i:06d}", seq=i, value=value)


def test_ids_strictly_increase_across_restarts_and_pruning(tmp_path):
    p = str(tmp_path / "j")
    j = Journal(p, retention_count=3)
    ids = [r.id for r in j.append([kc(i) for i in range(5)])]
    assert ids == [1, 2, 3, 4, 5]
    assert (j.oldest_id, j.latest_id, j.count) == (3, 5, 3)
    j.close()
    j = Journal(p, retention_count=3)
    assert (j.oldest_id, j.latest_id, j.count) == (3, 5, 3)
    assert [r.id for r in j.append([kc(9)])] == [6]
    j.close()


def test_record_layout_wire_value_and_formats(tmp_path):
    j = Journal(str(tmp_path / "j"))
    (r,) = j.append([KeyChange(timestamp=5, operation="put", key="a\u00e9", seq=7, value="v", value_encoding=None)])
    assert json.loads(r.wire) == {"id": 1, "type": "key_change", "timestamp": 5, "operation": "put", "key": "a\u00e9", "cf": "default", "seq": 7}
    assert json.loads(r.frame(WireFormat.JSON_VALUES))["value"] == "v"
    assert msgspec.msgpack.decode(r.frame(WireFormat.MSGPACK_VALUES))["value"] == "v"
    assert r.key == "a\u00e9".encode() and r.cf == "default" and r.type == "key_change"
    (back,) = j.read(0)
    assert back.wire == r.wire and back.value == r.value and back.key == r.key
    assert j.read_wire(0) == ([r.wire], 1)
    assert r.frame(WireFormat.JSON) is r.wire
    j.close()


def test_binary_key_and_value_roundtrip(tmp_path):
    j = Journal(str(tmp_path / "j"))
    (r,) = j.append([KeyChange(timestamp=5, operation="put", key="/w==", key_encoding="base64", seq=1, value="AAE=", value_encoding="base64")])
    assert r.key == b"\xff"
    ev = json.loads(r.frame(WireFormat.JSON_VALUES))
    assert ev["value_encoding"] == "base64" and ev["key_encoding"] == "base64"
    j.close()


def test_checkpoints_commit_with_events(tmp_path):
    p = str(tmp_path / "j")
    j = Journal(p)
    j.append([kc(1)], {"wal": b"\x01\x02"})
    j.append([], {"wal": b"\x03"})
    assert j.get_checkpoint("wal") == b"\x03"
    assert j.get_checkpoint("other") is None
    j.close()
    assert Journal(p).get_checkpoint("wal") == b"\x03"


def test_custom_dict_events_and_rejects(tmp_path):
    j = Journal(str(tmp_path / "j"))
    recs = j.append([{"type": "myapp.reindex", "n": 1}, {"type": "NoDots"}, SyncEvent(timestamp=1, status="started")])
    assert [r.type for r in recs] == ["myapp.reindex", "sync_event"]
    assert j.last_skipped == [1] and j.rejected == 1
    body = json.loads(recs[0].wire)
    assert body["id"] == 1 and body["n"] == 1 and isinstance(body["timestamp"], int)
    j.close()


def test_retention_by_bytes_and_age(tmp_path):
    j = Journal(str(tmp_path / "j"), retention_count=0, retention_bytes=2000, retention_age_s=0)
    j.append([kc(i, value="x" * 50) for i in range(100)])
    assert j.size_bytes <= 2000 and j.count < 100 and j.oldest_id == 101 - j.count
    j.close()
    j = Journal(str(tmp_path / "k"), retention_count=0, retention_bytes=0, retention_age_s=10)
    old = int(time.time() * 1000) - 60_000
    j.append([kc(i) for i in range(10)], now_ms=old)
    j.append([kc(99)])
    assert j.prune() == 10
    assert (j.oldest_id, j.latest_id, j.count) == (11, 11, 1)
    j.close()


def test_map_full_is_journal_full_and_nothing_half_written(tmp_path):
    j = Journal(str(tmp_path / "j"), map_size=256 << 10, retention_count=0, retention_bytes=0, retention_age_s=0)
    big = "x" * 2000
    n = 0
    with pytest.raises(JournalFull):
        for i in range(10_000):
            j.append([kc(i, value=big)], {"cp": str(i).encode()})
            n += 1
    assert j.full
    assert j.latest_id == n and j.count == n
    assert j.get_checkpoint("cp") == str(n - 1).encode()
    # still readable and consistent after the failure
    assert len(j.read(0, 100_000)) == n
    j.close()


def test_read_limits_and_since(tmp_path):
    j = Journal(str(tmp_path / "j"))
    j.append([kc(i) for i in range(50)])
    assert [r.id for r in j.read(10, 5)] == [11, 12, 13, 14, 15]
    wires, last = j.read_wire(45, 100)
    assert last == 50 and len(wires) == 5
    assert j.read(50) == [] and j.read_wire(50) == ([], 50)
    j.close()
