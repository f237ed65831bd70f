"""WriteBatch decoding and WalReader on byte vectors (every tag, sequence rules, errors)."""

from __future__ import annotations

import struct

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.errors import CorruptRecord, FormatError, UnsupportedRecord
from cdc.format.wal import Op, WalReader, decode_write_batch

from .conftest import batch, physical, varint, varstr, write_log


def _ops(b):
    return [tuple(op) for op in b.ops]


def test_every_tag():
    body = b"".join(
        [
            b"\x01" + varstr(b"k1") + varstr(b"v1"),  # put
            b"\x00" + varstr(b"k2"),  # delete
            b"\x02" + varstr(b"k3") + varstr(b"op"),  # merge
            b"\x03" + varstr(b"blob"),  # log data: no seq
            b"\x04" + varint(3) + varstr(b"k4"),  # cf delete
            b"\x05" + varint(300) + varstr(b"k5") + varstr(b"v5"),  # cf put, 2-byte cf id
            b"\x06" + varint(3) + varstr(b"k6") + varstr(b"m6"),  # cf merge
            b"\x07" + varstr(b"k7"),  # single delete
            b"\x08" + varint(3) + varstr(b"k8"),  # cf single delete
            b"\x0d",  # noop
            b"\x0e" + varint(3) + varstr(b"a") + varstr(b"b"),  # cf range delete
            b"\x0f" + varstr(b"c") + varstr(b"d"),  # range delete
            b"\x10" + varint(3) + varstr(b"k9") + varstr(b"\x01bi"),  # cf blob index
            b"\x11" + varstr(b"k10") + varstr(b"\x00bi"),  # blob index
            b"\x16" + varstr(b"e1") + varstr(b"\x01\x00"),  # entity
            b"\x17" + varint(3) + varstr(b"e2") + varstr(b"\x01\x00"),  # cf entity
            b"\x18" + varstr(b"t1") + varstr(b"val" + struct.pack("<Q", 1234)),  # timed put
            b"\x19" + varint(3) + varstr(b"t2") + varstr(b"" + struct.pack("<Q", 5)),
        ]
    )
    b = decode_write_batch(batch(100, 16, body), log_number=4, offset=77)
    assert (b.log_number, b.offset, b.seq, b.count) == (4, 77, 100, 16)
    assert _ops(b) == [
        (100, "put", 0, b"k1", b"v1", None, None),
        (101, "delete", 0, b"k2", None, None, None),
        (102, "merge", 0, b"k3", b"op", None, None),
        (-1, "log_data", 0, b"blob", None, None, None),
        (103, "delete", 3, b"k4", None, None, None),
        (104, "put", 300, b"k5", b"v5", None, None),
        (105, "merge", 3, b"k6", b"m6", None, None),
        (106, "single_delete", 0, b"k7", None, None, None),
        (107, "single_delete", 3, b"k8", None, None, None),
        (-1, "noop", 0, None, None, None, None),
        (108, "delete_range", 3, b"a", None, b"b", None),
        (109, "delete_range", 0, b"c", None, b"d", None),
        (110, "blob_index", 3, b"k9", b"\x01bi", None, None),
        (111, "blob_index", 0, b"k10", b"\x00bi", None, None),
        (112, "put_entity", 0, b"e1", b"\x01\x00", None, None),
        (113, "put_entity", 3, b"e2", b"\x01\x00", None, None),
        (114, "timed_put", 0, b"t1", b"val", None, struct.pack("<Q", 1234)),
        (115, "timed_put", 3, b"t2", b"", None, struct.pack("<Q", 5)),
    ]


