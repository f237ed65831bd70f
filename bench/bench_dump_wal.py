"""Benchmark: ``cdc dump-wal`` vs RocksDB's ``ldb dump_wal`` on the same WAL, plus the library path.

Workloads (issue 2):
  A. 1,000,000 puts written in WriteBatches of 1,000, 100-byte values
  B. 200,000 single puts (one WriteBatch each), 100-byte values

For each: ``ldb dump_wal --walfile=F --print_value`` vs ``cdc dump-wal F --values`` (stdout to
/dev/null, best of N runs, wall time of the whole process), and the library path (WalReader over
the file's bytes, as the daemon uses it, in-process). Also without values.

Usage: python bench/bench_dump_wal.py [--runs 3] [--scale 1.0] [--write-md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

WRITER = textwrap.dedent(
    """
    import os, sys
    from rocksdict import Rdict, Options, WriteBatch
    path, total, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    o = Options(raw_mode=True)
    o.create_if_missing(True)
    o.set_write_buffer_size(1 << 30)   # keep everything in one WAL
    o.set_max_total_wal_size(1 << 32)
    db = Rdict(path, o)
    value = b"v" * 100
    if batch == 1:
        put = db.put
        for i in range(total):
            put(b"key%010d" % i, value)
    else:
        for start in range(0, total, batch):
            wb = WriteBatch(raw_mode=True)
            for i in range(start, min(total, start + batch)):
                wb.put(b"key%010d" % i, value)
            db.write(wb)
    sys.stdout.write("done\\n"); sys.stdout.flush()
    os._exit(0)
    """
)


def make_wal(tmp: str, name: str, total: int, batch: int) -> str:
    path = os.path.join(tmp, name)
    p = subprocess.run(
        [sys.executable, "-c", WRITER, path, str(total), str(batch)],
        capture_output=True, text=True, timeout=1800,
    )
    if p.returncode != 0 or "done" not in p.stdout:
        raise SystemExit(f"writer failed: {p.stderr[-500:]}")
    logs = sorted(f for f in os.listdir(path) if f.endswith(".log"))
    if len(logs) != 1:
        raise SystemExit(f"expected one WAL, found {logs}")
    return os.path.join(path, logs[0])


def time_cmd(cmd: list[str], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        with open(os.devnull, "wb") as devnull:
            t0 = time.perf_counter()
            p = subprocess.run(cmd, stdout=devnull, stderr=subprocess.PIPE, timeout=3600)
            dt = time.perf_counter() - t0
        if p.returncode != 0:
            raise SystemExit(f"{cmd[0]} failed: {p.stderr[-500:]!r}")
        best = min(best, dt)
    return best


def time_library(wal: str, runs: int) -> tuple[float, int]:
    from cdc.wal import WalReader

    number = int(os.path.basename(wal).split(".")[0])
    best = float("inf")
    n = 0
    for _ in range(runs):
        # As the daemon does: read the file in 1 MiB pieces, feed, consume the batches.
        t0 = time.perf_counter()
        r = WalReader(number)
        n = 0
        with open(wal, "rb") as f:
            while chunk := f.read(1 << 20):
                r.feed(chunk)
                for b in r.read():
                    n += len(b.ops)
        dt = time.perf_counter() - t0
        assert r.state == "ok", r.error
        best = min(best, dt)
    return best, n


def machine() -> str:
    model = platform.processor() or "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / (1 << 20):.0f} GiB RAM"
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the workload sizes")
    ap.add_argument("--write-md", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()
    ldb = shutil.which("ldb")
    cdc = [sys.executable, "-m", "cdc.cli"]
    workloads = [
        ("A: 1,000,000 puts, batches of 1,000, 100 B values", int(1_000_000 * args.scale), 1000),
        ("B: 200,000 single puts, 100 B values", int(200_000 * args.scale), 1),
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="cdc-bench-") as tmp:
        for label, total, batch in workloads:
            wal = make_wal(tmp, f"db{batch}", total, batch)
            size = os.path.getsize(wal)
            t_ldb = time_cmd([ldb, "dump_wal", f"--walfile={wal}", "--print_value"], args.runs) if ldb else float("nan")
            t_cdc = time_cmd([*cdc, "dump-wal", wal, "--values"], args.runs)
            t_ldb_nv = time_cmd([ldb, "dump_wal", f"--walfile={wal}"], args.runs) if ldb else float("nan")
            t_cdc_nv = time_cmd([*cdc, "dump-wal", wal], args.runs)
            t_lib, n = time_library(wal, args.runs)
            assert n == total, (n, total)
            rows.append((label, total, size, t_ldb, t_cdc, t_ldb_nv, t_cdc_nv, t_lib))
            print(
                f"{label}: WAL {size / 1e6:.1f} MB | ldb {t_ldb:.2f}s ({total / t_ldb / 1e6:.2f} M rec/s) | "
                f"cdc --values {t_cdc:.2f}s ({total / t_cdc / 1e6:.2f} M/s, {t_cdc / t_ldb:.2f}x ldb) | "
                f"no values: ldb {t_ldb_nv:.2f}s cdc {t_cdc_nv:.2f}s ({t_cdc_nv / t_ldb_nv:.2f}x) | "
                f"library {t_lib:.2f}s ({total / t_lib / 1e6:.2f} M/s)",
                flush=True,
            )
    md = render(rows, args.runs)
    print(md)
    if args.write_md:
        write_section(md)


def render(rows, runs: int) -> str:
    out = [
        "## dump-wal",
        "",
        f"`python bench/bench_dump_wal.py` — machine: {machine()}; "
        f"`ldb` = Debian rocksdb-tools {ldb_version()}; best of {runs} runs, wall time of the whole",
        "process (start-up included), stdout to /dev/null; the library column is in-process, as the",
        "daemon uses it (1 MiB reads -> `WalReader.feed` + `read()`, every op decoded into `Op`s, GC on).",
        "Records = WriteBatch entries (ops). The machine is shared with other jobs: numbers vary by ±30%.",
        "",
        "| workload | WAL size | ldb --print_value | cdc --values | ratio cdc/ldb | ldb (no values) | cdc (no values) | ratio | library (WalReader) | library vs CLI |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, total, size, t_ldb, t_cdc, t_ldb_nv, t_cdc_nv, t_lib in rows:
        out.append(
            f"| {label} | {size / 1e6:.1f} MB "
            f"| {t_ldb:.2f} s ({total / t_ldb / 1e6:.2f} M/s) "
            f"| {t_cdc:.2f} s ({total / t_cdc / 1e6:.2f} M/s) "
            f"| **{t_cdc / t_ldb:.2f}x** "
            f"| {t_ldb_nv:.2f} s | {t_cdc_nv:.2f} s | {t_cdc_nv / t_ldb_nv:.2f}x "
            f"| {t_lib:.2f} s ({total / t_lib / 1e6:.2f} M/s) | {t_cdc_nv / t_lib:.1f}x faster than the CLI |"
        )
    out.append("")
    return "\n".join(out)


def ldb_version() -> str:
    try:
        return subprocess.run(["ldb", "--version"], capture_output=True, text=True).stdout.split("RocksDB")[-1].strip()
    except OSError:
        return "?"


def write_section(md: str) -> None:
    path = os.path.join(ROOT, "BENCHMARKS.md")
    with open(path) as f:
        text = f.read()
    start = text.find("## dump-wal")
    if start >= 0:
        nxt = text.find("\n## ", start + 1)
        text = text[:start] + md.rstrip("\n") + "\n" + (text[nxt:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + md
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
