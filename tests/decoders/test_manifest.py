"""MANIFEST / VersionEdit decoding: synthetic edits for every tag, and real MANIFESTs vs ldb."""

from __future__ import annotations

import os
import re
import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.errors import CorruptRecord, FormatError, StoreError
from cdc.format.manifest import ManifestState, decode_manifest, decode_version_edit
from cdc.sources.store import detect_store, list_wal_files, load_manifest

from .conftest import ldb_available, run_writer, varint, varstr, write_log


def ikey(user: bytes, seq: int, vtype: int = 1) -> bytes:
    return user + struct.pack("<Q", (seq << 8) | vtype)


def new_file4(level, number, size, smallest, largest, s, l, custom=b""):
    return (
        varint(103) + varint(level) + varint(number) + varint(size) + varstr(smallest)
        + varstr(largest) + varint(s) + varint(l) + custom + varint(1)
    )


def test_every_tag():
    wal_add = varint(12) + varint(2) + varint(4096) + varint(1)
    rec = b"".join(
        [
            varint(1) + varstr(b"leveldb.BytewiseComparator"),
            varint(2) + varint(12),
            varint(3) + varint(40),
            varint(4) + varint(999),
            varint(5) + varint(1) + varstr(ikey(b"c", 5)),
            varint(6) + varint(0) + varint(7),
            varint(7) + varint(1) + varint(8) + varint(100) + varstr(ikey(b"a", 9)) + varstr(ikey(b"b", 3)),
            varint(9) + varint(0),
            varint(10) + varint(11),
            varint(100) + varint(2) + varint(9) + varint(200) + varstr(ikey(b"a", 1)) + varstr(ikey(b"z", 2)) + varint(1) + varint(2),
            varint(102) + varint(3) + varint(10) + varint(0) + varint(300) + varstr(b"a" * 8) + varstr(b"b" * 8) + varint(4) + varint(6),
            new_file4(0, 11, 400, ikey(b"a", 1), ikey(b"b", 2), 1, 2,
                      custom=varint(2) + varstr(b"\x01") + varint(3) + varstr(struct.pack("<Q", 13))
                      + varint(6) + varstr(varint(1700000000)) + varint(65) + varstr(b"\x00")),
            varint(200) + varint(4),
            varint(201) + varstr(b"users"),
            varint(203) + varint(4),
            varint(300) + varint(0),
            varint(400) + varint(20) + varint(5) + varint(1000) + varstr(b"crc32c") + varstr(b"\x01\x02") + varint(0),
            varint(401) + varint(20) + varint(1) + varint(10) + varint(0),
            varint(8193) + varstr(b"db-id-1"),
            varint(8194) + varint(21) + varint(5) + varint(1000) + varstr(b"") + varstr(b"") + varint(0),
            varint(8195) + varint(21) + varint(1) + varint(10) + varint(0),
            varint(8196) + wal_add,
            varint(8197) + varint(3),
            varint(8198) + varstr(b"\x00" * 8),
            varint(8199) + varstr(wal_add),
            varint(8200) + varstr(varint(10)),
            varint(8201) + varstr(b"\x01"),
            varint(8202) + varstr(b"opaque progress"),
            varint(8203) + varstr(varint(12345)),
            varint(8300) + varstr(b"future ignorable"),
        ]
    )
    e = decode_version_edit(rec)
    assert e.comparator == b"leveldb.BytewiseComparator"
    assert (e.log_number, e.next_file_number, e.last_sequence, e.prev_log_number) == (12, 40, 999, 0)
    assert e.min_log_number_to_keep == 13  # the larger of tag 10 and the NewFile4 hack field
    assert e.compact_cursors == [(1, ikey(b"c", 5))]
    assert e.deleted_files == [(0, 7)]
    assert [f[:3] + f[5:] for f in e.new_files] == [
        (1, 8, 100, 3, 9),
        (2, 9, 200, 1, 2),
        (3, 10, 300, 4, 6),
        (0, 11, 400, 1, 2),
    ]
    assert (e.cf_id, e.cf_add, e.max_column_family, e.in_atomic_group) == (4, "users", 4, 0)
    assert [b.number for b in e.blob_additions] == [20, 21] and [g[0] for g in e.blob_garbage] == [20, 21]
    assert e.db_id == b"db-id-1"
    assert e.wal_additions == [(12, 4096), (12, 4096)] and e.wal_deletion == 10
    assert e.full_history_ts_low == b"\x00" * 8 and e.persist_udt is True
    assert e.last_compacted_manifest_file_size == 12345
    assert e.ignored_tags == [8202, 8300]
    assert "users" in repr(e)