def test_two_phase_commit_markers():
    body = b"".join(
        [
            b"\x09",  # begin prepare
            b"\x01" + varstr(b"p1") + varstr(b"v"),
            b"\x04" + varint(1) + varstr(b"p2"),
            b"\x0a" + varstr(b"xid1"),  # end prepare
            b"\x01" + varstr(b"after") + varstr(b"v"),
            b"\x0b" + varstr(b"xid1"),  # commit
            b"\x0c" + varstr(b"xid2"),  # rollback
            b"\x15" + varstr(b"TS") + varstr(b"xid3"),  # commit with timestamp
            b"\x12",
            b"\x13",
        ]
    )
    b = decode_write_batch(batch(50, 3, body))
    assert _ops(b) == [
        (-1, "begin_prepare", 0, None, None, None, None),
        (-1, "put", 0, b"p1", b"v", None, None),
        (-1, "delete", 1, b"p2", None, None, None),
        (-1, "end_prepare", 0, b"xid1", None, None, None),
        (50, "put", 0, b"after", b"v", None, None),
        (-1, "commit", 0, b"xid1", None, None, None),
        (-1, "rollback", 0, b"xid2", None, None, None),
        (-1, "commit_with_ts", 0, b"xid3", b"TS", None, None),
        (-1, "begin_persisted_prepare", 0, None, None, None, None),
        (-1, "begin_unprepare", 0, None, None, None, None),
    ]


def test_leveldb_batch():
    body = b"\x01" + varstr(b"a") + varstr(b"1") + b"\x00" + varstr(b"b")
    b = decode_write_batch(batch(9, 2, body), leveldb=True)
    assert _ops(b) == [(9, "put", 0, b"a", b"1", None, None), (10, "delete", 0, b"b", None, None, None)]
    with pytest.raises(CorruptRecord, match="unknown write batch tag 0x05"):
        decode_write_batch(batch(9, 1, b"\x05\x00" + varstr(b"a") + varstr(b"1")), leveldb=True)
    with pytest.raises(CorruptRecord, match="unknown write batch tag 0x02"):
        decode_write_batch(batch(9, 1, b"\x02" + varstr(b"a") + varstr(b"1")), leveldb=True)


def test_errors_are_typed_with_position():
    with pytest.raises(CorruptRecord, match="too small") as ei:
        decode_write_batch(b"\x00" * 11, log_number=7, offset=99)
    assert (ei.value.log_number, ei.value.offset) == (7, 99)
    with pytest.raises(CorruptRecord, match="unknown write batch tag 0x14 at byte 12"):
        decode_write_batch(batch(1, 1, b"\x14" + varstr(b"k")))
    with pytest.raises(CorruptRecord, match="count mismatch"):
        decode_write_batch(batch(1, 2, b"\x01" + varstr(b"k") + varstr(b"v")))
    good = b"\x01" + varstr(b"key") + varstr(b"value") + b"\x0e" + varint(2) + varstr(b"a") + varstr(b"b")
    for cut in range(len(good)):
        with pytest.raises(CorruptRecord):
            decode_write_batch(batch(1, 2, good[:cut]))
    # overlong varint
    with pytest.raises(CorruptRecord):
        decode_write_batch(batch(1, 1, b"\x01" + b"\xff" * 12))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400), st.booleans())
def test_arbitrary_batches_give_batch_or_format_error(body, leveldb):
    try:
        b = decode_write_batch(batch(1, 3, body), leveldb=leveldb)
    except FormatError:
        return
    assert all(isinstance(op, Op) for op in b.ops)


def test_walreader_udt_sizes_and_predecessor():
    udt = struct.pack("<IH", 2, 8)
    pred = struct.pack("<QQQ", 11, 4096, 77)
    body = b"\x05" + varint(2) + varstr(b"user" + b"T" * 8) + varstr(b"v")
    body += b"\x0e" + varint(2) + varstr(b"a" + b"1" * 8) + varstr(b"b" + b"2" * 8)
    body += b"\x01" + varstr(b"plain") + varstr(b"v")
    data = physical(130, pred) + physical(10, udt) + write_log([batch(78, 3, body)])
    r = WalReader(12)
    r.feed(data)
    (b,) = r.read()
    assert r.predecessor == (11, 4096, 77) and r.ts_sizes == {2: 8}
    assert _ops(b) == [
        (78, "put", 2, b"user", b"v", None, b"T" * 8),
        (79, "delete_range", 2, b"a", None, b"b", b"1" * 8),
        (80, "put", 0, b"plain", b"v", None, None),
    ]
    # a key shorter than its timestamp is corruption
    r = WalReader(12)
    r.feed(physical(10, udt) + physical(1, batch(1, 1, b"\x05\x02" + varstr(b"k") + varstr(b""))))
    assert r.read() == [] and r.state == "corrupt" and r.error.offset == 13
    # bad UDT record size
    r = WalReader(12)
    r.feed(physical(10, b"\x00" * 5))
    r.read()
    assert r.state == "corrupt" and isinstance(r.error, CorruptRecord)


