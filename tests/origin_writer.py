"""A RocksDB writer that marks its WriteBatches with ``cdc-origin:`` LogData (rocksdict has no
PutLogData): a small C++ program compiled with g++ against librocksdb, driven over stdin.

Each stdin line is one WriteBatch: ``ORIGIN KEY VALUE [KEY VALUE ...]`` (ORIGIN ``-``: no marker;
VALUE ``-``: a delete). The program answers ``ok <latest seq>`` per line and keeps the DB open
until stdin closes (then it exits without flushing: the WAL stays for cdc).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SOURCE = r"""
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <iostream>
#include <unistd.h>
#include <sstream>
#include <string>
#include <rocksdb/comparator.h>
using namespace ROCKSDB_NAMESPACE;
// rocksdict stores its (bytewise) comparator under the name "rocksdict"
class Named : public Comparator {
 public:
  const char* Name() const override { return "rocksdict"; }
  int Compare(const Slice& a, const Slice& b) const override { return BytewiseComparator()->Compare(a, b); }
  void FindShortestSeparator(std::string* s, const Slice& l) const override { BytewiseComparator()->FindShortestSeparator(s, l); }
  void FindShortSuccessor(std::string* k) const override { BytewiseComparator()->FindShortSuccessor(k); }
};
int main(int argc, char** argv) {
  Options o; o.create_if_missing = true;
  DB* db; Status st = DB::Open(o, argv[1], &db);
  if (!st.ok() && st.ToString().find("rocksdict") != std::string::npos) {
    static Named named; o.comparator = &named;
    st = DB::Open(o, argv[1], &db);
  }
  if (!st.ok()) { std::cerr << st.ToString() << std::endl; return 1; }
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string origin, k, v;
    in >> origin;
    WriteBatch b;
    if (origin != "-") b.PutLogData("cdc-origin:" + origin);
    while (in >> k >> v) { if (v == "-") b.Delete(k); else b.Put(k, v); }
    st = db->Write(WriteOptions(), &b);
    std::cout << (st.ok() ? "ok " : "error ") << db->GetLatestSequenceNumber() << std::endl;
  }
  _exit(0);  // no close: the WAL stays on disk for cdc
}
"""


def build(directory: Path) -> Path | None:
    """Compile the writer into ``directory``; None when g++ or librocksdb-dev is missing."""
    if not shutil.which("g++") or not os.path.isdir("/usr/include/rocksdb"):
        return None
    src = directory / "origin_writer.cc"
    exe = directory / "origin_writer"
    if not exe.exists():
        src.write_text(SOURCE)
        subprocess.run(["g++", "-std=c++17", "-O0", str(src), "-o", str(exe), "-lrocksdb"], check=True, timeout=240)
    return exe


class OriginWriter:
    """``with OriginWriter(exe, db) as w: w.batch("tab-1", ("k", "v"), ("k2", None))``."""

    def __init__(self, exe: Path, db: Path | str) -> None:
        self.proc = subprocess.Popen([str(exe), str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def batch(self, origin: str | None, *pairs: tuple[str, str | None]) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        words = [origin or "-"] + [w for k, v in pairs for w in (k, v if v is not None else "-")]
        self.proc.stdin.write(" ".join(words) + "\n")
        answer = self.proc.stdout.readline().split()
        assert answer and answer[0] == "ok", answer
        return int(answer[1])

    def __enter__(self) -> OriginWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
