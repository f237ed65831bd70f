"""The C event builder (cdc/format/_speedups/build.c) against its Python reference.

Differential: ``build_events`` gives the same ``Decoded`` (events byte for byte, counters,
last_seq, gaps, rewind, unknown cfs...) and leaves the same numbering state with and without the
extension, on hypothesis-generated batch lists (plain put runs mixed with deletes, markers,
unknown cfs, non-UTF-8 bytes, gaps, rewinds, checkpoints, per-batch numbering) and on a real
store; its JSON strings equal msgspec's and its UTF-8 check equals ``bytes.decode``.
Skipped when the extension is not built (or ``CDC_NO_SPEEDUPS=1``).
"""

from __future__ import annotations

import copy
import os

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cdc.capture.build as build
from cdc.capture.build import build_events, cf_json_map
from cdc.capture.twophase import PreparedSections
from cdc.format.speedups import C
from cdc.format.wal import SEQ_PER_BATCH, SEQ_PER_KEY, Batch, Op, SeqNumbering, WalReader
from cdc.model.events import KeyChange
from cdc.model.wire import PreEncoded, encode_event
from tests.harness.memory import rss_kb

pytestmark = pytest.mark.skipif(C is None, reason="C extension not built (or CDC_NO_SPEEDUPS=1)")

NAMES = {0: "default", 1: "users", 2: 'we"ird\\cf\u2028', 3: "\u00e9t\u00e9"}


# ------------------------------------------------------------------ JSON strings and UTF-8


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_json_str_is_msgspecs(text):
    assert C.json_str(text.encode()) == msgspec.json.encode(text)


def test_json_str_every_ascii_and_specials():
    for c in list(range(0x80)) + [0x7F, 0x2028, 0x2029, 0xFEFF, 0x10FFFF, 0xE9, 0x1F600]:
        s = chr(c) * 3 + "x" * 9 + chr(c)  # inside the 8-byte fast loop and at the end
        assert C.json_str(s.encode()) == msgspec.json.encode(s), hex(c)


BAD_UTF8 = [
    b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xc2", b"\xe0\x80\x80", b"\xe0\x9f\xbf", b"\xed\xa0\x80",
    b"\xed\xbf\xbf", b"\xf0\x80\x80\x80", b"\xf0\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80",
    b"\xff", b"\xfe", b"\xe2\x82", b"\xf0\x9f\x98", b"\xe2\x28\xa1", b"\xc3\x28", b"abcdefgh\xc3",
    b"\xf8\x88\x80\x80\x80", b"\xed\xa0\x80\xed\xb0\x80",  # CESU surrogate pair
]
GOOD_UTF8 = [b"", b"\x7f", b"\xc2\x80", b"\xdf\xbf", b"\xe0\xa0\x80", b"\xed\x9f\xbf", b"\xee\x80\x80", b"\xef\xbf\xbf",
             b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf", "\u2028".encode()]


@pytest.mark.parametrize("b", BAD_UTF8 + GOOD_UTF8, ids=lambda b: b.hex() or "empty")
def test_utf8_edge_cases(b):
    try:
        b.decode()
        ok = True
    except UnicodeDecodeError:
        ok = False
    for pre in (b"", b"12345678", b"1234567"):
        assert C.utf8_valid(pre + b) == ok
        assert C.utf8_valid(pre + b + b"tail0123") == ok


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40) | st.lists(st.sampled_from(BAD_UTF8 + GOOD_UTF8 + [b"a", b"\\", b'"', b"\n"]), max_size=8).map(b"".join))
def test_utf8_check_is_bytes_decode(b):
    try:
        text = b.decode()
    except UnicodeDecodeError:
        assert not C.utf8_valid(b) and C.json_str(b) is None
    else:
        assert C.utf8_valid(b) and C.json_str(b) == msgspec.json.encode(text)


# ------------------------------------------------------------------ build_events both ways


def _norm(e):
    return encode_event(e, 0) if isinstance(e, KeyChange) else e


def heads(ts: int) -> tuple[bytes, ...]:
    return tuple(build.PUT_HEAD.replace(b'"put"', b'"%b"' % o) % ts for o in build._C_OPS)


