"""The keys-only fast path of ``cdc dump-wal`` prints exactly what the general formatter prints.

Every case is dumped twice in-process -- fast path on, and off (CDC_DUMPWAL_NO_FASTPATH) -- and
stdout, stderr and the exit code must be identical. Uniform runs (the fast path) are mixed with
everything that must leave it: other ops and CFs, varying lengths, keys JSON escapes or that are
not ASCII, bad CRCs inside a run, truncation inside a run, fragments, 2-byte value lengths.
"""

from __future__ import annotations

import io
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.cli.dumpwal import run

from .conftest import batch, physical, run_writer, varstr, write_log


def _speedups_built() -> bool:
    try:
        from cdc.cli import _dumpfast
    except ImportError:
        return False
    return hasattr(_dumpfast, "scan")  # the extension (not a stray namespace directory)


MODES = ["general", "python"] + (["c"] if _speedups_built() else [])
"""general: no fast path (CDC_DUMPWAL_NO_FASTPATH); python: the keys-only fast path in Python
(CDC_NO_SPEEDUPS); c: the same with the optional C renderer cdc.cli._dumpfast (when built)."""


def dump_mode(path: str, monkeypatch, mode: str, values: bool = False) -> tuple[bytes, str, int]:
    monkeypatch.delenv("CDC_DUMPWAL_NO_FASTPATH", raising=False)
    monkeypatch.delenv("CDC_NO_SPEEDUPS", raising=False)
    if mode == "general":
        monkeypatch.setenv("CDC_DUMPWAL_NO_FASTPATH", "1")
    elif mode == "python":
        monkeypatch.setenv("CDC_NO_SPEEDUPS", "1")
    out, err = io.BytesIO(), io.StringIO()
    code = run(path, values=values, out=out, err=err)
    monkeypatch.delenv("CDC_DUMPWAL_NO_FASTPATH", raising=False)
    monkeypatch.delenv("CDC_NO_SPEEDUPS", raising=False)
    return out.getvalue(), err.getvalue(), code


def dump_both(path: str, monkeypatch, values: bool = False) -> tuple[bytes, str, int]:
    """Dump in every mode; stdout, stderr and exit code must be identical to the general path's.
    (With ``values``, only the C renderer has a fast path.)"""
    slow = dump_mode(path, monkeypatch, "general", values)
    for mode in MODES[1:]:
        fast = dump_mode(path, monkeypatch, mode, values)
        assert fast[2] == slow[2] and fast[1] == slow[1], mode
        assert fast[0].splitlines() == slow[0].splitlines(), mode
        assert fast[0] == slow[0], mode
    return fast


def puts(keys: list[bytes], vlen: int) -> bytes:
    return b"".join(b"\x01" + varstr(k) + varstr(b"v" * vlen) for k in keys)


def single(seq: int, key: bytes, vlen: int) -> bytes:
    return batch(seq, 1, puts([key], vlen))


def test_real_uniform_and_mixed_wal(tmp_path, monkeypatch):
    db = os.fspath(tmp_path / "db")
    run_writer(
        db,
        """
        db, h = open_db(DB_PATH, cfs=["other"])
        for i in range(3000):                       # uniform single puts
            db[b"key%06d" % i] = b"x" * 100
        for start in range(0, 5000, 500):           # uniform batches
            wb = WriteBatch(raw_mode=True)
            for i in range(start, start + 500):
                wb.put(b"bk%07d" % i, b"y" * 300)   # 2-byte value length
            db.write(wb)
        wb = WriteBatch(raw_mode=True)              # a mixed batch
        for i in range(50):
            wb.put(b"m%d" % i, b"z" * (i % 7))
        wb.delete(b"m3")
        db.write(wb)
        for i in range(500):                         # varying lengths, odd keys, other cf, deletes
            db[b"k" * (i % 20 + 1)] = b"v" * (i % 150)
            if i % 50 == 0:
                h["other"][b"o%d" % i] = b"1"
                del db[b"k"]
                db[b'quote"back\\\\slash'] = b"q"
                db[b"ctl\\x01\\x1f"] = b"c"
                db["ünïcode".encode()] = b"u"
                db[b"\\xff\\xfe"] = b"bin"
        for i in range(3000):                       # uniform again
            db[b"tail%06d" % i] = b"t" * 20
        """,
    )
    out, err, code = dump_both(db, monkeypatch)
    assert code == 0 and err == ""
    assert out.count(b"\n") > 3000 + 5000 + 51 + 500 + 3000


def _uniform_file(tmp_path, n_single: int = 400, vlen: int = 100) -> tuple[str, list[bytes], bytes]:
    recs = [single(100 + i, b"key%06d" % i, vlen) for i in range(n_single)]
    recs.append(batch(100 + n_single, 300, puts([b"bb%05d" % i for i in range(300)], 40)))
    data = write_log(recs)
    path = os.fspath(tmp_path / "000007.log")
    with open(path, "wb") as f:
        f.write(data)
    return path, recs, data


