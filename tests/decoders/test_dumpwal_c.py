"""The optional C renderer of ``cdc dump-wal`` keys only (``cdc.cli._dumpfast``) prints exactly
what the Python paths print.

Every WAL is dumped three ways in-process (general formatter, Python fast path, C) and stdout,
stderr and exit code must be identical (``dump_both``). The cases aim at what only the C code
accepts -- keys and values of any length (1-3 byte varints), fragmented records, multi-Put
batches of varying lengths -- and at the edges where it must stop and leave the record to the
Python reader: non-canonical varints, a wrong count, trailing bytes, an empty batch, a sequence
number overflowing 64 bits, keys JSON escapes, other ops, bad CRCs, cuts, records split across
reads. Without the extension (``python setup.py build_ext --inplace`` builds it) only the Python
paths are compared and the C-only tests are skipped.
"""

from __future__ import annotations

import os
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import batch, physical, varint, varstr, write_log
from .test_dumpwal_fast import MODES, dump_both, dump_mode

needs_c = pytest.mark.skipif("c" not in MODES, reason="cdc.cli._dumpfast is not built")
"""(Without the extension the other tests still compare the Python fast path with the general one.)"""


def put(key: bytes, value: bytes) -> bytes:
    return b"\x01" + varstr(key) + varstr(value)


def write(tmp_path, recs: list[bytes], name: str = "000042.log") -> str:
    path = os.fspath(tmp_path / name)
    with open(path, "wb") as f:
        f.write(write_log(recs))
    return path


@needs_c
def test_crc32c_matches_the_package():
    from crc32c import crc32c

    from cdc.cli import _dumpfast

    rng = random.Random(5)
    for n in list(range(0, 80)) + [1000, 4097, 32768]:
        data = rng.randbytes(n)
        for off in (0, 1, 3):  # unaligned starts
            view = memoryview(data)[off:]
            assert _dumpfast.crc32c(view) == crc32c(bytes(view))
            assert _dumpfast.crc32c_table(view) == crc32c(bytes(view))


@pytest.mark.parametrize("values", [False, True])
def test_lengths_fragments_and_batches(tmp_path, monkeypatch, values):
    rng = random.Random(11)
    recs = []
    seq = 1
    for klen in [0, 1, 127, 128, 129, 300, 16383, 16384, 40000]:
        for vlen in [0, 1, 127, 128, 16384, 70000]:  # 70000: FIRST + MIDDLE + LAST
            recs.append(batch(seq, 1, put(b"k" * klen, b"v" * vlen)))
            seq += 1
    for _ in range(30):  # multi-Put batches of varying lengths, some spanning blocks
        n = rng.randrange(2, 200)
        body = b"".join(put(b"key%d" % rng.randrange(10**rng.randrange(1, 12)), b"x" * rng.randrange(0, 3000)) for _ in range(n))
        recs.append(batch(seq, n, body))
        seq += n
    path = write(tmp_path, recs)
    out, err, code = dump_both(path, monkeypatch, values)
    assert code == 0 and err == "" and out.count(b"\n") == seq - 1