def _zstd_frame(data: bytes) -> bytes:
    c = zstandard.ZstdCompressor(write_checksum=True, write_content_size=False)
    obj = c.compressobj()
    return obj.compress(data) + obj.flush()


def test_walreader_zstd_compression_and_resume():
    b1 = batch(1, 1, b"\x01" + varstr(b"k1") + varstr(b"v" * 50000))
    b2 = batch(2, 1, b"\x00" + varstr(b"k2"))
    comp = physical(9, struct.pack("<I", 7))
    data = comp + write_log([_zstd_frame(b1), _zstd_frame(b2)])[0:]
    # write_log starts at offset 0; re-frame after the compression record properly:
    framed = write_log([_zstd_frame(b1), _zstd_frame(b2)])
    assert data == comp + framed
    r = WalReader(3)
    r.feed(comp)
    assert r.read() == [] and r.compression == 7
    off = r.offset
    assert off == len(comp)
    # the rest, with fresh reader resuming mid-file (compression persisted with the offset)
    stream = comp + framed
    r2 = WalReader(3, offset=0)
    r2.feed(stream)
    got = r2.read()
    assert [_ops(b) for b in got] == [
        [(1, "put", 0, b"k1", b"v" * 50000, None, None)],
        [(2, "delete", 0, b"k2", None, None, None)],
    ]
    r3 = WalReader(3, offset=got[1].offset, compression=7)
    r3.feed(stream[got[1].offset :])
    assert [b.seq for b in r3.read()] == [2]
    # garbage instead of a zstd frame
    r4 = WalReader(3)
    r4.feed(comp + physical(1, b"not zstd at all"))
    assert r4.read() == [] and r4.state == "corrupt" and r4.error.offset == len(comp)


def test_walreader_compression_errors():
    r = WalReader(3)
    r.feed(physical(9, struct.pack("<I", 4)))  # LZ4
    r.read()
    assert r.state == "corrupt" and isinstance(r.error, UnsupportedRecord)
    assert "turn off wal_compression" in r.error.reason
    r = WalReader(3)
    r.feed(physical(1, batch(1, 0, b"")) + physical(9, struct.pack("<I", 7)))
    assert len(r.read()) == 1 and r.state == "corrupt" and r.error.offset == 19


def test_walreader_batch_error_keeps_earlier_batches_and_offset():
    good = batch(1, 1, b"\x01" + varstr(b"a") + varstr(b"b"))
    bad = batch(2, 1, b"\x7f")
    data = write_log([good, bad, good])
    r = WalReader(5)
    r.feed(data)
    got = r.read()
    assert len(got) == 1 and r.state == "corrupt"
    assert r.error.offset == r.offset == 7 + len(good)
    assert r.close() is r.error
    assert r.read() == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.booleans())
def test_walreader_arbitrary_bytes(data, leveldb):
    r = WalReader(1, leveldb=leveldb)
    r.feed(data)
    r.read()
    assert r.state in ("ok", "need_more", "end", "corrupt")
    err = r.close()
    assert err is None or isinstance(err, FormatError)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_walreader_framed_garbage_batches(body):
    r = WalReader(1)
    r.feed(physical(1, batch(5, 2, body)))
    out = r.read()
    assert r.state in ("ok", "corrupt")
    if r.state == "corrupt":
        assert isinstance(r.error, FormatError) and out == []


