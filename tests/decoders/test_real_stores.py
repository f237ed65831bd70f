"""Real RocksDB (rocksdict) and LevelDB (plyvel) files: decoded == written, key by key, seq by seq,
and ``cdc dump-wal`` == ``ldb dump_wal`` record for record."""

from __future__ import annotations

import base64
import json
import os
import random
import re
import subprocess
import sys

import pytest

from cdc.cli.dumpwal import run as dump_run
from cdc.sources.store import detect_store, list_wal_files, load_manifest
from cdc.format.wal import WalReader, decode_entity

from .conftest import ldb_available, run_writer

pytestmark = pytest.mark.integration

CFS = ["users", "orders", "ünïcode cf"]


def make_plan(seed: int = 7, n_batches: int = 300, batch_size: int = 100, singles: int = 3000):
    """A deterministic list of writes: each item is one WriteBatch (a list of ops)."""
    rnd = random.Random(seed)
    plan: list[list[tuple]] = []
    cf_names = ["default", *CFS]

    def key(i: int) -> bytes:
        k = b"key-%08d" % i
        if i % 13 == 0:
            k += b"\xff\xfe\x00"  # not UTF-8
        return k

    i = 0
    for b in range(n_batches):
        ops = []
        for _ in range(batch_size):
            i += 1
            cf = cf_names[i % 4]
            r = rnd.random()
            if r < 0.7:
                ops.append(("put", cf, key(i), b"v%d-" % i + bytes(rnd.randrange(256) for _ in range(rnd.randrange(40)))))
            elif r < 0.9:
                ops.append(("delete", cf, key(i - 5)))
            else:
                ops.append(("delete_range", cf, key(i), key(i + 10)))
        if b % 50 == 0:
            ops.append(("put_entity", "default", key(i) + b"-e", [b"", b"col"], [b"dflt", b"\x00\x01"]))
        plan.append(ops)
    for _ in range(singles):
        i += 1
        plan.append([("put", cf_names[i % 4], key(i), b"s%d" % i)])
    # values over 32 KiB: records spanning blocks
    for n in (33000, 70000, 131072):
        i += 1
        plan.append([("put", "users", key(i), bytes(rnd.randrange(256) for _ in range(n)))])
    plan.append([("delete", "default", key(1)), ("put_entity", "orders", b"ent", [b"a"], [b"b"])])
    return plan


def _enc(ops):
    out = []
    for op in ops:
        out.append([x.hex() if isinstance(x, bytes) else ([y.hex() for y in x] if isinstance(x, list) else x) for x in op])
    return out


WRITER = """
import json
plan = json.loads(sys.stdin.readline()) if False else json.load(open(PLAN))
db, handles = open_db(DB_PATH, recycle=RECYCLE, cfs=CFS)
handles["default"] = db
hx = bytes.fromhex
def cfh(name):
    return db.get_column_family_handle(name)
flush_every = FLUSH_EVERY
for n, ops in enumerate(plan):
    if len(ops) == 1 and ops[0][0] != "put_entity":
        op = ops[0]
        t = handles[op[1]]
        if op[0] == "put":
            t.put(hx(op[2]), hx(op[3]))
        elif op[0] == "delete":
            t.delete(hx(op[2]))
        else:
            t.delete_range(hx(op[2]), hx(op[3]))
    else:
        wb = WriteBatch(raw_mode=True)
        wb.set_default_column_family(cfh("default"))
        for op in ops:
            h = cfh(op[1])
            if op[0] == "put":
                wb.put(hx(op[2]), hx(op[3]), h)
            elif op[0] == "delete":
                wb.delete(hx(op[2]), h)
            elif op[0] == "delete_range":
                wb.delete_range(hx(op[2]), hx(op[3]), h)
            else:
                wb.set_default_column_family(h)
                wb.put_entity(hx(op[2]), [hx(x) for x in op[3]], [hx(x) for x in op[4]])
                wb.set_default_column_family(cfh("default"))
        db.write(wb)
    if flush_every and n % flush_every == flush_every - 1:
        for t in handles.values():
            t.flush()
print(db.latest_sequence_number())
"""


def write_plan(path: str, plan, *, recycle: int = 0, flush_every: int = 0) -> int:
    plan_file = path + ".plan.json"
    with open(plan_file, "w") as f:
        json.dump([_enc(ops) for ops in plan], f)
    body = (
        f"PLAN = {plan_file!r}\nRECYCLE = {recycle}\nCFS = {CFS!r}\nFLUSH_EVERY = {flush_every}\n"
        + WRITER
    )
    out = run_writer(path, body, timeout=120)
    return int(out.split()[0])