@pytest.mark.parametrize("mode", MODES[1:])
def test_bad_crc_and_truncation_inside_a_run(tmp_path, monkeypatch, mode):
    import cdc.cli.dumpwal as dumpwal

    rendered: list[int] = []
    scan = dumpwal._KeysOnly.records
    batch_fast = dumpwal._KeysOnly.batch

    def spy(self, log):
        got = scan(self, log)
        rendered.extend(x.count(b"\n") for x in got)
        return got

    def spy_batch(self, *args):
        got = batch_fast(self, *args)
        if type(got) is bytes:
            rendered.append(got.count(b"\n"))
        return got

    monkeypatch.setattr(dumpwal._KeysOnly, "records", spy)
    monkeypatch.setattr(dumpwal._KeysOnly, "batch", spy_batch)
    path, recs, data = _uniform_file(tmp_path)
    out, err, code = dump_mode(path, monkeypatch, mode)
    assert code == 0 and out.count(b"\n") == 700
    # the fast path took both kinds of runs (and the record split over two blocks); C in one go
    assert rendered == ([700] if mode == "c" else [400, 300])
    assert out == dump_mode(path, monkeypatch, "general")[0]
    rng = random.Random(7)
    positions = [rng.randrange(len(data)) for _ in range(40)] + [0, 7, 20, 135 * 100 + 3, len(data) - 1]
    for pos in positions:
        bad = bytearray(data)
        bad[pos] ^= 0x10
        with open(path, "wb") as f:
            f.write(bytes(bad))
        dump_both(path, monkeypatch)
    for cut in [1, 50, 135 * 10 + 60, 32768 - 3, 32768 + 10, len(data) - 5] + [rng.randrange(len(data)) for _ in range(20)]:
        with open(path, "wb") as f:
            f.write(data[:cut])
        dump_both(path, monkeypatch)


@pytest.mark.parametrize(
    "key",
    [b'a"b', b"a\\b", b"a\x00b", b"tab\there", b"\x7fdel", "é".encode(), b"\xff", b"pct%s%d%%", b""],
)
def test_keys_that_need_escaping_or_base64(tmp_path, monkeypatch, key):
    recs = [single(1 + i, (key + b"%03d" % i) if i % 2 else key.ljust(len(key) + 3, b"k"), 10) for i in range(100)]
    recs += [single(200 + i, key, 10) for i in range(50)]
    recs.append(batch(300, 20, puts([key] * 20, 5)))
    path = os.fspath(tmp_path / "000003.log")
    with open(path, "wb") as f:
        f.write(write_log(recs))
    out, err, code = dump_both(path, monkeypatch)
    assert code == 0 and out.count(b"\n") == 170


@settings(max_examples=60, deadline=None)
@given(
    klen=st.integers(0, 140),
    vlen=st.sampled_from([0, 1, 100, 127, 128, 129, 300, 16383, 16384]),
    n=st.integers(1, 60),
    seqs=st.sampled_from(["consecutive", "gaps"]),
    odd=st.integers(-1, 59),
    nbatch=st.integers(0, 40),
)
def test_generated_runs(tmp_path_factory, klen, vlen, n, seqs, odd, nbatch):
    from _pytest.monkeypatch import MonkeyPatch

    mp = MonkeyPatch()
    try:
        recs = []
        seq = 10
        for i in range(n):
            key = (b"k%d-" % i).ljust(klen, b"x")[: max(klen, 1)] if klen else b""
            if i == odd:
                recs.append(batch(seq, 1, b"\x00" + varstr(key)))  # a delete in the run
            else:
                recs.append(single(seq, key, vlen))
            seq += 1 if seqs == "consecutive" else 3
        if nbatch:
            recs.append(batch(seq, nbatch, puts([b"%05d" % i for i in range(nbatch)], vlen)))
        path = os.fspath(tmp_path_factory.mktemp("gen") / "000005.log")
        with open(path, "wb") as f:
            f.write(write_log(recs))
        out, err, code = dump_both(path, mp)
        assert code == 0 and out.count(b"\n") == n + nbatch
    finally:
        mp.undo()


def test_fragmented_uniform_batch_and_physical_helpers(tmp_path, monkeypatch):
    big = batch(5, 1000, puts([b"key%010d" % i for i in range(1000)], 100))  # spans 4 blocks
    data = write_log([big, big[:0] or batch(1005, 1, puts([b"x"], 1))])
    assert physical(1, b"") and len(data) > 3 * 32768
    path = os.fspath(tmp_path / "000009.log")
    with open(path, "wb") as f:
        f.write(data)
    out, err, code = dump_both(path, monkeypatch)
    assert code == 0 and out.count(b"\n") == 1001


