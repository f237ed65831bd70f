"""The C WAL scanner (cdc/format/_speedups/walscan.c) against its Python reference.

Differential: on every byte vector (hand-built tags, hypothesis WriteBatches, random and corrupted
bytes, splits at every point, real rocksdict / C++ / plyvel stores) the C ``scan_simple`` returns a
prefix of what the Python reader returns and stops at a resume point (a Python reader started
there returns the rest), and ``WalReader`` gives identical batches, state, offset and error with
and without the extension.
Skipped when the extension is not built (or ``CDC_NO_SPEEDUPS=1``).
"""

from __future__ import annotations

import os
import random
import struct

import pytest
from crc32c import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cdc.format.wal as wal
from cdc.format.blocks import LogReader
from cdc.format.speedups import C
from cdc.format.wal import WalReader

from .conftest import batch, physical, run_writer, varint, varstr, write_log
from tests.harness.memory import rss_kb

pytestmark = pytest.mark.skipif(C is None, reason="C extension not built (or CDC_NO_SPEEDUPS=1)")


# ------------------------------------------------------------------ helpers


def scan_c(data: bytes, *, leveldb: bool = False, offset: int = 0, log_number: int = 8):
    """(batches, end offset) of one C scan over a fresh reader fed ``data`` (at file ``offset``)."""
    log = LogReader(log_number, offset=offset, leveldb=leveldb)
    log.feed(data)
    out = wal._scan_simple_c(log, leveldb)
    return out, log.offset


def check_scan(data: bytes, *, leveldb: bool = False, offset: int = 0) -> int:
    """The C run is a prefix of what the Python reader returns (field by field, same types), and
    its end is a resume point: a Python reader started there returns the rest, ending in the same
    state/offset/error. Returns the number of batches C decoded."""
    c_out, c_end = scan_c(data, leveldb=leveldb, offset=offset)
    ref = read_all(data, use_c=False, leveldb=leveldb, offset=offset)
    assert c_out == ref[0][: len(c_out)]
    for cb, pb in zip(c_out, ref[0]):
        assert type(cb) is type(pb) and [type(o) for o in cb.ops] == [type(o) for o in pb.ops]
        assert [tuple(map(type, o)) for o in cb.ops] == [tuple(map(type, o)) for o in pb.ops]
    if c_out:
        rest = read_all(data[c_end - offset :], use_c=False, leveldb=leveldb, offset=c_end, legacy_seen=True)
        assert rest[0] == ref[0][len(c_out) :] and rest[1:] == ref[1:]
    else:
        assert c_end == offset
    return len(c_out)


def read_all(data: bytes, *, use_c: bool, leveldb: bool = False, cuts=(), log_number: int = 8, offset: int = 0, legacy_seen: bool = False):
    """WalReader over ``data`` fed in pieces: (batches, state, offset, error offset/reason).
    ``legacy_seen``: resume after legacy records (a recyclable record is then corruption)."""
    saved = wal._C
    wal._C = C if use_c else None
    try:
        r = WalReader(log_number, leveldb=leveldb, offset=offset)
        r._log._legacy_seen = legacy_seen
        out = []
        prev = 0
        for c in sorted({min(max(c, 0), len(data)) for c in cuts}) + [len(data)]:
            r.feed(data[prev:c])
            out += r.read()
            prev = c
        err = r.error
        return out, r.state, r.offset, (err.offset, err.reason) if err is not None else None
    finally:
        wal._C = saved


def same_both_ways(data: bytes, **kw):
    a = read_all(data, use_c=True, **kw)
    b = read_all(data, use_c=False, **kw)
    assert a == b
    return a


# ------------------------------------------------------------------ CRC32C


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 0xFFFFFFFF))
def test_crc32c_matches_the_package(data, start):
    assert C.crc32c(data) == crc32c(data)
    assert C.crc32c(data, 0, True) == crc32c(data)
    assert C.crc32c(data, start) == crc32c(data, start) == C.crc32c(data, start, True)


def test_crc32c_every_alignment_and_length():
    buf = bytes(random.Random(3).randrange(256) for _ in range(600))
    for start in range(9):
        for n in list(range(0, 40)) + [63, 64, 65, 255, 511]:
            d = buf[start : start + n]
            assert C.crc32c(d) == crc32c(d) == C.crc32c(d, 0, True)
    assert C.crc32c_hw in (0, 1)


# ------------------------------------------------------------------ hand-built vectors

