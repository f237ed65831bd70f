"""A rocksdict writer subprocess for the ops tests: compactions that last seconds, LOG rotation.

Why not tests/harness/writers.py: these tests need options it does not expose (rate limiter, no
compression, table format_version 5 so Debian's ldb 7.8 can back the store up, info-LOG size
limit for rotation) and a compaction that runs in the background while the child answers.

Protocol: one JSON object per line on stdin, one JSON answer per line on stdout.
    {"op": "fill", "count": N, "value_size": S}      N random puts (8-byte keys)
    {"op": "put", "key": K, "value": V}
    {"op": "flush"}
    {"op": "compact"}                 compact_range(None, None) in the foreground
    {"op": "compact_bg"}              same in a thread (answers at once); {"op": "wait_bg"}
    {"op": "checkpoint", "dir": D}    rocksdict Checkpoint
    {"op": "exit"}                    os._exit(0): no close, WAL and LOG stay as they are
    {"op": "close"}                   clean close, then exit
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any


class OpsWriter:
    """Parent side: ``with OpsWriter(path, rate=8 << 20) as w: w.cmd("fill", count=100)``."""

    def __init__(self, path: str, **options: Any) -> None:
        self.path = str(path)
        self.options = options
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> OpsWriter:
        spec = json.dumps({"path": self.path, "options": self.options})
        self.proc = subprocess.Popen(
            [sys.executable, "-u", os.path.abspath(__file__), spec],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        ans = self._read()
        assert ans.get("ok"), ans
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def _read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("ops writer died")
        return json.loads(line)

    def cmd(self, op: str, **kw: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        ans = self._read()
        if not ans.get("ok"):
            raise RuntimeError(f"ops writer: {ans.get('error')}")
        return ans

    def exit(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.cmd("exit")
            except (RuntimeError, BrokenPipeError, OSError):
                pass
            self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.cmd("close")
            except (RuntimeError, BrokenPipeError, OSError):
                pass
            self.proc.wait(30)

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            for f in (self.proc.stdin, self.proc.stdout):
                if f is not None:
                    try:
                        f.close()
                    except OSError:
                        pass


def open_db(path: str, options: dict[str, Any]) -> Any:
    from rocksdict import BlockBasedOptions, DBCompressionType, Options, Rdict

    o = Options(raw_mode=True)
    o.create_if_missing(True)
    o.set_compression_type(DBCompressionType.none())
    b = BlockBasedOptions()
    b.set_format_version(5)
    o.set_block_based_table_factory(b)
    o.set_level_zero_file_num_compaction_trigger(options.get("l0_trigger", 100))
    if options.get("rate"):
        o.set_ratelimiter(int(options["rate"]), 100_000, 10)
    if options.get("max_log_file_size"):
        o.set_max_log_file_size(int(options["max_log_file_size"]))
    if options.get("db_log_dir"):
        o.set_db_log_dir(options["db_log_dir"])
    if options.get("keep_log_file_num"):
        o.set_keep_log_file_num(int(options["keep_log_file_num"]))
    if options.get("write_buffer_size"):
        o.set_write_buffer_size(int(options["write_buffer_size"]))
    return Rdict(path, o)


def _child(spec: dict[str, Any]) -> None:
    db = open_db(spec["path"], spec.get("options", {}))
    out = sys.stdout
    bg: list[threading.Thread] = []
    out.write(json.dumps({"ok": True}) + "\n")
    for line in sys.stdin:
        try:
            c = json.loads(line)
            op = c["op"]
            ans: dict[str, Any] = {"ok": True}
            if op == "fill":
                size = int(c.get("value_size", 1000))
                for _ in range(int(c["count"])):
                    db.put(os.urandom(8), os.urandom(size))
            elif op == "put":
                db.put(c["key"].encode(), c["value"].encode())
            elif op == "flush":
                db.flush()
            elif op == "compact":
                db.compact_range(None, None)
            elif op == "compact_bg":
                t = threading.Thread(target=db.compact_range, args=(None, None), daemon=True)
                t.start()
                bg.append(t)
            elif op == "wait_bg":
                for t in bg:
                    t.join()
                bg.clear()
            elif op == "checkpoint":
                from rocksdict import Checkpoint

                Checkpoint(db).create_checkpoint(c["dir"])
            elif op == "seq":
                ans["seq"] = db.latest_sequence_number()
            elif op == "exit":
                out.write(json.dumps(ans) + "\n")
                out.flush()
                os._exit(0)
            elif op == "close":
                for t in bg:
                    t.join()
                db.close()
                out.write(json.dumps(ans) + "\n")
                out.flush()
                os._exit(0)
            else:
                ans = {"ok": False, "error": f"unknown op {op}"}
        except Exception as exc:  # report, keep running
            ans = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(ans) + "\n")
        out.flush()


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