def test_varying_single_puts_with_flips_and_cuts(tmp_path, monkeypatch):
    """One-Put records of varying lengths (the plain keys-only loop), across blocks."""
    rng = random.Random(3)
    recs = [single(50 + i, b"key%d" % rng.randrange(10**rng.randrange(1, 9)), rng.randrange(0, 300)) for i in range(600)]
    recs.insert(100, batch(2000, 2, puts([b"a", b"bb"], 3)))  # something else in between
    data = write_log(recs)
    path = os.fspath(tmp_path / "000011.log")
    with open(path, "wb") as f:
        f.write(data)
    out, err, code = dump_both(path, monkeypatch)
    assert code == 0 and out.count(b"\n") == 602
    for pos in [rng.randrange(len(data)) for _ in range(40)]:
        bad = bytearray(data)
        bad[pos] ^= 0x04
        with open(path, "wb") as f:
            f.write(bytes(bad))
        dump_both(path, monkeypatch)
    for cut in [rng.randrange(len(data)) for _ in range(20)] + [32768, 32768 + 3]:
        with open(path, "wb") as f:
            f.write(data[:cut])
        dump_both(path, monkeypatch)


@pytest.mark.parametrize("evidence", ["strong", "weak"])
def test_multi_put_batch_after_per_batch_evidence_in_the_same_wal(tmp_path, monkeypatch, evidence):
    """A WritePrepared/Unprepared WAL numbers per batch: after a 2PC marker, a later batch of
    Puts only (uniform, the old Python fast path's case, or varying) is numbered per batch by
    the formatter, so the fast paths must not render it per key (they did: seq 3, 4, 5...
    instead of 3, 3, 3...). After weak evidence (a Noop) the formatter's numbering follows
    each record: the fast paths must leave its state as it would be."""
    keys = [b"k%02d" % i for i in range(5)]
    if evidence == "strong":  # BeginPersistedPrepare ... EndPrepare, then the Commit
        first = [
            batch(1, 2, b"\x12" + puts([b"a", b"b"], 1) + b"\x0a" + varstr(b"x1")),
            batch(2, 0, b"\x0b" + varstr(b"x1")),
        ]
    else:  # data closed by a Noop
        first = [batch(1, 2, puts([b"a", b"b"], 1) + b"\x0d")]
    recs = first + [
        batch(3, 10, puts(keys + keys, 4)),  # uniform: a key repeats -> a new sub-batch
        batch(5, 6, b"".join(b"\x01" + varstr(k) + varstr(b"v" * i) for i, k in enumerate(keys + keys[:1]))),
        batch(7, 1, b"\x0d" + puts([b"c"], 1)),  # says nothing about the scheme
        single(8, b"z", 3),
    ]
    path = os.fspath(tmp_path / "000004.log")
    with open(path, "wb") as f:
        f.write(write_log(recs))
    out, err, code = dump_both(path, monkeypatch)
    assert code == 0 and err == ""
    seqs = [int(line.split(b",")[0][7:]) for line in out.splitlines() if b'"op":"put"' in line]
    # strong evidence holds for the WAL; weak evidence gives way to the next record's (per key)
    assert seqs[2:12] == ([3] * 5 + [4] * 5 if evidence == "strong" else list(range(3, 13)))


@pytest.mark.parametrize("chunk", [32768, 4096, 777])
def test_reads_of_any_size(tmp_path, monkeypatch, chunk):
    """Records split across reads (the LogReader joins their fragments before the batch hook):
    the same bytes whatever the read size, for every kind of record and key."""
    import cdc.cli.dumpwal as dumpwal

    rng = random.Random(chunk)
    recs = []
    seq = 1
    for i in range(700):
        r = rng.random()
        if r < 0.5:
            recs.append(single(seq, b"key%d" % rng.randrange(10**6), rng.choice([0, 5, 100, 127, 128, 300, 16384])))
            seq += 1
        elif r < 0.6:
            n = rng.randrange(2, 30)
            recs.append(batch(seq, n, puts([b"b%06d" % j for j in range(n)], rng.choice([3, 200]))))
            seq += n
        elif r < 0.7:
            recs.append(single(seq, rng.choice([b'q"', b"\xff", "é".encode(), b"a\\b"]), 4))
            seq += 1
        elif r < 0.75:
            recs.append(batch(seq, 1, b"\x00" + varstr(b"gone")))
            seq += 1
        else:
            recs.append(single(seq, b"u%07d" % i, 60))
            seq += 1
    path = os.fspath(tmp_path / "000021.log")
    with open(path, "wb") as f:
        f.write(write_log(recs))
    monkeypatch.setattr(dumpwal, "_READ_CHUNK", chunk)
    for values in (False, True):
        out, err, code = dump_both(path, monkeypatch, values)
        assert code == 0 and err == ""
    monkeypatch.undo()
    assert out == dump_mode(path, monkeypatch, "general", True)[0]  # the default read size
