"""Ops events: how fast the info-LOG path turns LOG bytes into compaction / flush events.

Workload: a real LOG written by rocksdict (RocksDB 9.8) with many flushes and compactions
(options dump, stats dumps, EVENT_LOG_v1 lines, buffered lines), repeated to ~``--mb`` MB in
memory (job ids per copy are unique enough for the tracker; each copy is a new session).

Measured (best of 5, same process, same bytes):
- baseline: the least any EVENT_LOG_v1 consumer must do — split lines, decode UTF-8, and JSON-
  decode the payload of the lines that contain ``EVENT_LOG_v1`` (msgspec);
- cdc: the watcher's path — split, decode, ``parse_notice`` on every line, ``CompactionTracker``
  (events built as msgspec Structs);
- reference: ``grep -c EVENT_LOG_v1`` on the same bytes from a file (C, no JSON).

Run: ``python -m bench.bench_ops [--mb 50]``; prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time

import msgspec


from cdc.format.infolog import CompactionTracker, parse_log_bytes, parse_notice  # noqa: E402


def make_log(tmp: str) -> bytes:
    from rocksdict import DBCompressionType, Options, Rdict

    path = os.path.join(tmp, "db")
    o = Options(raw_mode=True)
    o.create_if_missing(True)
    o.set_compression_type(DBCompressionType.none())
    o.set_level_zero_file_num_compaction_trigger(4)
    o.set_stats_dump_period_sec(1)
    db = Rdict(path, o)
    for i in range(120):
        for _ in range(100):
            db.put(os.urandom(8), os.urandom(100))
        db.flush()
        if i % 30 == 29:
            db.compact_range(None, None)
    db.close()
    with open(os.path.join(path, "LOG"), "rb") as f:
        return f.read()


def run_baseline(data: bytes) -> int:
    dec = msgspec.json.Decoder()
    n = 0
    for raw in data.split(b"\n"):
        line = raw.decode("utf-8", "replace")
        i = line.find("EVENT_LOG_v1 ")
        if i >= 0:
            try:
                dec.decode(line[i + 13 :])
                n += 1
            except msgspec.DecodeError:
                pass
    return n


def run_cdc(data: bytes) -> int:
    tracker = CompactionTracker()
    n = 0
    for notice in parse_log_bytes(data):
        n += len(tracker.feed(notice, 0))
    return n


def run_cdc_every_line(data: bytes) -> int:
    """Without the byte pre-filter: parse_notice on every decoded line (for comparison)."""
    tracker = CompactionTracker()
    n = 0
    for raw in data.split(b"\n"):
        if not raw:
            continue
        notice = parse_notice(raw.decode("utf-8", "replace"))
        if notice is not None:
            n += len(tracker.feed(notice, 0))
    return n


def best(fn, data: bytes, runs: int = 5) -> tuple[float, int]:
    times = []
    out = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn(data)
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=50.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = make_log(tmp)
        copies = max(1, int(args.mb * 1e6 / len(one)))
        data = one * copies
        lines = data.count(b"\n")
        events_per_copy = sum(1 for ln in one.split(b"\n") if b"EVENT_LOG_v1" in ln)
        path = os.path.join(tmp, "LOG.big")
        with open(path, "wb") as f:
            f.write(data)
        t_base, n_base = best(run_baseline, data)
        t_cdc, n_cdc = best(run_cdc, data)
        t_all, n_all = best(run_cdc_every_line, data)
        assert n_all == n_cdc, (n_all, n_cdc)
        g = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(["grep", "-c", "EVENT_LOG_v1", path], capture_output=True, check=False)
            g.append(time.perf_counter() - t0)
        t_grep = min(g)
    mb = len(data) / 1e6
    cpu = platform.processor() or platform.machine()
    print(f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"Workload: {mb:.1f} MB LOG ({copies} copies of a {len(one) / 1e3:.0f} kB rocksdict LOG), "
          f"{lines:,} lines, {events_per_copy * copies:,} EVENT_LOG_v1 lines; cdc built {n_cdc:,} events")
    print()
    print("| path | time (s) | MB/s | lines/s | ratio to baseline |")
    print("|---|---:|---:|---:|---:|")
    for name, t in (
        ("baseline: split + decode + msgspec JSON of EVENT_LOG_v1 lines", t_base),
        ("cdc: byte pre-filter + parse_notice + CompactionTracker", t_cdc),
        ("cdc without the byte pre-filter (parse_notice on every line)", t_all),
        ("reference: grep -c EVENT_LOG_v1 (C, no JSON)", t_grep),
    ):
        print(f"| {name} | {t:.3f} | {mb / t:,.0f} | {lines / t:,.0f} | {t / t_base:.2f} |")
    _ = n_base


if __name__ == "__main__":
    main()
