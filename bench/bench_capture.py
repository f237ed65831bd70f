"""Capture benchmarks (issue 3): keeping up with the writer, write -> subscriber latency, stages.

Run: ``python -m bench.bench_capture [keepup] [latency] [stages] [catchup]`` (all but catchup by default).

- keepup: a rocksdict writer (subprocess, tests/harness/writers.py) puts 300,000 keys in WriteBatches of
  100 while the real daemon (subprocess: capture + journal + hub + server) tails the WAL; one
  ``batch=1`` WebSocket subscriber counts key_change events. Baseline: the writer's own time
  (measured in the writer process, same run). Ratio = writer_s / delivered_s (target >= 1.0).
- latency: 5,000 single puts paced at 1,000 writes/s, 20 subscribers with values=1; each value is
  the wall time of the write, so latency = receive time - write time (p50/p99/max), and the
  capture part = event timestamp (taken by capture) - write time. Target p99 <= 10 ms.
- stages: the same 300,000-put WAL processed stage by stage in this process (no daemon): read +
  framing/WriteBatch decode (cdc.wal), event building (WalCapture.build), journal append
  (cdc.journal, 20,000 events per transaction, sync off); the baseline is the writer's time.
  ``--profile`` adds a pyinstrument profile of decode + build.

- catchup: the store is written first (``bench_dump_wal``'s writer: N puts in WriteBatches of B,
  100-byte values, one WAL, the writer exits without closing so the WAL stays); then the daemon
  (subprocess, as for keepup) starts on it and one ``since=0&batch=1`` subscriber (types=key_change)
  counts events until it has all N. Time = daemon process start -> subscriber's last event. Baseline,
  same run, same WAL: ``ldb dump_wal --walfile=F --print_value`` (stdout to /dev/null, whole process).
  Ratio = catchup_s / ldb_s (issue 11 target: <= 2x for 1M/100, <= 2.5x for 200k/1).
  Options: ``--puts=N --batch=B`` (one variant; default both 1,000,000/100 and 200,000/1),
  ``--runs=R`` (default 2). ``CDC_BENCH_PYSPY=FILE`` profiles the daemon (attached after READY,
  so the profiled run's time is not a figure).

The daemon, the clients and the raw WebSocket client code are shared with bench_delivery.py.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from bench import bench_delivery as bd  # noqa: E402

from tests.harness.writers import StoreWriter  # noqa: E402

N_PUTS = 300_000
BATCH = 100


async def bench_keepup(runs: int = int(os.environ.get("CDC_BENCH_RUNS", "3"))) -> dict[str, Any]:
    """Writer time vs time until one batch=1 subscriber has all 300,000 events (best of runs)."""
    results = []
    for _ in range(runs):
        tmp = tempfile.mkdtemp(prefix="cdcbench-cap-")
        db = os.path.join(tmp, "db")
        with StoreWriter(db) as w:  # default 64 MiB memtable: one WAL, as in production
            w.put("seed", "1")
            srv = bd.ServerProc("cdc", "0", db)
            try:
                total = [0]
                done = asyncio.Event()
                clients = await bd.open_clients(
                    srv.port, "/ws/events?types=key_change&prefix=tp&batch=1", 1, total, done, N_PUTS, wait_hello=True
                )
                t0 = time.perf_counter()
                ans = await asyncio.to_thread(w.put_many, N_PUTS, BATCH, "tp")
                writer_s = float(ans["elapsed_s"])
                await asyncio.wait_for(done.wait(), 600)
                delivered_s = time.perf_counter() - t0
                bd.close_clients(clients)
                results.append((writer_s, delivered_s))
            finally:
                srv.close()
                w.kill()
                shutil.rmtree(tmp, ignore_errors=True)
    best = min(results, key=lambda r: r[1])
    return {
        "puts": N_PUTS,
        "batch": BATCH,
        "writer_s": round(best[0], 3),
        "delivered_s": round(best[1], 3),
        "events_per_s": round(N_PUTS / best[1]),
        "ratio_writer_over_delivery": round(best[0] / best[1], 3),
        "runs": [[round(a, 3), round(b, 3)] for a, b in results],
    }


async def bench_latency(subs: int = 20, count: int = 5000, rate: int = 1000) -> dict[str, Any]:
    """Write -> subscriber latency; the writer process stamps each value with its write time."""
    tmp = tempfile.mkdtemp(prefix="cdcbench-lat-")
    db = os.path.join(tmp, "db")
    with StoreWriter(db) as w:
        w.put("seed", "1")
        srv = bd.ServerProc("cdc", "0", db)
        try:
            lat: list[float] = []
            cap: list[float] = []
            total = [0]
            done = asyncio.Event()
            loop = asyncio.get_running_loop()
            clients = []
            for _ in range(subs):
                c = bd.LatencyClient("/ws/events?types=key_change&prefix=lat&values=1", lat, cap, total, done, count * subs)
                await loop.create_connection(lambda c=c: c, "127.0.0.1", srv.port)
                await asyncio.wait_for(c.open, 10)
                clients.append(c)
            # the writer paces itself (sleeping) and stamps each value just before its write
            await asyncio.to_thread(w.cmd, "paced", count=count, rate=rate, prefix="lat")
            await asyncio.wait_for(done.wait(), 120)
            bd.close_clients(clients)
        finally:
            srv.close()
            w.kill()
            shutil.rmtree(tmp, ignore_errors=True)
    lat.sort()
    cap.sort()

    return {
        "writes": count,
        "rate_per_s": rate,
        "subscribers": subs,
        "p50_ms": bd.pct(lat, 0.5),
        "p99_ms": bd.pct(lat, 0.99),
        "max_ms": round(lat[-1], 2),
        "capture_p50_ms": bd.pct(cap, 0.5),
        "capture_p99_ms": bd.pct(cap, 0.99),
    }


def bench_stages(profile: bool = False) -> dict[str, Any]:
    from cdc.capture import WalCapture
    from cdc.journal.lmdb_journal import Journal
    from cdc.format.wal import WalReader

    tmp = tempfile.mkdtemp(prefix="cdcbench-stages-")
    try:
        db = os.path.join(tmp, "db")
        w = StoreWriter(db).start()
        writer_s = float(w.put_many(N_PUTS, BATCH, "tp")["elapsed_s"])
        w.exit_without_close()
        (wal,) = [os.path.join(db, n) for n in os.listdir(db) if n.endswith(".log")]
        size = os.path.getsize(wal)
        gc.collect()
        best: dict[str, float] = {}
        prof = None
        if profile:
            from pyinstrument import Profiler

            prof = Profiler(interval=0.0005)
        for run in range(3):
            if prof is not None and run == 2:
                prof.start()
            t0 = time.perf_counter()
            fd = os.open(wal, os.O_RDONLY)
            reader = WalReader(4)
            batches = []
            pos = 0
            while True:
                data = os.pread(fd, 4 << 20, pos)
                if not data:
                    break
                pos += len(data)
                reader.feed(data)
                batches += reader.read()
            os.close(fd)
            t1 = time.perf_counter()
            cap = WalCapture()
            dec = cap.build(batches)
            t2 = time.perf_counter()
            if prof is not None and run == 2:
                prof.stop()
            jdir = os.path.join(tmp, f"j{run}")
            j = Journal(jdir, map_size=4 << 30, sync=False, retention_count=0, retention_bytes=0)
            t3 = time.perf_counter()
            ev = dec.events
            try:
                for i in range(0, len(ev), 20_000):
                    j.append(ev[i : i + 20_000])
            except Exception as exc:  # noqa: BLE001 - the journal is someone else's; report, go on
                print(f"journal stage failed: {exc!r}", file=sys.stderr)
            t4 = time.perf_counter()
            j.close()
            shutil.rmtree(jdir, ignore_errors=True)
            for k, v in (("decode_s", t1 - t0), ("build_s", t2 - t1), ("journal_s", t4 - t3)):
                best[k] = min(best.get(k, 1e9), v)
            assert len(ev) == N_PUTS
        out: dict[str, Any] = {
            "wal_bytes": size,
            "writer_s": round(writer_s, 3),
            **{k: round(v, 3) for k, v in best.items()},
        }
        cap_s = best["decode_s"] + best["build_s"]
        out["capture_s"] = round(cap_s, 3)
        out["capture_events_per_s"] = round(N_PUTS / cap_s)
        out["ratio_writer_over_capture"] = round(writer_s / cap_s, 3)
        out["ratio_writer_over_capture_plus_journal"] = round(writer_s / (cap_s + best["journal_s"]), 3)
        if prof is not None:
            print(prof.output_text(unicode=False, color=False, show_all=False), file=sys.stderr)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def catchup_one(puts: int, batch: int, runs: int) -> dict[str, Any]:
    """Daemon start on a WAL already holding ``puts`` puts -> a since=0 batch=1 subscriber's last event."""
    from bench import bench_dump_wal as bdw

    ldb = shutil.which("ldb") or "/usr/bin/ldb"
    results = []
    tmp = tempfile.mkdtemp(prefix="cdcbench-catchup-")
    try:
        wal = bdw.make_wal(tmp, "db", puts, batch)
        db = os.path.dirname(wal)
        for _ in range(runs):
            ldb_s, _cpu = bdw.run_cmd([ldb, "dump_wal", f"--walfile={wal}", "--print_value"])
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            srv = bd.ServerProc("cdc", "0", db)  # returns once the daemon printed READY
            try:
                ready_s = time.perf_counter() - t0
                total = [0]
                done = asyncio.Event()
                clients = await bd.open_clients(
                    srv.port, "/ws/events?types=key_change&since=0&batch=1", 1, total, done, puts, wait_hello=False
                )
                await asyncio.wait_for(done.wait(), 1800)
                catchup_s = time.perf_counter() - t0
                bd.close_clients(clients)
            finally:
                srv.close()
            results.append((ldb_s, catchup_s, ready_s, load))
            print(f"catchup {puts}/{batch}: ldb {ldb_s:.2f}s cdc {catchup_s:.2f}s (ready {ready_s:.2f}s) "
                  f"ratio {catchup_s / ldb_s:.2f}x load1 {load:.2f}", file=sys.stderr, flush=True)
        wal_bytes = os.path.getsize(wal)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    best = min(results, key=lambda r: r[1] / r[0])
    return {
        "puts": puts,
        "batch": batch,
        "wal_bytes": wal_bytes,
        "ldb_s": round(best[0], 3),
        "catchup_s": round(best[1], 3),
        "events_per_s": round(puts / best[1]),
        "ratio_catchup_over_ldb": round(best[1] / best[0], 2),
        "runs": [{"ldb_s": round(a, 3), "catchup_s": round(b, 3), "ready_s": round(c, 3), "ratio": round(b / a, 2), "load1": round(d, 2)}
                 for a, b, c, d in results],
    }