def run_both(batches, *, names=NAMES, last_seq=-1, last_wal=-1, done=(0, 0), scheme=None, strong=False, ts=1_700_000_000_123):
    res = []
    for use_c in (True, False):
        saved = build._build_plain
        build._build_plain = saved if use_c else None
        try:
            numbering = SeqNumbering(scheme, strong)
            txns = PreparedSections()
            dec = build_events(
                copy.deepcopy(batches), names=names, cf_json=cf_json_map(names), ts=ts, last_seq=last_seq,
                last_wal=last_wal, done=done, numbering=numbering, txns=txns,
            )
        finally:
            build._build_plain = saved
        res.append((dec, (numbering.scheme, numbering.strong, numbering.guessed), dict(txns.txns)))
    (a, na, ta), (b, nb, tb) = res
    # C emits PreEncoded where Python builds a KeyChange Struct (not a put): the same bytes
    assert [type(e) for e in a.events if type(e) not in (PreEncoded, KeyChange)] == [type(e) for e in b.events if type(e) not in (PreEncoded, KeyChange)]
    assert [_norm(e) for e in a.events] == [_norm(e) for e in b.events]
    assert list(a.counts or {}) == list(b.counts or {})  # same insertion order too
    assert a._replace(events=None) == b._replace(events=None)
    assert (na, ta) == (nb, tb)
    return a


_key = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12).map(str.encode),
    st.binary(max_size=12),
    st.sampled_from([b"k", b'"q"', b"back\\slash", b"\x00\x1f\x7f", "\u2028\U0001f600".encode(), b"\xed\xa0\x80"]),
)
_op = st.tuples(st.sampled_from(["put"] * 6 + ["delete", "merge", "single_delete", "delete_range"]), st.sampled_from([0, 0, 1, 2, 3, 9]), _key, _key)


@st.composite
def batch_lists(draw):
    seq = draw(st.integers(0, 50))
    log = 5
    off = 0
    out = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["plain", "plain", "plain", "mixed", "marker", "empty", "gap", "newlog", "rewind"]))
        if kind == "gap":
            seq += draw(st.integers(2, 5))
        elif kind == "newlog":
            log += 1
        elif kind == "rewind":
            log += 1
            seq = max(0, seq - draw(st.integers(1, 5)))
        raw = draw(st.lists(_op, min_size=1, max_size=5))
        if kind in ("plain", "gap", "newlog", "rewind"):
            raw = [("put", cf, k, v) for _, cf, k, v in raw]
        if kind == "empty":
            raw = []
        ops = []
        for j, (name, cf, k, v) in enumerate(raw):
            if name == "put" or name == "merge":
                ops.append(Op(seq + j, name, cf, k, v, None))
            elif name == "delete_range":
                ops.append(Op(seq + j, name, cf, k, None, v))
            else:
                ops.append(Op(seq + j, name, cf, k, None, None))
        count = len(ops)
        if kind == "marker":
            ops.insert(draw(st.integers(0, len(ops))), Op(-1, "log_data", 0, b"cdc-origin:w\xc3\xa9", None, None))
        out.append(Batch(log, off, seq, count, ops))
        off += 100
        seq += count
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch_lists(),
    st.sampled_from([None, SEQ_PER_KEY, SEQ_PER_BATCH]),
    st.integers(-1, 60),
    st.sampled_from([-1, 5, 6]),
    st.tuples(st.sampled_from([0, 5, 6]), st.sampled_from([0, 150, 1000])),
)
def test_build_events_same_both_ways(batches, scheme, last_seq, last_wal, done):
    run_both(batches, scheme=scheme, last_seq=last_seq, last_wal=last_wal, done=done)


def test_plain_runs_go_through_c_and_match_encode_event():
    batches = [Batch(3, i * 10, 100 + 3 * i, 3, [Op(100 + 3 * i + j, "put", j, b"k%d" % j, "v\u00e9\n%d" % i, None) for j in range(3)]) for i in range(50)]
    batches = [b._replace(ops=[o._replace(value=o.value.encode()) for o in b.ops]) for b in batches]
    batches.append(Batch(3, 999, 250, 1, [Op(250, "put", 2, b"solo", b"x", None)]))
    dec = run_both(batches, last_seq=99, last_wal=3)
    assert len(dec.events) == 151 and dec.last_seq == 250
    # the C function took every batch
    events: list = []
    r = C.build_plain(batches, 0, events, {}, cf_json_map(NAMES), heads(7), 99, 3, 0, 0, False, -1, 0, 0)
    assert r[0] == len(batches) and r[1] == 250 and r[6] == 1
    ev = events[4]  # batch 1, op 1
    assert type(ev) is PreEncoded
    kc = KeyChange(timestamp=7, operation="put", key="k1", cf="users", seq=104, batch_seq=103, batch_count=3, value="v\u00e9\n1")
    assert ev == encode_event(kc, 0)
    assert events[-1] == encode_event(KeyChange(timestamp=7, operation="put", key="solo", cf=NAMES[2], seq=250, value="x"), 0)