TAG_BODIES = [
    b"\x01" + varstr(b"k") + varstr(b"v"),
    b"\x00" + varstr(b"k"),
    b"\x02" + varstr(b"k") + varstr(b"operand"),
    b"\x04" + varint(3) + varstr(b"k"),
    b"\x05" + varint(300) + varstr(b"k") + varstr(b"v" * 200),
    b"\x06" + varint(2) + varstr(b"k") + varstr(b"m"),
    b"\x07" + varstr(b"k"),
    b"\x08" + varint(1) + varstr(b"k"),
    b"\x0e" + varint(4) + varstr(b"a") + varstr(b"z"),
    b"\x0f" + varstr(b"a") + varstr(b"zz"),
    b"\x01" + varstr(b"") + varstr(b""),
    b"\x01" + varstr(b"\xff\x00k") + varstr(b"\x80" * 20000),  # 3-byte value length
]
# records C leaves to Python (it must stop before their batch)
OTHER_BODIES = [
    b"\x03" + varstr(b"blob"),  # LogData (no seq)
    b"\x0d",  # Noop
    b"\x09",  # BeginPrepare
    b"\x0a" + varstr(b"xid"),
    b"\x0b" + varstr(b"xid"),
    b"\x0c" + varstr(b"xid"),
    b"\x10" + varint(1) + varstr(b"k") + varstr(b"blobidx"),
    b"\x11" + varstr(b"k") + varstr(b"blobidx"),
    b"\x16" + varstr(b"k") + varstr(b"\x01\x00"),
    b"\x17" + varint(1) + varstr(b"k") + varstr(b"\x01\x00"),
    b"\x18" + varstr(b"k") + varstr(b"v" + b"\x00" * 8),
    b"\x19" + varint(1) + varstr(b"k") + varstr(b"v" + b"\x00" * 8),
    b"\x15" + varstr(b"ts") + varstr(b"xid"),
    b"\x12",
    b"\x13",
    b"\x7f",  # unknown
]


@pytest.mark.parametrize("body", TAG_BODIES + OTHER_BODIES, ids=lambda b: b[:3].hex())
@pytest.mark.parametrize("leveldb", [False, True])
def test_every_tag_alone_and_between_puts(body, leveldb):
    seq_data = b"\x01" + varstr(b"a") + varstr(b"b")
    consumes = body[0] not in (0x03, 0x0D, 0x09, 0x0A, 0x0B, 0x0C, 0x15, 0x12, 0x13)
    recs = [batch(5, 1, seq_data), batch(6, 1 if consumes else 0, body), batch(7, 2, seq_data + seq_data), batch(9, 1 + consumes, seq_data + body)]
    data = write_log(recs)
    n = check_scan(data, leveldb=leveldb)
    handled = body in TAG_BODIES and (not leveldb or body[0] in (0, 1))
    if handled:
        assert n == 4  # the big one fragments in the last batch: C joins the fragments
    else:
        assert n == 1
    same_both_ways(data, leveldb=leveldb)


def test_count_mismatch_truncation_and_overflowing_seq_stop_c():
    put = b"\x01" + varstr(b"k") + varstr(b"v")
    for rec in (
        batch(1, 2, put),  # count says 2, one record
        batch(1, 0, put),
        batch(1, 1, put + b"\x01"),  # trailing tag
        batch(1, 1, put[:-1]),  # truncated value
        batch(1, 1, b"\x05" + b"\x80" * 5 + b"\x01" + varstr(b"k") + varstr(b"v")),  # overlong cf varint
        batch(1, 1, b"\x01" + b"\xff\xff\xff\xff\x0f" + b"k"),  # huge key length
        batch((1 << 64) - 1, 1, put),  # numbers past int64: Python only
        batch((1 << 63) - 1, 2, put + put),
        b"\x00" * 11,  # short header
        batch(3, 0, b""),  # empty batch: fine both ways
    ):
        data = write_log([batch(0, 1, put), rec, batch(9, 1, put)])
        check_scan(data)
        same_both_ways(data)


def test_block_boundaries_trailers_fragments_and_offsets():
    # records sized so that some end exactly at a block end, some leave trailers of 0..19 bytes
    recs = []
    for i in range(400):
        ln = 30 + (i * 37) % 180
        recs.append(batch(100 + i, 1, b"\x01" + varstr(b"k%d" % i) + varstr(b"v" * ln)))
    recs.insert(150, batch(10_000, 1, b"\x01" + varstr(b"big") + varstr(b"x" * 70_000)))  # fragments
    data = write_log(recs)
    check_scan(data)
    got = same_both_ways(data)
    assert got[1] == "ok" and len(got[0]) == 401
    # a reader resumed mid-file (base not at a block start of the buffer)
    for cut in (7, 32768 - 5, 32768, 40000):
        r = WalReader(8)
        r.feed(data[:cut])
        r.read()
        off = r.offset
        same_both_ways(data[off:], offset=off)
        check_scan(data[off:], offset=off)


