"""Capture's pre-encoded hot path, the checkpoint format and the journal's directory lock."""

from __future__ import annotations

import struct

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.capture import WalCapture, WalCheckpoint, decode_checkpoint, encode_checkpoint
from cdc.errors import JournalError
from cdc.model.events import KeyChange
from cdc.journal.lmdb_journal import Journal
from cdc.model.wire import PreEncoded, WireFormat, encode_event
from cdc.format.wal import Batch, Op

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=200, deadline=None)
@given(key=_text, value=_text, cf=st.sampled_from(["default", 'we"ird\\cf', "\u00e9t\u00e9"]), seq=st.integers(0, 1 << 56))
def test_fast_put_is_byte_identical_to_the_struct(key, value, cf, seq):
    cap = WalCapture(now_ms=lambda: 1_700_000_000_123)
    cap.cf_names = {0: "default", 3: cf}
    b = Batch(7, 0, seq, 1, [Op(seq, "put", 3, key.encode(), value.encode(), None)])
    (fast,) = cap.build([b]).events
    assert type(fast) is PreEncoded
    slow = encode_event(KeyChange(timestamp=1_700_000_000_123, operation="put", key=key, cf=cf, seq=seq, value=value), 0)
    assert fast == slow


def test_fast_and_slow_paths_journal_the_same(tmp_path):
    cap = WalCapture(now_ms=lambda: 5)
    ops = [
        Op(1, "put", 0, b"a", b"v1", None),
        Op(2, "put", 0, b"\xff", b"v2", None),  # binary key: slow path
        Op(3, "delete", 0, b"a", None, None),
        Op(4, "put", 9, b"b", b"v4", None),  # unknown cf: slow path
        Op(5, "put", 0, b"c", b"\xfe", None),  # binary value: slow path
    ]
    dec = cap.build([Batch(1, 0, 1, 5, ops)])
    assert [type(e) is PreEncoded for e in dec.events] == [True, False, False, False, False]
    assert dec.unknown_cfs == [(3, 9)]
    dec.events[3].cf = "cf9"
    j = Journal(str(tmp_path / "j"), sync=False)
    try:
        recs = j.append(dec.events)
        got = [msgspec.json.decode(r.frame(WireFormat.JSON_VALUES)) for r in recs]
        assert got[0] == {"id": 1, "type": "key_change", "timestamp": 5, "operation": "put", "key": "a", "cf": "default", "seq": 1, "batch_seq": 1, "batch_count": 5, "value": "v1"}
        assert got[1]["key_encoding"] == "base64" and got[2]["operation"] == "delete" and got[3]["cf"] == "cf9"
        assert msgspec.msgpack.decode(recs[0].frame(WireFormat.MSGPACK_VALUES))["value"] == "v1"
        assert recs[0].key == b"a" and recs[0].cf == "default" and recs[0].type == "key_change"
        back = j.read(0)
        assert [r.wire for r in back] == [r.wire for r in recs] and [r.value for r in back] == [r.value for r in recs]
    finally:
        j.close()


def test_checkpoint_v2_keeps_ts_sizes_and_v1_still_reads():
    cp = WalCheckpoint(12, 4096, 77, 7, ((2, 8), (5, 4)))
    assert decode_checkpoint(encode_checkpoint(cp)) == cp
    v1 = struct.pack("<BQQqB", 1, 12, 4096, 77, 0)
    assert decode_checkpoint(v1) == WalCheckpoint(12, 4096, 77, 0, ())
    assert decode_checkpoint(encode_checkpoint(cp)[:-1]) is None
    assert decode_checkpoint(b"\x09" + v1[1:]) is None


def test_journal_locks_its_directory(tmp_path):
    p = str(tmp_path / "j")
    j = Journal(p, sync=False)
    with pytest.raises(JournalError, match="in use"):
        Journal(p, sync=False)
    j.close()
    Journal(p, sync=False).close()  # released on close


@settings(max_examples=100, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["put", "put", "put", "delete", "merge"]),
            st.sampled_from([0, 3, 9]),
            st.one_of(_text.map(str.encode), st.binary(max_size=4)),
            st.one_of(_text.map(str.encode), st.binary(max_size=4)),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_batch_comprehension_equals_per_op_path(ops):
    """Mixed batches: every pre-encoded event equals encoding its op's KeyChange (order, seq, cf)."""
    cap = WalCapture(now_ms=lambda: 42)
    cap.cf_names = {0: "default", 3: "three"}
    batch = Batch(1, 0, 100, len(ops), [Op(100 + i, name, cf, k, v, None) for i, (name, cf, k, v) in enumerate(ops)])
    dec = cap.build([batch])
    assert dec.last_seq == 100 + len(ops) - 1 and len(dec.events) == len(ops)
    for i, cf_id in dec.unknown_cfs:
        dec.events[i].cf = f"cf{cf_id}"
    for i, ((name, cf, k, v), ev) in enumerate(zip(ops, dec.events, strict=True)):
        got = ev if type(ev) is PreEncoded else encode_event(ev, 0)
        if type(ev) is not PreEncoded:
            continue  # the slow path is the reference itself
        # puts (and, with the C extension, deletes/merges of a plain batch) come pre-encoded
        assert name in ("put", "delete", "merge") and cf in (0, 3)
        marks = {"batch_seq": 100, "batch_count": len(ops)} if len(ops) > 1 else {}
        value = {"value": v.decode()} if name != "delete" else {}
        want = encode_event(KeyChange(timestamp=42, operation=name, key=k.decode(), cf=cap.cf_names[cf], seq=100 + i, **value, **marks), 0)
        assert got == want