@pytest.mark.parametrize("chunk", [None, 41])  # 41-byte reads: records split across reads
@pytest.mark.parametrize("values", [False, True])
def test_edges_left_to_the_python_reader(tmp_path, monkeypatch, values, chunk):
    import cdc.cli.dumpwal as dumpwal

    if chunk:
        monkeypatch.setattr(dumpwal, "_READ_CHUNK", chunk)
    def noncanonical(n: int) -> bytes:  # n as a 2-byte varint ending in 0x00
        return bytes([n | 0x80, 0])

    good = put(b"good", b"v")
    odd = [
        batch(10, 1, b"\x01" + noncanonical(3) + b"abc" + varstr(b"v")),  # non-canonical key length
        batch(11, 1, b"\x01" + varstr(b"abc") + noncanonical(1) + b"v"),  # non-canonical value length
        batch(12, 2, good),  # count says 2, one record
        batch(13, 1, good + good),  # count says 1, two records
        batch(14, 1, good + b"\x00"),  # trailing byte
        batch(15, 0, b""),  # empty batch
        batch(2**64 - 2, 3, good * 3),  # seq + count overflows 64 bits
        batch(2**64 - 1, 1, good),  # the largest seq: still fine
        batch(16, 1, b"\x01" + varint(5) + b"ab"),  # key runs past the end
        batch(17, 1, b"\x01" + varstr(b"k") + varint(9) + b"v"),  # value runs past the end
        batch(18, 2, good + b"\x00" + varstr(b"gone")),  # a delete in the batch
        batch(19, 1, b"\x05\x01" + varstr(b"k") + varstr(b"v")),  # another column family
        batch(20, 1, put(b'q"uote', b"v")),
        batch(21, 1, put(b"back\\slash", b"v")),
        batch(22, 1, put(b"ctl\x1f", b"v")),
        batch(23, 1, put("ünï".encode(), b"v")),
        batch(24, 1, put(b"\xff\xfe", b"v")),
        batch(25, 1, put(b"del\x7f", b"v")),
        batch(26, 1, b"\x01" + varint(1 << 21) + b"k"),  # a 4-byte varint (and too short)
        batch(33, 1, b"\x01" + varstr(b"k") + bytes([0x85, 0x80, 0x01]) + b"v" * 5),  # 3-byte value length, wrong
        batch(34, 1, b"\x01" + varstr(b"k") + bytes([0x85, 0x80]) + b"v" * 5),  # varint cut short
        batch(35, 1, b"\x01" + varstr(b"k") + bytes([0x85, 0x81]) + b"v" * 132),  # 0x85 alone would fit
        batch(27, 1, put(b"k", b'q"uote')),  # values that JSON escapes or that are not ASCII
        batch(28, 1, put(b"k", b"back\\slash")),
        batch(29, 1, put(b"k", b"ctl\x00")),
        batch(30, 1, put(b"k", "é".encode())),
        batch(31, 1, put(b"k", b"\xff")),
        batch(32, 2, put(b"k", b"ok") + put(b"k2", b"\x7f\x80")),
        b"short",  # not even a header
    ]
    for i, rec in enumerate(odd):
        recs = [batch(100 * i + j, 1, put(b"a%d" % j, b"v")) for j in range(5)] + [rec]
        recs += [batch(100 * i + 50 + j, 1, put(b"b%d" % j, b"v")) for j in range(5)]
        dump_both(write(tmp_path, recs), monkeypatch, values)


def test_framing_edges(tmp_path, monkeypatch):
    rec = batch(7, 1, put(b"key", b"value"))
    cases = {
        "zero padding in a block": physical(1, rec) + b"\x00" * 100 + physical(1, rec),
        "a LAST without FIRST": physical(4, rec) + physical(1, rec),
        "a MIDDLE without FIRST": physical(3, rec),
        "FIRST then FULL": physical(1, rec) + physical(2, rec[:5]) + physical(1, rec),
        "FIRST then FIRST": physical(2, rec[:5]) + physical(2, rec[5:]),
        "FULL between FIRST and LAST": physical(2, rec[:5]) + physical(1, rec[5:9]) + physical(4, rec[9:]),
        "FIRST MIDDLE LAST": physical(2, rec[:5]) + physical(3, rec[5:9]) + physical(4, rec[9:]) + physical(1, rec),
        "recyclable record": physical(1, rec) + physical(5, rec, 42),
        "unknown type": physical(1, rec) + physical(20, rec),
        "metadata record (SetCompressionType)": physical(1, rec) + physical(9, struct.pack("<I", 0)),
        "length past the block": physical(1, rec) + struct.pack("<IHB", 0, 40000, 1) + b"x" * 100,
    }
    for why, data in cases.items():
        path = os.fspath(tmp_path / "000001.log")
        with open(path, "wb") as f:
            f.write(data)
        dump_both(path, monkeypatch)
        dump_both(path, monkeypatch, values=True)
        for cut in range(0, len(data), 3):
            with open(path, "wb") as f:
                f.write(data[:cut])
            dump_both(path, monkeypatch, values=cut % 2 == 0)