# ------------------------------------------------------------------ hypothesis

_bytes = st.binary(max_size=40)
_cf = st.one_of(st.just(0), st.integers(1, 5), st.integers(0, 1 << 34))
_record = st.one_of(
    st.tuples(st.sampled_from([0x00, 0x07]), _bytes).map(lambda t: bytes([t[0]]) + varstr(t[1])),
    st.tuples(st.sampled_from([0x01, 0x02, 0x0F]), _bytes, _bytes).map(lambda t: bytes([t[0]]) + varstr(t[1]) + varstr(t[2])),
    st.tuples(st.sampled_from([0x04, 0x08]), _cf, _bytes).map(lambda t: bytes([t[0]]) + varint(t[1]) + varstr(t[2])),
    st.tuples(st.sampled_from([0x05, 0x06, 0x0E]), _cf, _bytes, _bytes).map(
        lambda t: bytes([t[0]]) + varint(t[1]) + varstr(t[2]) + varstr(t[3])
    ),
    st.sampled_from(OTHER_BODIES),
    st.binary(min_size=1, max_size=6),  # junk
)
_batch = st.tuples(st.integers(0, (1 << 64) - 1) | st.integers(0, 1000), st.lists(_record, max_size=6), st.integers(-1, 1)).map(
    lambda t: batch(t[0] if t[0] < (1 << 64) else 0, max(0, len(t[1]) + t[2]), b"".join(t[1]))
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_batch, max_size=12), st.booleans(), st.integers(0, 3), st.data())
def test_generated_batches_same_both_ways(batches, leveldb, damage, data):
    raw = write_log(batches)
    if damage == 1 and raw:
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    elif damage == 2 and raw:
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:pos] + bytes([raw[pos] ^ data.draw(st.integers(1, 255))]) + raw[pos + 1 :]
    check_scan(raw, leveldb=leveldb)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=4)) if damage == 3 else ()
    same_both_ways(raw, leveldb=leveldb, cuts=cuts)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.booleans())
def test_random_bytes_same_both_ways(data, leveldb):
    check_scan(data, leveldb=leveldb)
    same_both_ways(data, leveldb=leveldb)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=13, max_size=200), st.booleans())
def test_framed_random_payloads_same_both_ways(payload, leveldb):
    # valid framing + CRC around arbitrary batch bytes: the decoder's errors, not the framing's
    data = physical(1, payload) + physical(1, batch(1, 1, b"\x01" + varstr(b"k") + varstr(b"v")))
    check_scan(data, leveldb=leveldb)
    same_both_ways(data, leveldb=leveldb)


def _stream() -> bytes:
    recs = []
    for i in range(60):
        body = b"\x01" + varstr(b"key%d" % i) + varstr(b"val%d" % i)
        if i % 4 == 1:
            body = b"\x05\x02" + varstr(b"k%d" % i) + varstr(b"v" * (i * 5)) + b"\x00" + varstr(b"d")
            recs.append(batch(100 + i * 10, 2, body))
        elif i % 9 == 4:
            recs.append(batch(100 + i * 10, 1, b"\x03" + varstr(b"cdc-origin:x") + body))
        else:
            recs.append(batch(100 + i * 10, 1, body))
    return write_log(recs)


def test_split_at_every_point():
    data = _stream()
    assert len(data) < 32768
    full = same_both_ways(data)
    assert full[1] == "ok"
    for k in range(len(data) + 1):
        assert read_all(data, use_c=True, cuts=(k,)) == full, k


def test_split_around_block_boundaries():
    recs = [batch(i, 1, b"\x01" + varstr(b"k%d" % i) + varstr(b"v" * (50 + i % 40))) for i in range(700)]
    data = write_log(recs)
    full = same_both_ways(data)
    points = set(range(0, len(data), 211))
    for blk in range(32768, len(data), 32768):
        points.update(range(blk - 40, blk + 40))
    for k in sorted(points):
        assert read_all(data, use_c=True, cuts=(k,)) == full, k
    for k in sorted(points)[::5]:
        assert read_all(data, use_c=True, cuts=(k, k + 3, k + 100)) == full, k


def test_bit_flips_same_both_ways():
    data = _stream()
    for pos in range(0, len(data), 13):
        for bit in (0, 5):
            bad = bytearray(data)
            bad[pos] ^= 1 << bit
            same_both_ways(bytes(bad))
            check_scan(bytes(bad))


