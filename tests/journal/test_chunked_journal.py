"""The chunked journal (format 2): reads from any id, retention exact to the event, format-1
journals migrated on open, the keys-only integrity walk."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap

import lmdb
import pytest

from cdc.errors import JournalCorrupt
from cdc.journal import lmdb_journal
from cdc.journal.lmdb_journal import CHUNK_EVENTS, Journal, verify_env
from cdc.model.chunk import Committed, pack_ix
from cdc.model.wire import encode_event

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _events(n: int, start: int = 0) -> list[dict]:
    return [{"type": "app.note", "n": i} for i in range(start, start + n)]


def test_commit_is_chunks_and_reads_start_anywhere(tmp_path) -> None:
    j = Journal(str(tmp_path / "j"), sync=False)
    recs = j.append(_events(2500))
    assert isinstance(recs, Committed) and [len(c) for c in recs.chunks] == [CHUNK_EVENTS, CHUNK_EVENTS, 500]
    assert [r.id for r in recs] == list(range(1, 2501))
    j.append(_events(3, 2500))
    for since in (0, 1, 999, 1000, 1001, 1999, 2499, 2500, 2502, 2503, 5000):
        got = j.read(since, 10_000)
        assert [r.id for r in got] == list(range(since + 1, 2504)), since
        wires, last = j.read_wire(since, 7)
        assert [int(w[6 : w.index(b",")]) for w in wires] == list(range(since + 1, min(since + 8, 2504)))
        assert last == (since + len(wires) if wires else since)
        chunks = j.read_chunks(since, 1500)
        ids = [i for c in chunks for i in range(c.first, c.last + 1)]
        assert ids == list(range(since + 1, since + 1 + len(ids)))
        first, evs, ixs = j.read_columns(since, 1200)
        assert first == since + 1 and len(evs) == len(ixs) == min(1200, max(0, 2503 - since))
        raw = j.read_raw(since, 5)
        assert [it[0] for it in raw] == list(range(since + 1, min(since + 6, 2504)))
    j.close()


@pytest.mark.parametrize("limit", [1, 999, 1000, 1001, 2499])
def test_count_retention_keeps_exactly_the_newest(tmp_path, limit) -> None:
    j = Journal(str(tmp_path / "j"), sync=False, retention_count=limit, retention_age_s=0, retention_bytes=0)
    j.append(_events(2500))
    assert j.count == limit and j.oldest_id == 2501 - limit and j.latest_id == 2500
    assert [r.id for r in j.read(0, 5000)] == list(range(2501 - limit, 2501))
    j.close()
    j = Journal(str(tmp_path / "j"), sync=False, retention_count=limit, retention_age_s=0, retention_bytes=0)
    assert (j.count, j.oldest_id, j.latest_id) == (limit, 2501 - limit, 2500)
    j.close()


def test_bytes_retention_and_stored_size(tmp_path) -> None:
    j = Journal(str(tmp_path / "j"), sync=False, retention_count=0, retention_age_s=0, retention_bytes=50_000)
    for k in range(10):
        j.append(_events(300, k * 300))
    assert j.size_bytes <= 50_000
    got = j.read(0, 10_000)
    assert got[-1].id == 3000 and [r.id for r in got] == list(range(got[0].id, 3001))
    env = j.env
    with env.begin() as txn:
        stored = sum(len(v) for _k, v in txn.cursor(db=j._ch))
    assert stored == j.size_bytes
    j.close()


def _write_format1(path: str, n: int) -> list[tuple[bytes, bytes]]:
    """A journal as cdc wrote it before chunks: ``ev`` (id -> wire) and ``ix`` (id -> ix) records."""
    env = lmdb.open(path, max_dbs=4, map_size=1 << 26)
    ev, ix, meta = (env.open_db(name) for name in (b"ev", b"ix", b"meta"))
    out = []
    with env.begin(write=True) as txn:
        for i in range(1, n + 1):
            pe = encode_event({"type": "app.old", "cf": "users" if i % 2 else None, "n": i}, 1000 + i)
            wire = b'{"id":%d,%b' % (i, pe.core[1:])
            x = pack_ix(1000 + i, pe.type, pe.cf, pe.key, pe.end_key, pe.value)
            txn.put(struct.pack(">Q", i), wire, db=ev)
            txn.put(struct.pack(">Q", i), x, db=ix)
            out.append((wire, x))
        txn.put(b"next_id", struct.pack("<Q", n + 1), db=meta)
        txn.put(b"bytes", struct.pack("<Q", sum(len(a) + len(b) for a, b in out)), db=meta)
        txn.put(b"epoch", b"0123456789abcdef", db=meta)
        txn.put(b"cp:wal", b"checkpoint", db=meta)
    env.close()
    return out


def test_format1_journal_is_migrated_on_open(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "j")
    old = _write_format1(path, 2345)
    monkeypatch.setattr(lmdb_journal, "MIGRATE_BATCH", 1000)  # several transactions
    j = Journal(path, sync=False, retention_age_s=0)
    assert (j.epoch, j.latest_id, j.oldest_id, j.count) == ("0123456789abcdef", 2345, 1, 2345)
    assert j.get_checkpoint("wal") == b"checkpoint"
    got = j.read(0, 10_000)
    assert [(r.wire, r.id) for r in got] == [(w, i) for i, (w, _x) in enumerate(old, 1)]
    assert got[0].cf == "users" and got[1].cf is None and got[5].ts == 1006
    assert [r.id for r in j.append(_events(2))] == [2346, 2347]
    with j.env.begin() as txn:
        names = {bytes(k) for k, _ in txn.cursor()}
    assert b"ev" not in names and b"ix" not in names
    j.close()
    verify_env(lmdb.open(path, readonly=True, lock=False, max_dbs=4), path)


def test_migration_killed_half_way_finishes_on_next_open(tmp_path) -> None:
    path = str(tmp_path / "j")
    _write_format1(path, 2500)
    # a process that dies (os._exit, no cleanup) in the middle of the migration's second transaction
    code = textwrap.dedent(
        f"""
        import os
        from cdc.journal import lmdb_journal
        lmdb_journal.MIGRATE_BATCH = 1000
        real, calls = lmdb_journal.chunk_of_stored, []
        def dying(*a, **kw):
            calls.append(1)
            if len(calls) == 2:
                os._exit(9)
            return real(*a, **kw)
        lmdb_journal.chunk_of_stored = dying
        lmdb_journal.Journal({path!r}, sync=True, retention_age_s=0)
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, cwd=ROOT)
    assert r.returncode == 9, r.stderr
    j = Journal(path, sync=False, retention_age_s=0)
    assert [r.id for r in j.read(0, 10_000)] == list(range(1, 2501)) and j.count == 2500
    j.close()