def expected_ops(plan):
    """(seq, op, cf, key, value, end_key) in write order, seq from 1."""
    seq = 1
    out = []
    for ops in plan:
        for op in ops:
            if op[0] == "put":
                out.append((seq, "put", op[1], op[2], op[3], None))
            elif op[0] == "delete":
                out.append((seq, "delete", op[1], op[2], None, None))
            elif op[0] == "delete_range":
                out.append((seq, "delete_range", op[1], op[2], None, op[3]))
            else:
                out.append((seq, "put_entity", op[1], op[2], list(zip(op[3], op[4])), None))
            seq += 1
    return out


def decode_dir(path: str):
    info = detect_store(path)
    names = load_manifest(path).cf_names
    got = []
    for number, file_path in list_wal_files(info.wal_dir):
        r = WalReader(number, leveldb=info.kind == "leveldb")
        with open(file_path, "rb") as f:
            r.feed(f.read())
        for b in r.read():
            for op in b.ops:
                value = op.value
                if op.op == "put_entity":
                    value = decode_entity(value)
                got.append((op.seq, op.op, names[op.cf_id], op.key, value, op.end_key))
        assert r.state in ("ok", "end"), (file_path, r.state, r.error)
        assert r.close() is None
    return got


@pytest.fixture(scope="module")
def rich_db(tmp_path_factory):
    path = os.fspath(tmp_path_factory.mktemp("rich") / "db")
    plan = make_plan()
    last = write_plan(path, plan)
    return path, plan, last


def test_decoded_equals_written(rich_db):
    path, plan, last = rich_db
    exp = expected_ops(plan)
    assert len(exp) > 30000 and last == exp[-1][0]
    got = decode_dir(path)
    assert len(got) == len(exp)
    for g, e in zip(got, exp):
        assert g == e
    assert detect_store(path).kind == "rocksdb"
    assert set(load_manifest(path).cf_names.values()) == {"default", *CFS}


def _b(text: str, enc: str | None) -> bytes:
    return base64.b64decode(text) if enc == "base64" else text.encode()


def test_dump_wal_cli_matches_written(rich_db, tmp_path):
    path, plan, _ = rich_db
    out_file = tmp_path / "out.ndjson"
    with open(out_file, "wb") as out:
        import io

        err = io.StringIO()
        assert dump_run(path, values=True, out=out, err=err) == 0, err.getvalue()
    lines = [json.loads(x) for x in out_file.read_bytes().splitlines()]
    exp = expected_ops(plan)
    assert len(lines) == len(exp)
    for rec, e in zip(lines, exp):
        assert rec["seq"] == e[0] and rec["op"] == e[1] and rec["cf"] == e[2]
        assert _b(rec["key"], rec.get("key_encoding")) == e[3]
        if e[1] == "put":
            assert _b(rec["value"], rec.get("value_encoding")) == e[4]
        elif e[1] == "delete_range":
            assert _b(rec["end_key"], rec.get("end_key_encoding")) == e[5]
        elif e[1] == "put_entity":
            cols = [(_b(c["name"], c.get("name_encoding")), _b(c["value"], c.get("value_encoding"))) for c in rec["columns"]]
            assert cols == e[4]


_LDB_OP = re.compile(r"(PUT|DELETE|SINGLE_DELETE|DELETE_RANGE|MERGE)\((\d+)\) : 0x([0-9A-F]*)(?: : 0x([0-9A-F]*)| 0x([0-9A-F]*))?")
_LDB_NAMES = {"PUT": "put", "DELETE": "delete", "SINGLE_DELETE": "single_delete", "DELETE_RANGE": "delete_range", "MERGE": "merge"}


def ldb_records(wal_file: str):
    """[(seq, count, offset, [(op, cf_id, key, value, end_key)])] from `ldb dump_wal`."""
    proc = subprocess.run(
        ["ldb", "dump_wal", f"--walfile={wal_file}", "--print_value"],
        capture_output=True, text=True, timeout=120,
    )
    out = []
    for line in proc.stdout.splitlines():
        m = re.match(r"^(\d+),(\d+),(\d+),(\d+),(.*)$", line)
        if not m:
            continue
        ops = []
        for om in _LDB_OP.finditer(m.group(5)):
            name = _LDB_NAMES[om.group(1)]
            key = bytes.fromhex(om.group(3))
            val = bytes.fromhex(om.group(4)) if om.group(4) is not None else None
            end = bytes.fromhex(om.group(5)) if om.group(5) is not None else None
            ops.append((name, int(om.group(2)), key, val, end))
        out.append((int(m.group(1)), int(m.group(2)), int(m.group(4)), ops))
    return out, proc


