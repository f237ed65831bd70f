"""origin / batch_seq / batch_count end to end: a real RocksDB written by a small C++ program
(rocksdict has no PutLogData), the real daemon capturing it, a real WebSocket subscriber."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.harness.net import recv_events, recv_json

WRITER = r"""
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <cstdio>
#include <string>
using namespace ROCKSDB_NAMESPACE;
int main(int argc, char** argv) {
  Options o; o.create_if_missing = true;
  DB* db; if (!DB::Open(o, argv[1], &db).ok()) return 1;
  WriteOptions w;
  WriteBatch a;  // marker first: origin on all three, batch marks
  a.PutLogData("cdc-origin:tab-42"); a.Put("a1", "v"); a.Put("a2", "v"); a.Delete("a3");
  if (!db->Write(w, &a).ok()) return 2;
  WriteBatch b;  // one change, marker last: origin, no batch marks
  b.Put("b1", "v"); b.PutLogData("cdc-origin:\xc3\xa9t\xc3\xa9");
  if (!db->Write(w, &b).ok()) return 2;
  WriteBatch c;  // two changes, no marker (a foreign LogData): batch marks only
  c.PutLogData("something else"); c.Put("c1", "v"); c.Delete("c2");
  if (!db->Write(w, &c).ok()) return 2;
  WriteBatch d;  // a marker that is too long: ignored (and logged once)
  d.PutLogData("cdc-origin:" + std::string(257, 'x')); d.Put("d1", "v");
  if (!db->Write(w, &d).ok()) return 2;
  if (!db->Put(w, "e1", "v").ok()) return 2;  // a plain single put
  db->SyncWAL();
  delete db;
  return 0;
}
"""


@pytest.fixture(scope="module")
def writer_bin(tmp_path_factory: Any) -> Path:
    if not shutil.which("g++") or not os.path.isdir("/usr/include/rocksdb"):
        pytest.skip("g++ and librocksdb-dev are needed for the C++ writer")
    d = tmp_path_factory.mktemp("cxx")
    src = d / "origin_writer.cc"
    src.write_text(WRITER)
    exe = d / "origin_writer"
    subprocess.run(["g++", "-std=c++17", "-O0", str(src), "-o", str(exe), "-lrocksdb"], check=True, timeout=240)
    return exe


async def test_origin_and_batch_marks_from_a_real_store(writer_bin: Path, tmp_path: Path, daemon_factory: Any, caplog: Any) -> None:
    db = tmp_path / "store"
    subprocess.run([str(writer_bin), str(db)], check=True, timeout=60)
    d = await daemon_factory(components=None, db=str(db))
    async with d.connect("since=0&types=key_change") as ws:
        await recv_json(ws)
        evs = await recv_events(ws, 8, timeout=20)
    by_key = {e["key"]: e for e in evs}
    a_seq = by_key["a1"]["seq"]
    for k in ("a1", "a2", "a3"):
        assert by_key[k]["origin"] == "tab-42" and by_key[k]["batch_seq"] == a_seq and by_key[k]["batch_count"] == 3
    assert by_key["a3"]["operation"] == "delete"
    assert by_key["b1"]["origin"] == "\u00e9t\u00e9" and "batch_seq" not in by_key["b1"] and "batch_count" not in by_key["b1"]
    c1, c2 = by_key["c1"], by_key["c2"]
    assert "origin" not in c1 and c1["batch_seq"] == c1["seq"] and c1["batch_count"] == 2 and c2["batch_seq"] == c1["seq"]
    assert "origin" not in by_key["d1"] and "batch_count" not in by_key["d1"]
    assert set(by_key["e1"]) >= {"id", "seq"} and "origin" not in by_key["e1"] and "batch_seq" not in by_key["e1"]
    assert [r.message for r in caplog.records if "cdc-origin" in r.message][:1], "the ignored marker is logged"
    assert "cdc_origin_markers_ignored_total 1.0" in d.ctx.metrics.render().decode()