@settings(max_examples=80, deadline=None)
@given(
    records=st.lists(
        st.tuples(
            st.integers(1, 40),  # records in the batch
            st.sampled_from([0, 1, 5, 127, 128, 200]),  # key length
            st.sampled_from([0, 3, 127, 128, 5000, 40000]),  # value length
            st.booleans(),  # vary lengths inside the batch
        ),
        min_size=1,
        max_size=25,
    ),
    flips=st.lists(st.integers(0, 10**9), max_size=3),
    cut=st.one_of(st.none(), st.integers(0, 10**9)),
    values=st.booleans(),
)
def test_generated(tmp_path_factory, records, flips, cut, values):
    from _pytest.monkeypatch import MonkeyPatch

    mp = MonkeyPatch()
    try:
        recs = []
        seq = 100
        rng = random.Random(len(records))
        total = 0
        for n, klen, vlen, vary in records:
            body = b""
            for j in range(n):
                k = rng.randrange(0, klen + 1) if vary else klen
                v = rng.randrange(0, vlen + 1) if vary else vlen
                body += put((b"k%d." % j + b"x" * k)[:k], b"v" * v)
            recs.append(batch(seq, n, body))
            seq += n
            total += n
        data = bytearray(write_log(recs))
        for f in flips:
            data[f % len(data)] ^= 1 << (f % 8)
        if cut is not None:
            data = data[: cut % (len(data) + 1)]
        path = os.fspath(tmp_path_factory.mktemp("gen") / "000005.log")
        with open(path, "wb") as fh:
            fh.write(bytes(data))
        out, err, code = dump_both(path, mp, values)
        if not flips and cut is None:
            assert code == 0 and out.count(b"\n") == total
    finally:
        mp.undo()


def test_multi_put_batches_after_a_per_batch_wal(tmp_path, monkeypatch):
    """A store numbered per batch (WritePrepared: data ends with a Noop) in an older WAL: the
    next WAL's multi-Put batches are not rendered per key by the fast paths."""
    d = tmp_path / "wals"
    d.mkdir()
    noop = b"\x0d"
    older = [batch(1, 2, put(b"a", b"1") + put(b"b", b"2") + noop)]  # a Noop is not counted
    newer = [
        batch(2, 3, put(b"c", b"1") + put(b"d", b"2") + put(b"e", b"3")),  # per key (weak evidence)
        batch(5, 1, put(b"f", b"1")),
        batch(6, 2, put(b"g", b"1") + put(b"h", b"2") + b"\x0b" + varstr(b"x")),  # says nothing: the last scheme
    ]
    for name, recs in (("000001.log", older), ("000002.log", newer)):
        with open(d / name, "wb") as f:
            f.write(write_log(recs))
    out, err, code = dump_both(os.fspath(d), monkeypatch)
    assert code == 0 and err == "" and out.count(b"\n") == 10  # the Noop and the Commit have their line
    assert out.splitlines()[-3:-1] == [
        b'{"seq":6,"op":"put","cf":"default","key":"g","wal":2,"offset":58}',
        b'{"seq":7,"op":"put","cf":"default","key":"h","wal":2,"offset":58}',
    ]


@needs_c
def test_dump_mode_c_really_uses_the_extension(tmp_path, monkeypatch):
    import cdc.cli._dumpfast as fast

    calls = []
    real = fast.scan

    def spy(*args):
        got = real(*args)
        calls.append(got[2])
        return got

    monkeypatch.setattr(fast, "scan", spy)
    path = write(tmp_path, [batch(1 + i, 1, put(b"k%d" % i, b"v" * i)) for i in range(300)])
    out, err, code = dump_mode(path, monkeypatch, "c")
    assert code == 0 and sum(calls) == 300
    calls.clear()
    out, err, code = dump_mode(path, monkeypatch, "c", values=True)
    assert code == 0 and sum(calls) == 300 and out.count(b'"value":"') == 300
    calls.clear()
    dump_mode(path, monkeypatch, "python")  # CDC_NO_SPEEDUPS=1
    assert calls == []