def cdc_records(wal_file: str, number: int):
    r = WalReader(number)
    with open(wal_file, "rb") as f:
        r.feed(f.read())
    out = []
    for b in r.read():
        ops = [(o.op, o.cf_id, o.key, o.value, o.end_key) for o in b.ops]
        out.append((b.seq, b.count, b.offset, ops))
    return out, r


@pytest.mark.skipif(not ldb_available(), reason="ldb (rocksdb-tools) not installed")
def test_matches_ldb_dump_wal(tmp_path):
    """ldb 7.8 cannot print wide-column entities, so this store has none."""
    path = os.fspath(tmp_path / "db")
    plan = [[op for op in ops if op[0] != "put_entity"] for op in [0] for ops in make_plan(seed=3, n_batches=60, singles=500)]
    plan = [ops for ops in plan if ops]
    write_plan(path, plan)
    files = list_wal_files(path)
    assert files
    total = 0
    for number, f in files:
        theirs, proc = ldb_records(f)
        ours, reader = cdc_records(f, number)
        assert proc.returncode == 0, proc.stderr
        assert len(theirs) == len(ours)
        for t, o in zip(theirs, ours):
            assert t == o
        total += sum(len(x[3]) for x in ours)
    assert total == sum(len(ops) for ops in plan)
    # and the command line's NDJSON, op by op, against ldb's lines
    import io

    names = load_manifest(path).cf_names
    for number, f in files:
        out, err = io.BytesIO(), io.StringIO()
        assert dump_run(f, values=True, out=out, err=err) == 0, err.getvalue()
        lines = [json.loads(x) for x in out.getvalue().splitlines()]
        theirs, _ = ldb_records(f)
        flat = [
            (seq + k, off, op) for seq, _count, off, ops in theirs for k, op in enumerate(ops)
        ]
        assert len(flat) == len(lines)
        for (seq, off, (name, cf_id, key, val, end)), rec in zip(flat, lines):
            assert (rec["seq"], rec["offset"], rec["wal"], rec["op"], rec["cf"]) == (
                seq, off, number, name, names[cf_id]
            )
            assert _b(rec["key"], rec.get("key_encoding")) == key
            if val is not None:
                assert _b(rec["value"], rec.get("value_encoding")) == val
            if end is not None:
                assert _b(rec["end_key"], rec.get("end_key_encoding")) == end


@pytest.mark.skipif(not ldb_available(), reason="ldb (rocksdb-tools) not installed")
def test_recycled_wals(tmp_path):
    path = os.fspath(tmp_path / "db")
    plan = make_plan(seed=5, n_batches=80, batch_size=40, singles=400)
    plan = [[op for op in ops if op[0] != "put_entity"] for ops in plan]
    plan = [ops for ops in plan if ops]
    write_plan(path, plan, recycle=3, flush_every=50)
    with open(os.path.join(path, "LOG")) as f:
        assert "reusing log" in f.read()  # recycling really happened
    exp = {e[0]: e for e in expected_ops(plan)}
    got = decode_dir(path)
    assert got, "nothing decoded"
    for g in got:
        assert g == exp[g[0]]
    # the writes after the last flush are all there
    last = max(exp)
    assert got[-1][0] == last
    for number, f in list_wal_files(path):
        theirs, proc = ldb_records(f)
        ours, reader = cdc_records(f, number)
        assert reader.state in ("ok", "end")
        assert [t[:3] for t in theirs] == [o[:3] for o in ours]
        assert theirs == ours


def test_leveldb_plyvel(tmp_path):
    path = os.fspath(tmp_path / "ldb")
    body = """
    import plyvel
    db = plyvel.DB(DB_PATH, create_if_missing=True)
    for i in range(2000):
        db.put(b"k%05d" % i, b"v" * (i % 50))
    with db.write_batch() as wb:
        wb.put(b"\\xff\\x00", b"x" * 40000)
        wb.delete(b"k00001")
    db.delete(b"k00002")
    """
    run_writer(path, body)
    info = detect_store(path)
    assert info.kind == "leveldb"
    got = decode_dir(path)
    assert len(got) == 2003
    assert got[0] == (1, "put", "default", b"k00000", b"", None)
    assert got[2000] == (2001, "put", "default", b"\xff\x00", b"x" * 40000, None)
    assert got[2001] == (2002, "delete", "default", b"k00001", None, None)
    assert got[2002] == (2003, "delete", "default", b"k00002", None, None)
    proc = subprocess.run(
        [sys.executable, "-m", "cdc", "dump-wal", path], capture_output=True, text=True
    )
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 2003