# ------------------------------------------------------------------ real stores


def _wal_files(path: str) -> list[str]:
    return sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".log") and f[:-4].isdigit())


def _check_files(path: str, *, leveldb: bool = False) -> int:
    n = c_run = 0
    files = _wal_files(path)
    assert files
    for f in files:
        with open(f, "rb") as fh:
            data = fh.read()
        num = int(os.path.basename(f)[:-4])
        got = same_both_ways(data, leveldb=leveldb, log_number=num)
        assert got[1] in ("ok", "need_more"), got[1:]
        n += len(got[0])
        c_run += check_scan(data, leveldb=leveldb)
        same_both_ways(data, leveldb=leveldb, log_number=num, cuts=range(0, len(data), 4093))
    assert c_run > 0  # the C scanner did decode part of the real files
    return n


@pytest.mark.integration
def test_rocksdict_store_same_both_ways(tmp_path):
    db = str(tmp_path / "db")
    run_writer(
        db,
        """
        db, h = open_db(DB_PATH, cfs=("users", "orders"))
        import random
        rnd = random.Random(5)
        for b in range(300):
            wb = WriteBatch(raw_mode=True)
            wb.set_default_column_family(db.get_column_family_handle("default"))
            for j in range(20):
                cf = db.get_column_family_handle(("default", "users", "orders")[j % 3])
                k = b"k%05d-%d" % (b, j)
                r = rnd.random()
                if r < 0.7:
                    wb.put(k, bytes(rnd.randrange(256) for _ in range(rnd.randrange(60))) if j % 5 == 0 else b"v%d" % j, cf)
                elif r < 0.9:
                    wb.delete(k, cf)
                else:
                    wb.delete_range(k, k + b"\\xff", cf)
            db.write(wb)
        for i in range(2000):
            (db, h["users"], h["orders"])[i % 3].put(b"s%d" % i if i % 7 else b"\\xfe%d" % i, b"x" * (i % 300))
        for n in (33000, 70000, 131072):
            h["users"].put(b"big%d" % n, bytes(rnd.randrange(256) for _ in range(n)))
        for i in range(50):
            db.put(b"after%d" % i, ("ünï%d" % i).encode())
        """,
    )
    assert _check_files(db) > 2000


@pytest.mark.integration
def test_cxx_store_merges_single_deletes_same_both_ways(cxx_writer, tmp_path):
    db = str(tmp_path / "db")
    w = cxx_writer(db, cfs=("c1",))
    lines = []
    for i in range(200):
        lines += [
            f"put default k{i} v{i}",
            f"merge c1 m{i % 7} op{i}",
            f"singledelete default s{i}",
            "batch",
            f"put c1 a{i} %ff%00",
            f"merge default m{i} x",
            f"singledelete c1 a{i}",
            f"deleterange default r{i} r{i}z",
            "end",
        ]
        if i % 50 == 0:
            lines.append(f"logdata cdc-origin:w{i}")
    w.script("\n".join(lines))
    w.crash()
    assert _check_files(db) >= 800


@pytest.mark.integration
def test_leveldb_store_same_both_ways(tmp_path):
    plyvel = pytest.importorskip("plyvel")
    path = str(tmp_path / "ldb")
    db = plyvel.DB(path, create_if_missing=True)
    for i in range(3000):
        db.put(b"k%d" % i, b"v" * (i % 200))
        if i % 3 == 0:
            db.delete(b"k%d" % (i - 1))
    with db.write_batch() as wb:
        for i in range(100):
            wb.put(b"b%d" % i, b"\xff" * i)
            wb.delete(b"k%d" % i)
    db.put(b"huge", b"h" * 100_000)
    # no close: the log stays (LevelDB writes it unbuffered)
    assert _check_files(path, leveldb=True) >= 3000
    db.close()


# ------------------------------------------------------------------ robustness


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_no_leak_over_100k_scans():
    recs = [batch(i, 2, b"\x01" + varstr(b"k%d" % i) + varstr(b"v") + b"\x0f" + varstr(b"a") + varstr(b"b")) for i in range(5)]
    good = write_log(recs)
    stops = write_log(recs[:2] + [batch(9, 1, b"\x03" + varstr(b"x") + b"\x01" + varstr(b"k") + varstr(b"v"))])
    bad = write_log(recs[:3] + [batch(9, 3, b"\x01" + varstr(b"k") + varstr(b"v"))])

    def run(n):
        for _ in range(n):
            for d in (good, stops, bad):
                C.scan_simple(d, 0, 0, 8, False)

    run(20_000)
    before = rss_kb()
    run(100_000)
    grown = rss_kb() - before
    assert grown < 2048, f"RSS grew by {grown} KiB over 100k iterations"


