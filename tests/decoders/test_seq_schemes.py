"""Sequence numbering schemes (issue 9 items 1, 5, 12 for the decoders and ``cdc dump-wal``).

Pure tests of cdc.wal's per-batch numbering and scheme detection on hand-built WriteBatches, and
``cdc dump-wal`` on real stores written by the C++ writer, compared with GetAllKeyVersions.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.cli.dumpwal import run
from cdc.format.wal import (
    SEQ_PER_BATCH,
    SEQ_PER_KEY,
    SeqNumbering,
    decode_write_batch,
    number_per_batch,
    seq_scheme_evidence,
)

from .conftest import batch, varint, varstr

PUT, DELETE, MERGE, CF_PUT, NOOP = 0x01, 0x00, 0x02, 0x05, 0x0D
BEGIN_PREPARE, END_PREPARE, COMMIT, ROLLBACK, BEGIN_PERSISTED, BEGIN_UNPREPARE = 0x09, 0x0A, 0x0B, 0x0C, 0x12, 0x13


def put(k: bytes, v: bytes = b"v", cf: int = 0) -> bytes:
    return (bytes([CF_PUT]) + varint(cf) if cf else bytes([PUT])) + varstr(k) + varstr(v)


def rec(seq: int, *parts: bytes) -> Any:
    count = sum(1 for p in parts if p[0] in (PUT, DELETE, MERGE, CF_PUT))
    return decode_write_batch(batch(seq, count, b"".join(parts)))


NOOP_B = bytes([NOOP])


def seqs(ops: list[Any]) -> list[tuple[bytes, int]]:
    return [(op.key, op.seq) for op in ops if op.seq >= 0]


def test_per_batch_one_number_per_sub_batch() -> None:
    # the issue's repro as WritePrepared logs it: {a, b} + Noop, then Noop + c + Noop
    b1 = rec(1, put(b"a"), put(b"b"), NOOP_B)
    ops, consumed = number_per_batch(b1)
    assert seqs(ops) == [(b"a", 1), (b"b", 1)] and consumed == 1
    b2 = rec(2, NOOP_B, put(b"c"), NOOP_B)
    ops, consumed = number_per_batch(b2)
    assert seqs(ops) == [(b"c", 2)] and consumed == 1


def test_repeated_key_starts_a_sub_batch_per_cf() -> None:
    b = rec(10, put(b"a"), put(b"a", cf=1), put(b"b"), put(b"a"), put(b"b"), put(b"c"), NOOP_B)
    ops, consumed = number_per_batch(b)
    assert [op.seq for op in ops if op.seq >= 0] == [10, 10, 10, 11, 11, 11]
    assert consumed == 2


def test_markers_are_boundaries() -> None:
    xid = varstr(b"x1")
    prepare = rec(4, bytes([BEGIN_PERSISTED]), put(b"d"), put(b"d"), put(b"e"), bytes([END_PREPARE]) + xid)
    ops, consumed = number_per_batch(prepare)
    assert seqs(ops) == [(b"d", 4), (b"d", 5), (b"e", 5)] and consumed == 2
    commit = rec(8, bytes([COMMIT]) + xid)
    assert number_per_batch(commit)[1] == 1
    rollback = rec(7, bytes([DELETE]) + varstr(b"f"), bytes([ROLLBACK]) + xid)
    ops, consumed = number_per_batch(rollback)
    assert seqs(ops) == [(b"f", 7)] and consumed == 1
    # a merged write group: a leading Noop placeholder is no boundary, one after data is
    group = rec(20, NOOP_B, put(b"a"), NOOP_B, NOOP_B, put(b"a"), NOOP_B, bytes([COMMIT]) + xid)
    ops, consumed = number_per_batch(group)
    assert seqs(ops) == [(b"a", 20), (b"a", 21)] and consumed == 3


def test_evidence() -> None:
    xid = varstr(b"x")
    assert seq_scheme_evidence(rec(1, bytes([BEGIN_PERSISTED]), put(b"a"), bytes([END_PREPARE]) + xid)) == (SEQ_PER_BATCH, True)
    assert seq_scheme_evidence(rec(1, bytes([BEGIN_UNPREPARE]), put(b"a"), bytes([END_PREPARE]) + xid)) == (SEQ_PER_BATCH, True)
    assert seq_scheme_evidence(rec(1, bytes([BEGIN_PREPARE]), put(b"a"), bytes([END_PREPARE]) + xid)) == (SEQ_PER_KEY, True)
    assert seq_scheme_evidence(rec(1, put(b"a"), put(b"b"))) == (SEQ_PER_KEY, False)  # plain DB
    assert seq_scheme_evidence(rec(1, NOOP_B, put(b"a"), put(b"b"))) == (SEQ_PER_KEY, False)  # WriteCommitted
    assert seq_scheme_evidence(rec(1, put(b"a"), put(b"b"), NOOP_B)) == (SEQ_PER_BATCH, False)  # WritePrepared
    assert seq_scheme_evidence(rec(1, bytes([COMMIT]) + xid)) == (None, False)


def test_numbering_state_strong_beats_weak() -> None:
    n = SeqNumbering()
    xid = varstr(b"x")
    assert n.number(rec(1, bytes([BEGIN_PERSISTED]), put(b"a"), bytes([END_PREPARE]) + xid))[0] == SEQ_PER_BATCH
    # a record that ends in data contradicts weakly: the strong decision stands
    scheme, ops, consumed = n.number(rec(2, put(b"a"), put(b"b")))
    assert scheme == SEQ_PER_BATCH and consumed == 1
    # a record that says nothing uses the store's scheme
    scheme, ops, consumed = n.number(rec(3, put(b"a"), put(b"b"), bytes([ROLLBACK]) + xid))
    assert scheme == SEQ_PER_BATCH and seqs(ops) == [(b"a", 3), (b"b", 3)] and n.guessed == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from([b"a", b"b", b"c"])), min_size=1, max_size=12), st.integers(1, 1 << 40))
def test_per_batch_properties(keys: list[tuple[int, bytes]], seq0: int) -> None:
    """Numbers never decrease, start at the header, change exactly at repeated (cf, key)."""
    b = rec(seq0, *(put(k, cf=cf) for cf, k in keys), NOOP_B)
    ops, consumed = number_per_batch(b)
    got = [op.seq for op in ops if op.seq >= 0]
    assert got[0] == seq0 and got == sorted(got)
    seen: set[tuple[int, bytes]] = set()
    cur = seq0
    for (cf, k), s in zip(keys, got):
        if (cf, k) in seen:
            cur += 1
            seen = set()
        seen.add((cf, k))
        assert s == cur
    assert consumed == cur - seq0 + 1
    if len(keys) == 1:  # one data record: both schemes agree
        assert got == [op.seq for op in decode_write_batch(batch(seq0, 1, put(keys[0][1], cf=keys[0][0]))).ops]


# ---------------------------------------------------------------------------- dump-wal on real stores


def dump(path: str, *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    out, err = io.BytesIO(), io.StringIO()
    db = extra[1] if extra[:1] == ("--db",) else None
    code = run(path, out=out, err=err, db=db)
    return code, [json.loads(x) for x in out.getvalue().splitlines()], err.getvalue()


DATA_OPS = {"put": "put", "delete": "delete", "merge": "merge", "single_delete": "single_delete"}


def data_records(records: list[dict[str, Any]]) -> Counter[tuple[str, bytes, int, str]]:
    out: Counter[tuple[str, bytes, int, str]] = Counter()
    for r in records:
        if r["op"] in DATA_OPS:
            out[(r["cf"], r["key"].encode(), r["seq"], r["op"])] += 1
    return out


SCRIPT = """
    batch
    put default a 1
    put c1 a 1
    put default b 2
    put default a 3
    merge default m x
    end
    put default c 3
    txn t1
    put default d 4
    put default d 5
    put c1 e 6
    end
    commit t1
    singledelete default c
    logdata blob
    batch
    delete default b
    put default z 1
    put default z 2
    end