def test_decode_entity_v1_v2_and_errors():
    from cdc.format.wal import decode_entity

    v1 = varint(1) + varint(2) + varstr(b"") + varint(2) + varstr(b"c1") + varint(1) + b"dv" + b"x"
    assert decode_entity(v1) == [(b"", b"dv"), (b"c1", b"x")]
    names, values = [b"a", b"bb"], [b"1", b"\x00" * 20]
    v2 = (
        varint(2) + varint(2) + varint(2) + varint(2) + varint(2)
        + b"\x01\x11" + varint(1) + varint(2) + varint(1) + varint(20)
        + b"".join(names) + b"".join(values)
    )
    assert decode_entity(v2) == list(zip(names, values))
    for bad in (v1[:-1], v1 + b"!", varint(3) + varint(0), b"", v2[:-1]):
        with pytest.raises(CorruptRecord):
            decode_entity(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decode_entity_arbitrary(data):
    from cdc.format.wal import decode_entity

    try:
        decode_entity(data)
    except FormatError:
        pass


def _reference(data: bytes, log_number: int = 8):
    """The plain path: LogReader.read() + decode_write_batch, stopping at the first error."""
    from cdc.format.blocks import LogReader

    r = LogReader(log_number)
    r.feed(data)
    out = []
    for rec in r.read():
        try:
            out.append(decode_write_batch(rec.payload, log_number=log_number, offset=rec.offset))
        except FormatError as exc:
            return out, "corrupt", exc.offset
    return out, r.state, (r.error.offset if r.error else None)


def _stream(n: int = 40) -> bytes:
    recs = []
    for i in range(n):
        if i % 7 == 3:
            body = b"".join(b"\x05\x02" + varstr(b"k%d" % j) + varstr(b"v" * 200) for j in range(3))
            recs.append(batch(100 + i * 10, 3, body))
        elif i % 11 == 5:
            recs.append(batch(100 + i * 10, 1, b"\x01" + varstr(b"big") + varstr(b"x" * 40000)))
        elif i % 5 == 2:  # 2-byte value length (the single-Put shortcut)
            recs.append(batch(100 + i * 10, 1, b"\x01" + varstr(b"mid%d" % i) + varstr(b"m" * (128 + i * 9))))
        elif i % 13 == 6:  # 3-byte value length inside one block (the general decoder)
            recs.append(batch(100 + i * 10, 1, b"\x01" + varstr(b"v3") + varstr(b"z" * 20000)))
        else:
            recs.append(batch(100 + i * 10, 1, b"\x01" + varstr(b"key%d" % i) + varstr(b"val%d" % i)))
    return write_log(recs)


def test_walreader_fast_path_agrees_with_plain_path_under_bit_flips():
    data = _stream()
    base = _reference(data)
    r = WalReader(8)
    r.feed(data)
    assert (r.read(), r.state) == (base[0], "ok")
    for pos in range(0, len(data), 97):
        for bit in (0, 3, 7):
            bad = bytearray(data)
            bad[pos] ^= 1 << bit
            bad = bytes(bad)
            exp_batches, exp_state, exp_off = _reference(bad)
            r = WalReader(8)
            r.feed(bad)
            got = r.read()
            assert got == exp_batches, (pos, bit)
            assert r.state == exp_state, (pos, bit)
            if exp_state == "corrupt":
                assert r.error.offset == exp_off
                # resume point: the start of the bad logical record (its first fragment)
                assert r.offset <= r.error.offset


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 200000), max_size=8))
def test_walreader_any_split_same_batches(cuts):
    data = _stream(25)
    full = _reference(data)[0]
    r = WalReader(8)
    got = []
    prev = 0
    for c in sorted({min(c, len(data)) for c in cuts}) + [len(data)]:
        r.feed(data[prev:c])
        got += r.read()
        prev = c
    assert got == full and r.state == "ok"