def test_compressed_wal_via_options_file(tmp_path):
    """rocksdict has no wal_compression setter: enable it through the OPTIONS file."""
    path = os.fspath(tmp_path / "zdb")
    body = """
    import glob, re
    from rocksdict import Rdict, Options
    o = Options(raw_mode=True); o.create_if_missing(True)
    Rdict(DB_PATH, o).close()
    for f in glob.glob(DB_PATH + "/OPTIONS-*"):
        s = open(f).read()
        s = re.sub(r"wal_compression=\\w+", "wal_compression=kZSTD", s)
        if "wal_compression" not in s:
            s = s.replace("[DBOptions]\\n", "[DBOptions]\\n  wal_compression=kZSTD\\n")
        open(f, "w").write(s)
    opts, cfs = Options.load_latest(DB_PATH)
    db = Rdict(DB_PATH, opts)
    for i in range(500):
        db.put(b"k%d" % i, b"v%d" % i * 300)
    """
    run_writer(path, body)
    files = list_wal_files(path)
    number, f = files[-1]
    r = WalReader(number)
    data = open(f, "rb").read()
    r.feed(data)
    batches = r.read()
    assert r.compression == 7 and r.state == "ok"
    assert len(data) < 500 * 300  # really compressed
    assert [(b.ops[0].key, b.ops[0].value) for b in batches] == [
        (b"k%d" % i, b"v%d" % i * 300) for i in range(500)
    ]


def test_real_wal_split_and_truncated_at_every_byte(tmp_path):
    """A real WAL (small records, a block-spanning value, a CF): any cut -> a prefix of the
    batches + need_more; feeding the rest gives exactly the remaining batches."""
    path = os.fspath(tmp_path / "db")
    run_writer(
        path,
        """
        db, h = open_db(DB_PATH, cfs=["c"])
        db.put(b"a", b"1")
        h["c"].put(b"\\xff", b"x" * 33000)
        db.delete(b"a")
        wb = WriteBatch(raw_mode=True)
        wb.set_default_column_family(db.get_column_family_handle("default"))
        wb.put(b"b", b"2"); wb.delete_range(b"a", b"z")
        db.write(wb)
        """,
    )
    (number, f), = list_wal_files(path)
    data = open(f, "rb").read()
    r = WalReader(number)
    r.feed(data)
    full = r.read()
    assert [b.seq for b in full] == [1, 2, 3, 4] and r.state == "ok"
    step = 1 if len(data) < 2000 else 3
    for cut in range(0, len(data) + 1, step):
        r = WalReader(number)
        r.feed(data[:cut])
        got = r.read()
        assert got == full[: len(got)], cut
        assert r.state in ("ok", "need_more")
        resume = r.offset
        r.feed(data[cut:])
        assert got + r.read() == full
        # a fresh reader from the resume offset
        r2 = WalReader(number, offset=resume)
        r2.feed(data[resume:])
        assert got + r2.read() == full


def test_live_recycled_wal_end_then_fresh_reader(tmp_path):
    """A recycled WAL being written: the reader stops with "end" at the previous life's
    leftovers; a fresh reader from ``offset`` later sees the records written since."""
    from tests.harness.writers import StoreWriter

    path = tmp_path / "db"
    with StoreWriter(path, options={"recycle_log_file_num": 4}) as w:
        for r in range(3):
            for i in range(300):
                w.put(b"r%d-%05d" % (r, i), b"v" * 150)
            w.flush()
        with open(os.path.join(path, "LOG")) as f:
            if "reusing log" not in f.read():
                pytest.skip("this RocksDB did not recycle the WAL")
        first = [w.put(b"live-%d" % i, b"x") for i in range(5)]
        (number, f), = list_wal_files(os.fspath(path))[-1:]
        r = WalReader(number)
        r.feed(open(f, "rb").read())
        got = [b.seq for b in r.read()]
        assert got == first and r.state == "end" and r.error is None
        offset = r.offset
        more = [w.put(b"more-%d" % i, b"y") for i in range(5)]
        r2 = WalReader(number, offset=offset)
        with open(f, "rb") as fh:
            fh.seek(offset)
            r2.feed(fh.read())
        assert [b.seq for b in r2.read()] == more and r2.state == "end"
