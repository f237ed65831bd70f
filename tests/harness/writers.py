"""The store writers for everyone's tests and benches.

- :class:`StoreWriter`: rocksdict (RocksDB) or plyvel (LevelDB) in a subprocess, driven over stdin
  (below; this file is also the child's script).
- :class:`OriginWriter`: a C++ program that marks WriteBatches with ``cdc-origin:`` LogData
  (:func:`build_origin_writer` compiles it).
- :class:`OpsWriter` (ops_writer.py): rocksdict with the options the ops tests need (rate limiter,
  background compactions, info-LOG rotation).
- :class:`CxxWriter`: the C++ harness driver of ``tests/cxx`` (2PC, column families, WAL TTL, ...);
  re-exported here, its source stays in tests/cxx.

StoreWriter: a store writer in a subprocess, driven over stdin.

Why a subprocess: rocksdict deletes the WAL when the DB is closed, and a test needs a store that
another process keeps writing (exactly like production). The child holds the DB open until told
otherwise; ``exit_without_close()`` / ``kill()`` end it so that its WAL files stay on disk.

Protocol (one JSON object per line on the child's stdin, one JSON answer per line on stdout):
    {"op": "put", "key": K, "value": V, "cf": NAME?}          -> {"ok": true, "seq": latest_seq}
    {"op": "delete", "key": K, "cf": NAME?}
    {"op": "delete_range", "start": K, "end": K, "cf": NAME?}  (rocksdb only)
    {"op": "batch", "ops": [{"op": "put"|"delete"|"delete_range", ...}, ...]}   one WriteBatch
    {"op": "put_many", "count": N, "batch": B, "prefix": P, "start": I, "value_size": S, "cf": NAME?}
        N puts of keys P + "%010d" % i in WriteBatches of B; answers {"elapsed_s": ..., "seq": ...}
    {"op": "paced", "count": N, "rate": R, "prefix": P, "start": I}
        N single puts at R puts/s, each value = the wall time in ns of the write (bench latency);
        "spin": false sleeps whenever ahead of schedule (no busy wait; late writes catch up at once)
    {"op": "flush", "cf": NAME?}   {"op": "flush_wal"}   {"op": "compact", "cf": NAME?}
    {"op": "create_cf", "name": NAME}   {"op": "drop_cf", "name": NAME}   {"op": "seq"}
    {"op": "reopen"}  close the DB cleanly and open it again with the same spec (rocksdb)
    {"op": "script", "path": F, "log": L, "rate": R}
        runs the commands of file F (one JSON command a line, any of the above but script/close/
        exit) at R commands/s (0: as fast as possible; a command with "nowait": true does not wait
        for its turn: a burst); after each one returned, appends
        {"i": n, "seq": latest_seq, "t": unix_time} to file L, flushed, so another process can
        follow what is committed; a failing command is logged as {"i": n, "error": "..."} and
        ends the script (the answer is then ok: false). Answers {"steps": n, "seq": ...}
    {"op": "close"}  clean close (WAL flushed and deleted by RocksDB), then the child exits 0
    {"op": "exit"}   os._exit(0) without closing: the WAL stays on disk
Keys and values: a JSON string (UTF-8 bytes) or {"hex": "..."} for arbitrary bytes.
Errors answer {"ok": false, "error": "..."} and the child keeps running.

Invariants: every command is acknowledged only after the write returned, so after ``put()``
returns the record is in the WAL file (rocksdict writes it with write(2) before returning).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

KeyLike = str | bytes

# --------------------------------------------------------------------------- parent side


def _enc(data: KeyLike) -> Any:
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return {"hex": data.hex()}
        return text
    return data


class StoreWriter:
    """A rocksdict (``kind="rocksdb"``) or plyvel (``kind="leveldb"``) writer subprocess.

    Args:
        path: DB directory (created if missing).
        kind: "rocksdb" or "leveldb".
        cfs: column families to create/open at start (rocksdb).
        options: rocksdb options: write_buffer_size, wal_ttl_seconds, wal_size_limit_mb,
            recycle_log_file_num, max_total_wal_size, disable_auto_compactions, wal_dir,
            keep_log_file_num (write_buffer_size applies to every column family); leveldb:
            write_buffer_size.

    Use as a context manager (``with StoreWriter(p) as w:``); leaving it kills the child
    without a clean close (WAL stays), unless ``close()`` was called first.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        kind: str = "rocksdb",
        cfs: Sequence[str] = (),
        options: dict[str, Any] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.kind = kind
        self.cfs = list(cfs)
        self.options = dict(options or {})
        self.proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    # -- lifecycle
    def start(self) -> StoreWriter:
        spec = json.dumps({"path": self.path, "kind": self.kind, "cfs": self.cfs, "options": self.options})
        self.proc = subprocess.Popen(
            [sys.executable, "-u", os.path.abspath(__file__), spec],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        ready = self._read_answer()
        if not ready.get("ok"):
            raise RuntimeError(f"writer failed to start: {ready.get('error')}")
        return self

    def __enter__(self) -> StoreWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def kill(self) -> None:
        """SIGKILL the child (no close: WAL files stay) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close_pipes()

    def exit_without_close(self) -> None:
        """End the child with os._exit(0): the DB is not closed, its WAL stays on disk."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self._send({"op": "exit"})
            except (BrokenPipeError, OSError):
                pass
            self.proc.wait(10)
        self._close_pipes()

    def close(self) -> None:
        """Close the DB cleanly (RocksDB flushes the memtable and deletes the WAL), then exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.cmd("close")
            self.proc.wait(10)
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc is not None:
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    if f is not None:
                        f.close()
                except OSError:
                    pass

    # -- raw protocol
    def _send(self, msg: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None, "writer not started"
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def _read_answer(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"writer exited (code {self.proc.poll()})")
        return json.loads(line)  # type: ignore[no-any-return]

    def cmd(self, op: str, **kw: Any) -> dict[str, Any]:
        """Send one command and return its answer; raises RuntimeError on ``ok: false``."""
        with self._lock:
            self._send({"op": op, **kw})
            ans = self._read_answer()
        if not ans.get("ok"):
            raise RuntimeError(f"writer {op}: {ans.get('error')}")
        return ans

    async def acmd(self, op: str, **kw: Any) -> dict[str, Any]:
        """``cmd`` in a thread, so an in-process daemon's event loop keeps running."""
        return await asyncio.to_thread(self.cmd, op, **kw)

    # -- conveniences (all return the store's latest sequence number after the write)
    def put(self, key: KeyLike, value: KeyLike, cf: str | None = None) -> int:
        return int(self.cmd("put", key=_enc(key), value=_enc(value), cf=cf)["seq"])

    def delete(self, key: KeyLike, cf: str | None = None) -> int:
        return int(self.cmd("delete", key=_enc(key), cf=cf)["seq"])

    def delete_range(self, start: KeyLike, end: KeyLike, cf: str | None = None) -> int:
        return int(self.cmd("delete_range", start=_enc(start), end=_enc(end), cf=cf)["seq"])

    def batch(self, ops: Iterable[dict[str, Any]]) -> int:
        """One WriteBatch. ops: dicts like {"op": "put", "key": b"k", "value": b"v", "cf": "x"}."""
        enc_ops = []
        for o in ops:
            e = dict(o)
            for f in ("key", "value", "start", "end"):
                if f in e and e[f] is not None:
                    e[f] = _enc(e[f])
            enc_ops.append(e)
        return int(self.cmd("batch", ops=enc_ops)["seq"])

    def put_many(
        self, count: int, batch: int = 100, prefix: str = "k", start: int = 0, value_size: int = 16, cf: str | None = None
    ) -> dict[str, Any]:
        return self.cmd("put_many", count=count, batch=batch, prefix=prefix, start=start, value_size=value_size, cf=cf)

    def flush(self, cf: str | None = None) -> None:
        self.cmd("flush", cf=cf)

    def flush_wal(self) -> None:
        self.cmd("flush_wal")

    def compact(self, cf: str | None = None) -> None:
        self.cmd("compact", cf=cf)

    def checkpoint(self, path: str | os.PathLike[str]) -> None:
        """A RocksDB checkpoint (hard-linked copy) of the store at ``path`` (rocksdb only)."""
        self.cmd("checkpoint", path=os.fspath(path))

    def create_cf(self, name: str) -> None:
        self.cmd("create_cf", name=name)

    def drop_cf(self, name: str) -> None:
        self.cmd("drop_cf", name=name)

    def seq(self) -> int:
        return int(self.cmd("seq")["seq"])

    # -- the same in a worker thread (an in-process daemon's event loop keeps running meanwhile)
    async def aput(self, key: KeyLike, value: KeyLike, cf: str | None = None) -> int:
        return await asyncio.to_thread(self.put, key, value, cf)

    async def adelete(self, key: KeyLike, cf: str | None = None) -> int:
        return await asyncio.to_thread(self.delete, key, cf)

    async def adelete_range(self, start: KeyLike, end: KeyLike, cf: str | None = None) -> int:
        return await asyncio.to_thread(self.delete_range, start, end, cf)

    async def abatch(self, ops: Iterable[dict[str, Any]]) -> int:
        return await asyncio.to_thread(self.batch, list(ops))

    async def aput_many(self, count: int, **kw: Any) -> dict[str, Any]:
        return await asyncio.to_thread(lambda: self.put_many(count, **kw))

    async def aflush(self, cf: str | None = None) -> None:
        await asyncio.to_thread(self.flush, cf)

    async def aseq(self) -> int:
        return await asyncio.to_thread(self.seq)


# --------------------------------------------------------------------------- child side


def _dec(v: Any) -> bytes:
    if isinstance(v, dict):
        return bytes.fromhex(v["hex"])
    return str(v).encode("utf-8")


class _Child:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.kind = spec["kind"]
        self.path = spec["path"]
        opts = spec.get("options") or {}
        if self.kind == "leveldb":
            import plyvel

            self.db = plyvel.DB(
                self.path, create_if_missing=True, write_buffer_size=int(opts.get("write_buffer_size", 4 << 20))
            )
            self.handles: dict[str, Any] = {}
            return
        import rocksdict

        self.rd = rocksdict
        o = rocksdict.Options(raw_mode=True)
        o.create_if_missing(True)
        o.create_missing_column_families(True)
        setters = {
            "write_buffer_size": o.set_write_buffer_size,
            "wal_ttl_seconds": o.set_wal_ttl_seconds,
            "wal_size_limit_mb": o.set_wal_size_limit_mb,
            "recycle_log_file_num": o.set_recycle_log_file_num,
            "max_total_wal_size": o.set_max_total_wal_size,
            "disable_auto_compactions": o.set_disable_auto_compactions,
            "wal_dir": o.set_wal_dir,
            "keep_log_file_num": o.set_keep_log_file_num,
            "wal_recovery_mode": o.set_wal_recovery_mode,
        }
        for name, value in opts.items():
            if name == "wal_recovery_mode":
                value = getattr(rocksdict.DBRecoveryMode, value)() if isinstance(value, str) else value
            setters[name](value)
        self.opts = o

        def cf_options() -> Any:
            co = rocksdict.Options(raw_mode=True)
            if "write_buffer_size" in opts:
                co.set_write_buffer_size(int(opts["write_buffer_size"]))
            return co

        cfs = {name: cf_options() for name in spec.get("cfs", [])}
        existing: list[str] = []
        if os.path.exists(os.path.join(self.path, "CURRENT")):
            try:
                existing = rocksdict.Rdict.list_cf(self.path, rocksdict.Options(raw_mode=True))
            except Exception:  # noqa: BLE001 - a fresh dir
                existing = []
        for name in existing:
            if name != "default":
                cfs.setdefault(name, cf_options())
        self.db = rocksdict.Rdict(self.path, o, column_families=cfs or None)
        self.handles = {name: self.db.get_column_family_handle(name) for name in cfs}

    def handle(self, cf: str | None) -> Any:
        if not cf or cf == "default":
            return None
        return self.handles[cf]

    def seq(self) -> int:
        if self.kind == "leveldb":
            return -1
        return int(self.db.latest_sequence_number())

    def _add(self, wb: Any, o: dict[str, Any]) -> None:
        op = o["op"]
        if self.kind == "leveldb":
            if op == "put":
                wb.put(_dec(o["key"]), _dec(o["value"]))
            elif op == "delete":
                wb.delete(_dec(o["key"]))
            else:
                raise ValueError(f"leveldb batch op {op!r} not supported")
            return
        h = self.handle(o.get("cf"))
        if op == "put":
            wb.put(_dec(o["key"]), _dec(o["value"]), h) if h is not None else wb.put(_dec(o["key"]), _dec(o["value"]))
        elif op == "delete":
            wb.delete(_dec(o["key"]), h) if h is not None else wb.delete(_dec(o["key"]))
        elif op == "delete_range":
            if h is not None:
                wb.delete_range(_dec(o["start"]), _dec(o["end"]), h)
            else:
                wb.delete_range(_dec(o["start"]), _dec(o["end"]))
        else:
            raise ValueError(f"batch op {op!r} not supported")

    def _new_batch(self) -> Any:
        if self.kind == "leveldb":
            return self.db.write_batch()
        return self.rd.WriteBatch(raw_mode=True)

    def _write(self, wb: Any) -> None:
        if self.kind == "leveldb":
            wb.write()
        else:
            self.db.write(wb)

    def run(self, msg: dict[str, Any]) -> dict[str, Any]:  # noqa: C901 - a flat dispatcher
        op = msg["op"]
        ans: dict[str, Any] = {"ok": True}
        if op in ("put", "delete", "delete_range"):
            wb = self._new_batch()
            self._add(wb, msg)
            self._write(wb)
        elif op == "batch":
            wb = self._new_batch()
            for o in msg["ops"]:
                self._add(wb, o)
            self._write(wb)
        elif op == "put_many":
            count, bsz = int(msg["count"]), int(msg.get("batch", 100))
            prefix = str(msg.get("prefix", "k")).encode()
            start = int(msg.get("start", 0))
            value = b"v" * int(msg.get("value_size", 16))
            h = None if self.kind == "leveldb" else self.handle(msg.get("cf"))
            t0 = time.perf_counter()
            i = start
            end = start + count
            while i < end:
                wb = self._new_batch()
                stop = min(end, i + bsz)
                if h is None:
                    for j in range(i, stop):
                        wb.put(prefix + b"%010d" % j, value)
                else:
                    for j in range(i, stop):
                        wb.put(prefix + b"%010d" % j, value, h)
                self._write(wb)
                i = stop
            ans["elapsed_s"] = time.perf_counter() - t0
            ans["t_end_ns"] = time.time_ns()
        elif op == "paced":
            count, rate = int(msg["count"]), float(msg["rate"])
            prefix = str(msg.get("prefix", "p")).encode()
            start = int(msg.get("start", 0))
            spin = bool(msg.get("spin", True))  # False: sleep even < 2 ms ahead (a late write catches up)
            t0 = time.perf_counter()
            for n in range(count):
                due = t0 + n / rate
                while True:
                    d = due - time.perf_counter()
                    if d <= 0:
                        break
                    time.sleep(d if d > 0.002 or not spin else 0)
                wb = self._new_batch()
                wb.put(prefix + b"%010d" % (start + n), b"%d" % time.time_ns())
                self._write(wb)
            ans["elapsed_s"] = time.perf_counter() - t0
        elif op == "flush":
            if self.kind == "leveldb":
                self.db.compact_range()
            else:
                h = self.handle(msg.get("cf"))
                if h is None:
                    self.db.flush(True)
                else:
                    self.db.get_column_family(msg["cf"]).flush(True)
        elif op == "flush_wal":
            if self.kind != "leveldb":
                self.db.flush_wal(True)
        elif op == "compact":
            if self.kind == "leveldb":
                self.db.compact_range()
            elif msg.get("cf"):
                self.db.get_column_family(msg["cf"]).compact_range(None, None)
            else:
                self.db.compact_range(None, None)
        elif op == "checkpoint":
            self.rd.Checkpoint(self.db).create_checkpoint(msg["path"])
        elif op == "create_cf":
            name = msg["name"]
            self.db.create_column_family(name, self.rd.Options(raw_mode=True))
            self.handles[name] = self.db.get_column_family_handle(name)
        elif op == "drop_cf":
            name = msg["name"]
            self.handles.pop(name, None)
            self.db.drop_column_family(name)
        elif op == "seq":
            pass
        elif op == "reopen":
            if self.kind == "leveldb":
                raise ValueError("reopen: rocksdb only")
            self.handles = {}  # column family handles keep the DB (and its LOCK) alive
            self.db.close()
            del self.db
            gc.collect()
            self.__init__(self.spec)  # type: ignore[misc]
        elif op == "script":
            ans.update(self._script(str(msg["path"]), str(msg["log"]), float(msg.get("rate", 0))))
        elif op == "close":
            self.db.close()
            _reply(ans)
            os._exit(0)
        elif op == "exit":
            os._exit(0)
        else:
            raise ValueError(f"unknown op {op!r}")
        ans["seq"] = self.seq()
        return ans


    def _script(self, path: str, log_path: str, rate: float) -> dict[str, Any]:
        """Run the commands of ``path`` paced at ``rate``/s, logging each result to ``log_path``."""
        with open(path, encoding="utf-8") as f:
            steps = [json.loads(line) for line in f if line.strip()]
        t0 = time.perf_counter()
        with open(log_path, "a", encoding="utf-8") as log:
            for n, step in enumerate(steps):
                if step.get("op") in ("script", "close", "exit"):
                    raise ValueError(f"script step {n}: {step['op']!r} not allowed in a script")
                if rate > 0 and not step.get("nowait"):
                    d = t0 + n / rate - time.perf_counter()
                    if d > 0:
                        time.sleep(d)
                try:
                    res = self.run(step)
                except Exception as exc:
                    log.write(json.dumps({"i": n, "error": f"{type(exc).__name__}: {exc}", "t": time.time()}) + "\n")
                    raise ValueError(f"script step {n} ({step.get('op')}): {type(exc).__name__}: {exc}") from exc
                log.write(json.dumps({"i": n, "seq": res["seq"], "t": time.time()}) + "\n")
                log.flush()
        return {"steps": len(steps), "elapsed_s": time.perf_counter() - t0}


def _reply(ans: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(ans) + "\n")
    sys.stdout.flush()


def _child_main(spec_text: str) -> None:
    try:
        child = _Child(json.loads(spec_text))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        _reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        os._exit(1)
    _reply({"ok": True, "pid": os.getpid()})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            ans = child.run(json.loads(line))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, child keeps running
            ans = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        _reply(ans)
    # stdin closed (parent gone): leave without closing, like a crash, so the WAL stays.
    os._exit(0)


# --------------------------------------------------------------------------- OriginWriter (C++)

# A RocksDB writer that marks its WriteBatches with ``cdc-origin:`` LogData (rocksdict has no
# PutLogData): a small C++ program compiled with g++ against librocksdb, driven over stdin.
#
# Each stdin line is one WriteBatch: ``ORIGIN KEY VALUE [KEY VALUE ...]`` (ORIGIN ``-``: no marker;
# VALUE ``-``: a delete). The program answers ``ok <latest seq>`` per line and keeps the DB open
# until stdin closes (then it exits without flushing: the WAL stays for cdc).

ORIGIN_WRITER_SOURCE = r"""
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


def build_origin_writer(directory: Path) -> Path | None:
    """Compile the writer into ``directory``; None when g++ or librocksdb-dev is missing."""
    if not shutil.which("g++") or not os.path.isdir("/usr/include/rocksdb"):
        return None
    src = directory / "origin_writer.cc"
    exe = directory / "origin_writer"
    if not exe.exists():
        src.write_text(ORIGIN_WRITER_SOURCE)
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


if __name__ != "__main__":  # the child runs this file as a script, without the tests package
    from tests.cxx import CxxWriter, Report, arg  # noqa: E402,F401  (the C++ harness driver)
    from tests.cxx import build as build_cxx_writer  # noqa: E402,F401
    from tests.harness.ops_writer import OpsWriter  # noqa: E402,F401  (rate-limited compactions, LOG rotation)
else:
    _child_main(sys.argv[1])