"""


@pytest.mark.parametrize("policy", ["none", "committed", "prepared", "unprepared"])
def test_dump_wal_prints_the_stores_seqs(cxx_writer: Any, tmp_path: Any, policy: str) -> None:
    db = str(tmp_path / "db")
    w = cxx_writer(db, policy=policy, cfs=("c1",))
    script = SCRIPT if policy != "none" else "\n".join(ln for ln in SCRIPT.splitlines() if "txn" not in ln and "commit" not in ln)
    w.script(script)
    if policy in ("prepared", "unprepared"):  # 2PC data is numbered at prepare time: exact too
        w.script("txn t2\nput default p 1\nput default p 2\nend\nprepare t2\ncommit t2")
    rep = w.report()
    w.crash()
    code, records, err = dump(db)
    assert code == 0, err
    assert data_records(records) == Counter((cf, k, s, t) for cf, k, s, t, _v in rep.versions)


def test_dump_wal_db_option_names_cfs_of_a_separate_wal_dir(cxx_writer: Any, tmp_path: Any) -> None:
    db, wal_dir = str(tmp_path / "db"), str(tmp_path / "wal")
    w = cxx_writer(db, cfs=("users",), wal_dir=wal_dir)
    w.script("put users k1 v\nput default k2 v")
    w.crash()
    code, records, _ = dump(wal_dir)
    assert code == 0 and {r["cf"] for r in records} == {"cf1", "default"}  # no MANIFEST there
    code, records, err = dump(wal_dir, "--db", db)
    assert code == 0, err
    assert [(r["cf"], r["key"]) for r in records] == [("users", "k1"), ("default", "k2")]
    (wal,) = os.listdir(wal_dir)
    code, records, err = dump(os.path.join(wal_dir, wal), "--db", db)
    assert code == 0 and records[0]["cf"] == "users"
    # the command line, and a --db that is not a store
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    p = subprocess.run([sys.executable, "-m", "cdc", "dump-wal", wal_dir, "--db", db], capture_output=True, env=env, timeout=60)
    assert p.returncode == 0 and b'"cf":"users"' in p.stdout
    p = subprocess.run([sys.executable, "-m", "cdc", "dump-wal", wal_dir, "--db", str(tmp_path / "nope")], capture_output=True, env=env, timeout=60)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and b"Traceback" not in p.stderr
    # CDC_DB (set for `serve`) does not override the MANIFEST of a PATH that is a store itself
    w2 = cxx_writer(str(tmp_path / "db2"), cfs=("users",))
    w2.script("put users k v")
    w2.crash()
    env2 = dict(env, CDC_DB=str(tmp_path / "nope"))
    p = subprocess.run([sys.executable, "-m", "cdc", "dump-wal", str(tmp_path / "db2")], capture_output=True, env=env2, timeout=60)
    assert p.returncode == 0 and b'"cf":"users"' in p.stdout, p.stderr


def _torn_store(cxx_writer: Any, db: str, archive: bool) -> str:
    w = cxx_writer(db, wal_ttl=3600 if archive else 0)
    w.send(*(f"put default k{i:03d} v{i}" for i in range(10)))
    w.crash()
    (wal,) = [f for f in os.listdir(db) if f.endswith(".log")]
    path = os.path.join(db, wal)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 5)
    w2 = cxx_writer(db, wal_ttl=3600 if archive else 0)
    w2.send(*(f"put default n{i:03d} v" for i in range(3)))
    w2.crash()
    return wal


def test_dump_wal_torn_tail_continued_is_clean(cxx_writer: Any, tmp_path: Any) -> None:
    db = str(tmp_path / "db")
    wal = _torn_store(cxx_writer, db, archive=True)
    archived = os.path.join(db, "archive", wal)
    assert os.path.isfile(archived), os.listdir(db)  # the writer archived the torn WAL
    code, records, err = dump(db)
    assert code == 0, err
    assert "torn last record" in err
    assert [r["seq"] for r in records] == list(range(1, 13))  # 9 good + 3 after the reopen
    code, records, err = dump(archived)  # the lone archived file: its continuation is found
    assert code == 0, err
    assert [r["seq"] for r in records] == list(range(1, 10))


def test_dump_wal_torn_tail_without_continuation_still_fails(cxx_writer: Any, tmp_path: Any) -> None:
    db = str(tmp_path / "db")
    wal = _torn_store(cxx_writer, db, archive=True)
    alone = tmp_path / "alone"
    alone.mkdir()
    src = os.path.join(db, "archive", wal)
    with open(src, "rb") as f, open(alone / wal, "wb") as g:
        g.write(f.read())
    code, _records, err = dump(str(alone / wal))
    assert code == 1 and "truncated" in err


def test_strong_evidence_is_scoped_to_its_wal() -> None:
    """A WritePrepared store reopened as a plain DB (new WAL): its plain batches are per key."""
    n = SeqNumbering()
    xid = varstr(b"x")
    n.number(rec(1, bytes([BEGIN_PERSISTED]), put(b"a"), bytes([END_PREPARE]) + xid))
    n.new_wal()
    scheme, ops, consumed = n.number(rec(5, put(b"a"), put(b"b")))
    assert scheme == SEQ_PER_KEY and seqs(ops) == [(b"a", 5), (b"b", 6)] and consumed == 2




@pytest.mark.parametrize("policy", ["none", "committed", "prepared", "unprepared"])
def test_dump_wal_write_groups(cxx_writer: Any, tmp_path: Any, policy: str) -> None:
    """Concurrent writers (merged write groups): the store's numbers for every record;
    WriteCommitted prepared records (printed where they were prepared) get ``commit.seq + i``."""
    db = str(tmp_path / "db")
    w = cxx_writer(db, policy=policy)
    w.send("parallel 8 100")
    rep = w.report()
    w.crash()
    code, records, err = dump(db)
    assert code == 0, err
    got: Counter[tuple[bytes, int]] = Counter()
    section: list[bytes] | None = None
    sections: dict[str, list[bytes]] = {}
    for r in records:
        if r["op"] == "begin_prepare":
            section = []
        elif r["op"] == "end_prepare":
            sections[r["key"]] = section or []
            section = None
        elif r["op"] == "commit" and r["key"] in sections:
            for i, k in enumerate(sections.pop(r["key"])):
                got[(k, r["seq"] + i)] += 1
        elif r["op"] == "put":
            if section is not None:
                section.append(r["key"].encode())
            else:
                got[(r["key"].encode(), r["seq"])] += 1
    assert got == Counter((k, s) for _cf, k, s, _t, _v in rep.versions)


def test_undecidable_record_is_numbered_and_flagged() -> None:
    """Nothing seen yet and a record that says nothing, whose numbers differ between the
    schemes: numbered per key (never dropped) and counted in ``guessed``."""
    n = SeqNumbering()
    scheme, ops, consumed = n.number(rec(3, put(b"a"), put(b"b"), bytes([ROLLBACK]) + varstr(b"x")))
    assert scheme == SEQ_PER_KEY and seqs(ops) == [(b"a", 3), (b"b", 4)] and n.guessed == 1
    n2 = SeqNumbering()
    n2.number(rec(1, bytes([COMMIT]) + varstr(b"x")))  # says nothing, but numbers nothing either
    assert n2.guessed == 0
