"""C++ store writers for the tests: real RocksDB (plain DB or TransactionDB) built with g++.

Why C++: rocksdict cannot open a TransactionDB (any write policy), prepare/commit 2PC
transactions, write PutLogData, or report the sequence numbers the store itself gave each
record. ``writer.cc`` (this directory) links Debian's ``librocksdb-dev`` and does all of that;
it is compiled once per pytest session (cached by source hash in the pytest cache dir) by
:func:`build`, which skips the test with a clear reason when g++, the headers or the library are
missing. Reuse it: other tests (chaos soak, store-goes-back-in-time, PutLogData origin) drive the
same binary through :class:`CxxWriter`.

Command line
------------
``writer DB_DIR [--policy none|committed|prepared|unprepared] [--cf NAME]... [--wal-ttl S]
[--wal-dir DIR] [--unprepared-threshold BYTES]``

* ``--policy``: ``none`` = plain ``DB::Open`` (default); otherwise ``TransactionDB::Open`` with
  WRITE_COMMITTED / WRITE_PREPARED / WRITE_UNPREPARED.
* ``--cf``: column families to create/open (besides ``default``).
* ``--wal-ttl``: ``WAL_ttl_seconds`` (WAL archiving into ``archive/``).
* ``--wal-dir``: ``DBOptions::wal_dir`` (WALs in a separate directory).
* ``--unprepared-threshold``: ``TransactionOptions::write_batch_flush_threshold`` (WRITE_UNPREPARED
  writes unprepared batches of that size before the prepare).
* Every store gets a merge operator (``cdc-test-concat``: concatenation) and
  ``create_if_missing`` / ``create_missing_column_families``.

Command language (stdin, one command per line, tokens separated by spaces)
-------------------------------------------------------------------------
Keys, values and blobs are single tokens; ``%XX`` is the byte 0xXX (so ``%20`` is a space) and a
lone ``-`` is the empty string. Lines starting with ``#`` are ignored.

=====================================  ===================================================
``put CF KEY VALUE``                   Put on the current target (see below)
``delete CF KEY``                      Delete
``singledelete CF KEY``                SingleDelete
``merge CF KEY OPERAND``               Merge (operand appended to the value)
``deleterange CF BEGIN END``           DeleteRange (not inside a transaction)
``logdata BLOB``                       PutLogData into the open batch / transaction; at the
                                       top level a batch of LogData + Put(default,
                                       ``__logdata_carrier``, BLOB) is written (a LogData-only
                                       batch writes nothing)
``batch`` ... ``end``                  ops in between go into one WriteBatch, written at
                                       ``end`` (``DB::Write``; through the TransactionDB when
                                       there is one)
``txn XID``                            begin a transaction named XID; it becomes the current
                                       target (ops go into it) until ``end`` / ``use``
``use [XID]``                          switch the target to transaction XID (none = the DB)
``prepare XID`` / ``commit XID`` /     2PC; ``commit`` without ``prepare`` commits without
``rollback XID``                       2PC
``parallel THREADS COUNT``             THREADS threads write COUNT times each at once (RocksDB
                                       merges them into write groups): single puts, batches
                                       repeating a key, and with a TransactionDB 2PC and
                                       one-phase transactions; thread t writes keys
                                       ``p<t>_<0..4>`` in ``default`` only; all logged
``flush``                              flush every column family (memtables to SST)
``syncwal``                            ``FlushWAL(true)``
``reopen``                             close the DB and open it again (new WAL)
``echo TEXT``                          prints ``echo TEXT`` (a sync point)
``report``                             prints the report (below) ending with ``reported SEQ``
``crash``                              prints ``crashed SEQ`` and ``_exit(0)`` without closing
                                       (WALs stay on disk, nothing flushed)
``close``                              prints the report ending with ``closed SEQ``, closes the
                                       DB and exits 0
=====================================  ===================================================

Every other command answers ``ok COMMAND LATEST_SEQ`` once it returned (the write is then in the
WAL file); a failure prints ``error ...`` and exits 3 (a usage error exits 2).

Report lines: ``committed OP CF KEYHEX VALUEHEX`` for every op the writer committed, in commit
order (the writer's log; OP as in the commands, hex ``-`` = empty), then
``kv CF KEYHEX SEQ TYPE VALUEHEX`` for every version the store holds (``GetAllKeyVersions``:
the store's own sequence numbers; TYPE 1 put, 0 delete, 2 merge, 7 single delete), then
``reported|closed LATEST_SEQ``.
"""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "writer.cc")
CXXFLAGS = ["-O1", "-std=c++17"]
LIBS = ["-lrocksdb", "-lpthread"]
KV_TYPES = {0: "delete", 1: "put", 2: "merge", 7: "single_delete"}