def test_hand_back_cases_stop_before_the_batch():
    ok = Batch(1, 0, 10, 1, [Op(10, "put", 0, b"a", b"b", None)])
    H = heads(1)
    cases = [
        Batch(1, 10, 11, 1, [Op(11, "put", 9, b"a", b"b", None)]),  # unknown cf
        Batch(1, 10, 11, 1, [Op(11, "put", 0, b"\xff", b"b", None)]),  # binary key
        Batch(1, 10, 11, 1, [Op(11, "put", 0, b"a", b"\xc0\x80", None)]),  # overlong value
        Batch(1, 10, 11, 1, [Op(11, "delete", 0, b"\xfe", None, None)]),  # binary key: base64 in Python
        Batch(1, 10, 11, 1, [Op(11, "delete", 0, b"a", b"v", None)]),  # not what the decoder makes
        Batch(1, 10, 11, 1, [Op(11, "delete_range", 0, b"a", None, None)]),
        Batch(1, 10, 11, 1, [Op(11, "merge", 0, b"a", b"\xff", None)]),
        Batch(1, 10, 11, 1, [Op(11, "put_entity", 0, b"a", b"\x00", None)]),
        Batch(1, 10, 11, 1, [Op(11, "blob_index", 0, b"a", b"\x00", None)]),
        Batch(1, 10, 13, 1, [Op(13, "put", 0, b"a", b"b", None)]),  # gap
        Batch(1, 10, 11, 1, [Op(-1, "log_data", 0, b"x", None, None), Op(11, "put", 0, b"a", b"b", None)]),
        Batch(2, 10, 5, 1, [Op(5, "put", 0, b"a", b"b", None)]),  # rewind
        Batch(1, 10, 11, 1, [Op(11, "put", 0, bytearray(b"a"), b"b", None)]),  # not bytes
        Batch(1, 10, 11, 1, [("put",)]),
        (1, 2, 3),
        Batch(1, 10, 1 << 70, 1, [Op(1 << 70, "put", 0, b"a", b"b", None)]),
    ]
    for bad in cases:
        events: list = []
        r = C.build_plain([ok, bad, ok], 0, events, {}, cf_json_map(NAMES), H, -1, -1, 0, 0, False, -1, 0, 0)
        assert r[0] == 1 and len(events) == 1, bad
    # before the checkpoint, or per-batch numbering with several ops: Python's
    events = []
    assert C.build_plain([ok], 0, events, {}, cf_json_map(NAMES), H, -1, -1, 1, 5, False, -1, 0, 0)[0] == 0
    two = Batch(1, 0, 10, 2, [Op(10, "put", 0, b"a", b"b", None), Op(11, "put", 0, b"a", b"b", None)])
    assert C.build_plain([two], 0, events, {}, cf_json_map(NAMES), H, -1, -1, 0, 0, True, -1, 0, 0)[0] == 0
    assert C.build_plain([ok], 0, events, {}, cf_json_map(NAMES), H, -1, -1, 0, 0, True, -1, 0, 0)[0] == 1
    assert C.build_plain([ok], 0, [], {}, {}, H, 1 << 64, -1, 0, 0, False, -1, 0, 0)[0] == 0  # too big for C