def test_integrity_walk_refuses_overlapping_chunks_and_a_wrong_count(tmp_path) -> None:
    path = str(tmp_path / "j")
    j = Journal(path, sync=False)
    j.append(_events(10))
    with j.env.begin(write=True) as txn:
        txn.put(b"count", struct.pack("<Q", 11), db=j._meta)
    j.close()
    with pytest.raises(JournalCorrupt, match="count"):
        Journal(path, sync=False)


def test_garbage_inside_a_chunk_value_is_found_at_open_and_by_reads(tmp_path) -> None:
    path = str(tmp_path / "j")
    j = Journal(path, sync=True)
    j.append([{"type": "app.note", "n": i, "pad": "p" * 300} for i in range(200)])  # one large value: overflow pages
    j.close()
    data = os.path.join(path, "data.mdb")
    raw = bytearray(open(data, "rb").read())
    at = raw.index(b'{"id":150,')  # deep inside the value, far from any LMDB page header
    raw[at + 8] ^= 0x01  # "150" -> "140": still valid JSON, only the checksum knows
    with open(data, "r+b") as f:
        f.write(raw)
    with pytest.raises(JournalCorrupt, match="checksum"):
        Journal(path, sync=True)
    # damage that appears while the journal is open is found by the read that meets it
    path2 = str(tmp_path / "j2")
    j = Journal(path2, sync=True)
    j.append([{"type": "app.note", "n": i, "pad": "p" * 300} for i in range(200)])
    data = os.path.join(path2, "data.mdb")
    raw = bytearray(open(data, "rb").read())
    at = raw.index(b'{"id":150,')
    with open(data, "r+b") as f:
        f.seek(at + 8)
        f.write(b"4")
    with pytest.raises(JournalCorrupt):
        j.read(100, 10)
    assert "checksum" in j.damaged
    j.close()


def test_retention_meeting_a_damaged_chunk_holds_the_commit_as_journal_damage(tmp_path) -> None:
    # count retention trims the damaged chunk: that is damage (a JournalError: the bus holds the
    # events and readiness says so), not a bad event to skip, and the chunk is not rewritten
    path = str(tmp_path / "j")
    j = Journal(path, sync=True, retention_count=0, retention_bytes=0, retention_age_s=0)
    j.append([{"type": "app.note", "n": i, "pad": "p" * 300} for i in range(200)])
    data = os.path.join(path, "data.mdb")
    at = open(data, "rb").read().index(b'{"id":150,')
    with open(data, "r+b") as f:
        f.seek(at + 8)
        f.write(b"4")
    j.retention_count = 150
    with pytest.raises(JournalCorrupt):
        j.append([{"type": "app.note", "n": 1}])
    assert "checksum" in j.damaged and j.rejected == 0 and j.latest_id == 200
    j.close()