def build(cache_dir: str) -> str:
    """Compile writer.cc into ``cache_dir`` (once per source version); pytest.skip when it cannot be built."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("C++ writer tests need g++ (apt-get install g++)")
    if not os.path.isfile("/usr/include/rocksdb/utilities/transaction_db.h"):
        pytest.skip("C++ writer tests need the RocksDB headers (apt-get install librocksdb-dev)")
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read() + " ".join(CXXFLAGS + LIBS).encode()).hexdigest()[:16]
    os.makedirs(cache_dir, exist_ok=True)
    exe = os.path.join(cache_dir, f"cdc-writer-{digest}")
    if os.path.isfile(exe):
        return exe
    tmp = f"{exe}.{os.getpid()}.tmp"
    proc = subprocess.run([gxx, *CXXFLAGS, "-o", tmp, SOURCE, *LIBS], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.skip(f"C++ writer could not be built against librocksdb-dev: {proc.stderr.strip()[-400:]}")
    os.replace(tmp, exe)
    return exe


def _unhex(text: str) -> bytes:
    return b"" if text == "-" else bytes.fromhex(text)


def arg(data: bytes | str) -> str:
    """Bytes/str -> one command token (``%XX`` escapes for anything but safe printable ASCII)."""
    if isinstance(data, str):
        data = data.encode()
    if not data:
        return "-"
    return "".join(chr(c) if 0x21 <= c < 0x7F and c not in b"%#" else f"%{c:02X}" for c in data)


@dataclass
class Report:
    """What the writer committed (its log) and what the store holds (with the store's seqs)."""

    committed: list[tuple[str, str, bytes, bytes]] = field(default_factory=list)  # (op, cf, key, value)
    versions: list[tuple[str, bytes, int, str, bytes]] = field(default_factory=list)  # (cf, key, seq, type, value)
    latest_seq: int = 0

    def seqs(self) -> dict[tuple[str, bytes, int], str]:
        """(cf, key, seq) -> operation for every version the store holds."""
        return {(cf, k, s): t for cf, k, s, t, _v in self.versions}


class CxxWriter:
    """A running ``writer`` process (see the module docstring for its command language)."""

    def __init__(self, exe: str, db: str, *, policy: str = "none", cfs: tuple[str, ...] = (), wal_ttl: int = 0,
                 wal_dir: str | None = None, unprepared_threshold: int = 0, timeout: float = 30.0) -> None:
        self.db = db
        self.timeout = timeout
        cmd = [exe, db, "--policy", policy]
        for cf in cfs:
            cmd += ["--cf", cf]
        if wal_ttl:
            cmd += ["--wal-ttl", str(wal_ttl)]
        if wal_dir:
            cmd += ["--wal-dir", wal_dir]
        if unprepared_threshold:
            cmd += ["--unprepared-threshold", str(unprepared_threshold)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._buf = b""
        line = self._line()
        if not line.startswith("ready"):
            raise AssertionError(f"writer did not start: {line!r} {self._stderr()}")
        self.seq = int(line.split()[1])

    def _stderr(self) -> str:
        try:
            return self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""  # type: ignore[union-attr]
        except OSError:
            return ""

    def _line(self) -> str:
        deadline = time.monotonic() + self.timeout
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("C++ writer did not answer in time")
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(f"C++ writer exited (rc={self.proc.wait()}): {self._stderr()}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def send(self, *commands: str) -> int:
        """Run commands (each acknowledged before the next is sent); returns the latest seq."""
        for c in commands:
            self.proc.stdin.write(c.encode() + b"\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            if c.split()[0] in ("report", "close", "crash"):
                raise ValueError("use report() / close() / crash()")
            line = self._line()
            if line.startswith("error"):
                raise AssertionError(f"C++ writer: {c!r}: {line}")
            if not c.startswith("echo"):
                self.seq = int(line.rsplit(" ", 1)[1])
        return self.seq

    def script(self, text: str) -> int:
        """Run a multi-line script (blank lines and # comments skipped)."""
        return self.send(*(ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")))

    def _report(self, command: str, end: str) -> Report:
        self.proc.stdin.write(command.encode() + b"\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        rep = Report()
        while True:
            line = self._line()
            parts = line.split(" ")
            if parts[0] == "committed":
                rep.committed.append((parts[1], parts[2], _unhex(parts[3]), _unhex(parts[4])))
            elif parts[0] == "kv":
                t = int(parts[4])
                rep.versions.append((parts[1], _unhex(parts[2]), int(parts[3]), KV_TYPES.get(t, str(t)), _unhex(parts[5])))
            elif parts[0] == end:
                rep.latest_seq = int(parts[1])
                return rep
            else:
                raise AssertionError(f"unexpected writer output {line!r}")

    def report(self) -> Report:
        return self._report("report", "reported")

    def close(self) -> Report:
        rep = self._report("close", "closed")
        self.proc.wait(self.timeout)
        return rep

    def crash(self) -> int:
        """Exit without closing (WALs stay, like a killed writer); returns the latest seq."""
        self.proc.stdin.write(b"crash\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        line = self._line()
        self.proc.wait(self.timeout)
        return int(line.split()[1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for s in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                s.close()  # type: ignore[union-attr]
            except OSError:
                pass


def start(exe: str, db: str, **kw: Any) -> CxxWriter:
    return CxxWriter(exe, db, **kw)