def test_errors():
    with pytest.raises(CorruptRecord, match="unknown version edit tag 77"):
        decode_version_edit(varint(77) + varint(1))
    with pytest.raises(CorruptRecord, match="truncated"):
        decode_version_edit(varint(7) + varint(1) + varint(8))
    with pytest.raises(CorruptRecord, match="unknown required field"):
        decode_version_edit(new_file4(0, 1, 1, b"a" * 8, b"b" * 8, 1, 1, custom=varint(64 + 30) + varstr(b"x")))
    assert decode_version_edit(b"").cf_id == 0  # an empty edit is legal


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_edits(data):
    try:
        decode_version_edit(data)
    except FormatError:
        pass
    try:
        decode_manifest(data)
    except FormatError:
        pass


def edit(*parts: bytes) -> bytes:
    return b"".join(parts)


def test_state_cf_lifecycle_and_atomic_groups():
    recs = [
        edit(varint(1) + varstr(b"cmp"), varint(2) + varint(5), varint(3) + varint(6), varint(4) + varint(0)),
        edit(varint(200) + varint(1), varint(201) + varstr(b"users"), varint(2) + varint(5)),
        edit(varint(200) + varint(2), varint(201) + varstr(b"gone")),
        edit(new_file4(0, 10, 100, ikey(b"a", 1), ikey(b"b", 2), 1, 2), varint(2) + varint(9), varint(4) + varint(2), varint(200) + varint(1)),
        edit(new_file4(0, 11, 100, ikey(b"a", 3), ikey(b"b", 4), 3, 4), varint(200) + varint(2)),
        edit(varint(200) + varint(2), varint(202)),
        # compaction in cf 1: delete 10, add 12 at L1
        edit(varint(6) + varint(0) + varint(10), new_file4(1, 12, 90, ikey(b"a", 1), ikey(b"b", 2), 1, 2), varint(200) + varint(1)),
        # atomic group of two: applied only together
        edit(varint(300) + varint(1), varint(2) + varint(20)),
        edit(varint(300) + varint(0), varint(200) + varint(1), varint(2) + varint(21), varint(10) + varint(20)),
        # incomplete group at the end: not applied
        edit(varint(300) + varint(1), varint(4) + varint(777)),
    ]
    state = decode_manifest(write_log(recs), number=5)
    assert state.cf_names == {0: "default", 1: "users"}
    assert state.dropped_cfs == {2: "gone"} and state.cf_name(2) == "gone" and state.cf_name(9) == "cf9"
    assert sorted(state.files) == [12] and state.files[12].level == 1 and state.files[12].cf_id == 1
    assert state.log_number == {0: 20, 1: 21}
    assert state.min_log_number_to_keep == 20 and state.last_sequence == 2
    assert len(state.pending_group) == 1 and state.edits == 9
    assert state.min_live_log_number() == 20
    # corruption inside: typed error with the manifest number and record offset
    data = bytearray(write_log(recs))
    data[20] ^= 0x40
    with pytest.raises(CorruptRecord) as ei:
        decode_manifest(bytes(data), number=5)
    assert ei.value.log_number == 5 and ei.value.offset >= 0
    bad = write_log([varint(99) + varint(1)])
    with pytest.raises(CorruptRecord, match="unknown version edit tag 99"):
        decode_manifest(bad, number=5)
    # an incomplete last record is tolerated unless the file is sealed
    data = write_log(recs)[:-3]
    decode_manifest(data)
    with pytest.raises(CorruptRecord, match="truncated"):
        decode_manifest(data, strict_tail=True)
    assert isinstance(ManifestState().cf_names, dict)