@settings(max_examples=100, deadline=None)
@given(
    origin=st.one_of(_text, st.binary(max_size=300).map(lambda b: b.decode("utf-8", "replace"))),
    n=st.integers(1, 4),
    where=st.sampled_from(["first", "last", "middle"]),
    key=_text,
)
def test_origin_and_batch_marks_fast_equals_struct(origin, n, where, key):
    """cdc-origin: LogData -> origin on every key_change of the record (byte-identical both paths);
    batch_seq/batch_count when it holds more than one change; a marker over 256 bytes is ignored."""
    cap = WalCapture(now_ms=lambda: 7)
    data = [Op(50 + i, "put", 0, key.encode() + b"%d" % i, b"v", None) for i in range(n)]
    data.append(Op(50 + n, "put", 0, b"\xff", b"v", None))  # slow path in the same record
    marker = Op(-1, "log_data", 0, b"cdc-origin:" + origin.encode(), None, None)
    pos = {"first": 0, "last": len(data), "middle": 1}[where]
    ops = data[:pos] + [marker] + data[pos:]
    dec = cap.build([Batch(1, 0, 50, n + 1, ops)])
    assert len(dec.events) == n + 1
    valid = len(origin.encode()) <= 256
    assert dec.bad_origins == (0 if valid else 1)
    for i, ev in enumerate(dec.events):
        got = ev if type(ev) is PreEncoded else encode_event(ev, 0)
        k = key + str(i) if i < n else None
        kw = dict(origin=origin if valid else None, batch_seq=50, batch_count=n + 1)
        if k is None:
            want = encode_event(KeyChange(timestamp=7, operation="put", key="/w==", key_encoding="base64", seq=50 + i, value="v", **kw), 0)
        else:
            want = encode_event(KeyChange(timestamp=7, operation="put", key=k, seq=50 + i, value="v", **kw), 0)
        assert got == want


def test_single_change_has_no_batch_marks_and_origins_per_writer():
    cap = WalCapture(now_ms=lambda: 7)
    one = cap.build([Batch(1, 0, 5, 1, [Op(-1, "log_data", 0, b"cdc-origin:me", None, None), Op(5, "put", 0, b"k", b"v", None)])])
    (ev,) = one.events
    assert b'"seq":5,"origin":"me"}' in ev[0] and b"batch" not in ev[0]
    plain = cap.build([Batch(1, 0, 6, 1, [Op(6, "put", 0, b"k", b"v", None), Op(-1, "log_data", 0, b"other", None, None)])])
    assert b"origin" not in plain.events[0][0]
    # a merged write group: each writer's marker names the changes after it
    grp = [
        Op(-1, "log_data", 0, b"cdc-origin:a", None, None),
        Op(10, "put", 0, b"k1", b"v", None),
        Op(-1, "log_data", 0, b"cdc-origin:b", None, None),
        Op(11, "delete", 0, b"k2", None, None),
    ]
    evs = cap.build([Batch(1, 0, 10, 2, grp)]).events
    assert b'"origin":"a","batch_seq":10,"batch_count":2}' in evs[0][0]
    assert evs[1].origin == "b" and evs[1].batch_seq == 10 and evs[1].batch_count == 2
    bad = cap.build([Batch(1, 0, 12, 1, [Op(-1, "log_data", 0, b"cdc-origin:\xff", None, None), Op(12, "put", 0, b"k", b"v", None)])])
    assert bad.bad_origins == 1 and b"origin" not in bad.events[0][0]


def test_resume_and_rewind_keep_ts_sizes(tmp_path):
    """A checkpoint taken mid-WAL carries the UDT sizes into the resumed reader (and rewinds keep them)."""
    import os

    from cdc.capture.walset import Tail

    wal = tmp_path / "000007.log"
    wal.write_bytes(b"\0" * 200)
    fd = os.open(str(wal), os.O_RDONLY)
    cap = WalCapture()
    try:
        cap.tails[7] = Tail(7, str(wal), fd, os.fstat(fd).st_ino)
        cap._resume = WalCheckpoint(7, 100, 55, 0, ((2, 8),))
        cap.floor = 7
        cap._pick_current()
        assert cap.reader is not None and cap.reader.ts_sizes == {2: 8} and cap.reader.offset == 100
        cap.last_seq = 55
        cp = decode_checkpoint(cap._checkpoint(cap.cur, cap.reader))
        assert cp == WalCheckpoint(7, 100, 55, 0, ((2, 8),))
        cap._rewind(cap.cur, 100, 0)
        assert cap.reader.ts_sizes == {2: 8}
    finally:
        cap.close()