def _opt(name: str, default: int) -> int:
    for a in sys.argv[1:]:
        if a.startswith(f"--{name}="):
            return int(a.split("=", 1)[1].replace("_", ""))
    return default


async def bench_catchup() -> dict[str, Any]:
    runs = _opt("runs", 2)
    if any(a.startswith(("--puts=", "--batch=")) for a in sys.argv[1:]):
        variants = [(_opt("puts", 1_000_000), _opt("batch", 100))]
    else:
        variants = [(1_000_000, 100), (200_000, 1)]
    return {f"{p}x{b}": await catchup_one(p, b, runs) for p, b in variants}


async def main(names: list[str], profile: bool) -> None:
    bd.raise_nofile()
    for name in names:
        t0 = time.perf_counter()
        if name == "keepup":
            res = await bench_keepup()
        elif name == "latency":
            res = await bench_latency()
        elif name == "latency1":
            res = await bench_latency(subs=1)
        elif name == "catchup":
            res = await bench_catchup()
        elif name == "stages":
            res = bench_stages(profile)
        else:
            raise SystemExit(f"unknown bench {name!r}")
        res["bench_s"] = round(time.perf_counter() - t0, 1)
        print(json.dumps({name: res}), flush=True)


if __name__ == "__main__":
    if "-h" in sys.argv or "--help" in sys.argv:
        sys.exit("usage: bench_capture.py [stages | keepup | latency | latency1 | catchup]... [--profile]"
                 " [--puts=N --batch=B --runs=R (catchup)]")
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(args or ["stages", "keepup", "latency"], "--profile" in sys.argv))