@pytest.mark.integration
def test_real_store_same_both_ways(tmp_path):
    from tests.decoders.conftest import run_writer

    db = str(tmp_path / "db")
    run_writer(
        db,
        """
        db, h = open_db(DB_PATH, cfs=("users", "orders"))
        for b in range(200):
            wb = WriteBatch(raw_mode=True)
            wb.set_default_column_family(db.get_column_family_handle("default"))
            for j in range(10):
                cf = db.get_column_family_handle(("default", "users", "orders")[j % 3])
                k = b"k%05d-%d" % (b, j)
                if j == 7:
                    wb.delete(k, cf)
                else:
                    wb.put(k, b"\\xff" if (b * j) % 17 == 3 else ("v%d\\n\\u00e9" % j).encode(), cf)
            db.write(wb)
        for i in range(1000):
            (db, h["users"], h["orders"])[i % 3].put(b"s%d" % i, b"x" * (i % 300))
        h["users"].put(b"big", b"y" * 70000)
        """,
    )
    logs = sorted(f for f in os.listdir(db) if f.endswith(".log"))
    names = {0: "default", 1: "users"}  # "orders" unknown: those events go the Python way
    for f in logs:
        r = WalReader(int(f[:-4]))
        with open(os.path.join(db, f), "rb") as fh:
            r.feed(fh.read())
        batches = r.read()
        assert len(batches) > 1000
        dec = run_both(batches, names=names)
        assert sum(type(e) is PreEncoded for e in dec.events) > 1000


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_no_leak_over_100k_builds():
    batches = [
        Batch(1, 0, 10, 2, [Op(10, "put", 0, b"k\xc3\xa9", b"v\n", None), Op(11, "put", 1, b"q", b"w", None)]),
        Batch(1, 10, 12, 3, [Op(12, "put", 3, b"k", b"v" * 200, None), Op(13, "delete_range", 1, b"a", None, b"b"), Op(14, "merge", 3, b"m", b"o", None)]),
        Batch(1, 20, 15, 1, [Op(15, "put", 0, b"k", b"\xff", None)]),  # hand-back after emitting
    ]
    cfj = cf_json_map(NAMES)
    H = heads(5)

    def run(n):
        for _ in range(n):
            events: list = []
            C.build_plain(batches, 0, events, {}, cfj, H, 9, 1, 0, 0, False, -1, 0, 0)

    run(20_000)
    before = rss_kb()
    run(100_000)
    grown = rss_kb() - before
    assert grown < 2048, f"RSS grew by {grown} KiB over 100k iterations"


def test_other_operations_are_encode_event_of_the_keychange():
    ops = [
        Op(20, "delete", 1, "d\u00e9".encode(), None, None),
        Op(21, "single_delete", 0, b"s", None, None),
        Op(22, "merge", 2, b"m", "op\u2028\x00".encode(), None),
        Op(23, "delete_range", 3, b"a\"", None, b"z\\"),
    ]
    events: list = []
    counts: dict = {}
    r = C.build_plain([Batch(4, 0, 20, 4, ops)], 0, events, counts, cf_json_map(NAMES), heads(9), 19, 4, 0, 0, False, -1, 0, 0)
    assert r == (1, 23, 4, -1, 0, 0, 1)
    common = dict(timestamp=9, batch_seq=20, batch_count=4)
    want = [
        KeyChange(operation="delete", key="d\u00e9", cf="users", seq=20, **common),
        KeyChange(operation="single_delete", key="s", cf="default", seq=21, **common),
        KeyChange(operation="merge", key="m", cf=NAMES[2], seq=22, value="op\u2028\x00", **common),
        KeyChange(operation="delete_range", key='a"', cf=NAMES[3], seq=23, end_key="z\\", **common),
    ]
    assert events == [encode_event(k, 0) for k in want]
    assert counts == {1: [0, 0, 1, 3, 0, 0, 0, 0], 0: [0, 0, 1, 1, 0, 0, 0, 0], 2: [0, 0, 0, 0, 1, len("op\u2028\x00".encode()) + 1, 0, 0], 3: [0, 0, 0, 0, 0, 0, 1, 4]}


_junk = st.one_of(st.none(), st.integers(-(1 << 70), 1 << 70), st.binary(max_size=4), st.text(max_size=4), st.just("put"), st.just("delete_range"), st.lists(st.integers(), max_size=2), st.floats(allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_junk, _junk, _junk, _junk, st.lists(st.tuples(_junk, _junk, _junk, _junk, _junk, _junk), max_size=3) | _junk), max_size=4))
def test_build_plain_never_crashes_on_odd_objects(raw):
    batches = [Batch(*r) for r in raw]
    events: list = []
    r = C.build_plain(batches, 0, events, {}, cf_json_map(NAMES), heads(3), -1, -1, 0, 0, False, -1, 0, 0)
    assert 0 <= r[0] <= len(batches)
    assert all(type(e) is PreEncoded for e in events)