def test_bad_arguments_do_not_crash():
    with pytest.raises(TypeError):
        C.scan_simple(bytearray(b"x" * 30), 0, 0, 8, False)
    assert C.scan_simple(b"x" * 30, 0, 99, 8, False) == ([], 99)
    assert C.scan_simple(b"x" * 30, -5, 0, 8, False) == ([], 0)
    assert C.scan_simple(b"", 0, 0, 8, False) == ([], 0)
    d = write_log([batch(1, 1, b"\x01" + varstr(b"k") + varstr(b"v"))])
    # a window starting mid-block (base not block-aligned)
    out, end = C.scan_simple(d, 32768 * 3 + 100, 0, 8, False)
    assert end == len(d) and out[0].offset == 32768 * 3 + 100
    with pytest.raises(TypeError):
        C.set_wal_types(tuple, dict)
    assert struct.calcsize("<QI") == 12


# ------------------------------------------------------------------ fragments (C joins the writer's shape)


def _fragmented_stream() -> bytes:
    recs = []
    for i in range(14):
        n = (5_000, 20_000, 33_000, 70_000, 100)[i % 5] + i
        recs.append(batch(1000 + i * 3, 2, b"\x01" + varstr(b"k%d" % i) + varstr(bytes([i]) * n) + b"\x00" + varstr(b"d%d" % i)))
    return write_log(recs)


def test_fragment_chains_same_both_ways_under_damage_and_splits():
    data = _fragmented_stream()
    full = same_both_ways(data)
    assert full[1] == "ok" and len(full[0]) == 14
    assert check_scan(data) == 14
    heads = [blk + d for blk in range(0, len(data), 32768) for d in (0, 4, 5, 6, 7, 8)]
    for pos in heads + list(range(0, len(data), 4999)):
        if pos >= len(data):
            continue
        bad = bytearray(data)
        bad[pos] ^= 0x41
        same_both_ways(bytes(bad))
        check_scan(bytes(bad))
        check_scan(data[:pos])
        same_both_ways(data[:pos])
    for k in heads[::2]:
        assert read_all(data, use_c=True, cuts=(k, k + 1, k + 32768)) == full, k


def test_fragments_not_in_the_writers_shape_go_to_python():
    put = batch(7, 1, b"\x01" + varstr(b"k") + varstr(b"v" * 50))
    ok = physical(1, batch(1, 1, b"\x01" + varstr(b"a") + varstr(b"b")))
    cases = [
        physical(2, put[:20]) + physical(4, put[20:]),  # FIRST + LAST inside one block (valid for the reader)
        physical(2, put[:20]) + physical(3, put[20:30]) + physical(4, put[30:]),
        physical(2, put[:20]) + physical(1, put),  # FULL inside a fragment: corrupt
        physical(4, put),  # LAST without FIRST: corrupt
        physical(3, put),
        physical(2, put[:20]),  # FIRST then nothing: need_more
        b"\x00" * 7 + ok,  # zero header
        physical(9, b"\x00\x00\x00\x00") + ok,  # compression type
        physical(5, put, 8),  # recyclable
    ]
    for case in cases:
        data = ok + case + ok
        check_scan(data)
        same_both_ways(data)
    # a FIRST filling its block, then a LAST that is too long / a MIDDLE that does not fill its block
    pad = ok * ((32768 - 200) // len(ok))
    room = 32768 - len(pad) - 7
    big = batch(9, 1, b"\x01" + varstr(b"big") + varstr(b"z" * 20000))
    first = physical(2, big[:room])
    for tail in (physical(4, big[room:]), physical(3, big[room : room + 100]) + physical(4, big[room + 100 :]), physical(1, big[room:])):
        data = pad + first + tail + ok
        check_scan(data)
        same_both_ways(data)
    assert check_scan(pad + first + physical(4, big[room:]) + ok) == len(pad) // len(ok) + 2


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(-5, 1 << 40), st.integers(-5, 310), st.booleans())
def test_scan_simple_never_crashes_on_any_window(data, base, i, leveldb):
    prefix = write_log([batch(1, 1, b"\x01" + varstr(b"k") + varstr(b"v"))])
    for buf in (data, prefix + data):
        out, end = C.scan_simple(buf, base, i, 8, leveldb)
        assert end == i if (out == [] and (i < 0 or i > len(buf) or base < 0)) else end >= i