def _ldb_manifest(path: str):
    """{cf_name: {file_number: (level, size, smallest_seqno, largest_seqno)}}, {cf: log number}."""
    name = open(os.path.join(path, "CURRENT")).read().strip()
    proc = subprocess.run(
        ["ldb", "manifest_dump", f"--path={os.path.join(path, name)}"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    files: dict[str, dict] = {}
    logs: dict[str, int] = {}
    cf = level = None
    for line in proc.stdout.splitlines():
        m = re.match(r'^-+ Column family "(.*)"\s+\(ID (\d+)\)', line)
        if m:
            cf = m.group(1)
            files[cf] = {}
            continue
        m = re.match(r"^log number: (\d+)", line)
        if m:
            logs[cf] = int(m.group(1))
        m = re.match(r"^--- level (\d+) ---", line)
        if m:
            level = int(m.group(1))
            continue
        m = re.match(r"^\s*(\d+):(\d+)\[(\d+) \.\. (\d+)\]", line)
        if m:
            files[cf][int(m.group(1))] = (level, int(m.group(2)), int(m.group(3)), int(m.group(4)))
    return files, logs


@pytest.mark.integration
@pytest.mark.skipif(not ldb_available(), reason="ldb (rocksdb-tools) not installed")
def test_real_manifest_vs_ldb(tmp_path):
    path = os.fspath(tmp_path / "db")
    body = """
    db, h = open_db(DB_PATH, cfs=["users", "tmp", "orders"])
    for r in range(6):
        for i in range(200):
            db.put(b"d%d-%04d" % (r, i), b"v" * 100)
            h["users"].put(b"u%d-%04d" % (r, i), b"w" * 50)
        db.flush()
        h["users"].flush()
    h["tmp"].put(b"x", b"y")
    h["tmp"].flush()
    db.compact_range(None, None)
    db.drop_column_family("tmp")
    h["orders"].put(b"o", b"1")
    """
    run_writer(path, body)
    state = load_manifest(path)
    assert state.cf_names == {0: "default", 1: "users", 3: "orders"}
    assert state.dropped_cfs == {2: "tmp"}
    theirs, logs = _ldb_manifest(path)
    names = {v: k for k, v in state.cf_names.items()}
    for cf_name, files in theirs.items():
        ours = {
            f.number: (f.level, f.size, f.smallest_seqno, f.largest_seqno)
            for f in state.files.values()
            if f.cf_id == names[cf_name]
        }
        assert ours == files, cf_name
        assert state.log_number.get(names[cf_name], 0) == logs[cf_name]
    assert any(f.level > 0 for f in state.files.values())  # the compaction is visible
    assert state.last_sequence > 0 and state.next_file_number > max(state.files)
    wals = [n for n, _ in list_wal_files(path)]
    assert state.min_live_log_number() <= max(wals)


def test_store_errors(tmp_path):
    with pytest.raises(StoreError, match="no such directory"):
        detect_store(os.fspath(tmp_path / "missing"))
    (tmp_path / "f").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        detect_store(os.fspath(tmp_path / "f"))
    with pytest.raises(StoreError, match="no CURRENT"):
        detect_store(os.fspath(tmp_path))
    (tmp_path / "CURRENT").write_text("garbage\n")
    with pytest.raises(StoreError, match="does not name a MANIFEST"):
        load_manifest(os.fspath(tmp_path))
    (tmp_path / "CURRENT").write_text("MANIFEST-000009\n")
    with pytest.raises(StoreError, match="keeps disappearing"):
        load_manifest(os.fspath(tmp_path))
    # WAL listing: archive/ included, ordered by number, live copy preferred
    (tmp_path / "archive").mkdir()
    for name in ("000010.log", "000002.log", "archive/000001.log", "archive/000010.log", "x.log", "000003.sst"):
        (tmp_path / name).write_bytes(b"")
    got = list_wal_files(os.fspath(tmp_path))
    assert [n for n, _ in got] == [1, 2, 10]
    assert got[2][1] == os.path.join(os.fspath(tmp_path), "000010.log")
    assert got[0][1].endswith("archive/000001.log")
