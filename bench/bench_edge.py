"""Scale-out benchmarks (issue 12): capture node -> NATS JetStream -> ``cdc edge``.

Run: ``python -m bench.bench_edge [latency] [fanout] [cpu]`` (all by default). Needs
``nats-server`` (started here on loopback with ``-js``) and nats-py.

Figures (each compared with its baseline measured in the same run):
- latency: write -> subscriber p50/p99 at 1,000 writes/s (real RocksDB writer, real capture),
  10 subscribers on the capture node (direct) and 10 on an edge at the same time, for the same
  writes. Target: edge p99 <= direct p99 + 5 ms.
- fanout: deliveries/s to 500 live subscribers of 20,000 events written in batches of 100,
  subscribers on ``cdc serve`` vs the same subscribers on one edge (fresh nodes each run).
  Target: edge >= 0.8x serve.
- cpu: CPU time (user+sys, /proc) of the capture process per event for 100,000 puts (best of 3), NATS
  publishing off vs on (on: until the stream holds every event). Target: < 1.3x.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

from bench.bench_delivery import LatencyClient, close_clients, free_port, open_clients, paced_puts, run_named  # noqa: E402

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


class Proc:
    def __init__(self, args: list[str], tmp: str, name: str, port: int | None = None) -> None:
        self.port = port
        self.log = open(os.path.join(tmp, f"{name}.log"), "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")}
        env["PYTHONPATH"] = ROOT
        env["CDC_LOG_LEVEL"] = "warning"
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def wait_http(self, path: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"process exited: {self.p.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"timeout waiting for {path}")

    def cpu_s(self) -> float:
        with open(f"/proc/{self.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return float("nan")

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)
        self.log.close()


class Setup:
    """nats-server + capture node (+ edge) on a fresh RocksDB kept open by a writer subprocess."""

    def __init__(self, nats: bool = True, edge: bool = True) -> None:
        from tests.harness.writers import StoreWriter

        self.tmp = tempfile.mkdtemp(prefix="cdcbench-edge-")
        self.procs: list[Proc] = []
        self.w = StoreWriter(os.path.join(self.tmp, "db")).start()
        self.w.put("seed", "1")
        nats_args: list[str] = []
        if nats:
            np = free_port()
            self.nats = Proc([NATS_SERVER, "-js", "-sd", os.path.join(self.tmp, "js"), "-a", "127.0.0.1", "-p", str(np)], self.tmp, "nats")
            self.procs.append(self.nats)
            time.sleep(0.3)
            nats_args = ["--nats-url", f"nats://127.0.0.1:{np}"]
        cp = free_port()
        common = ["--insecure-no-auth", "--max-pending-per-ip", "100000", "--max-pending-connections", "100000", "--journal-fsync", "off"]
        self.cap = Proc([sys.executable, "-m", "cdc", "serve", "--db", self.w.path, "--state-dir", os.path.join(self.tmp, "cap"), "--port", str(cp), *common, *nats_args], self.tmp, "capture", cp)
        self.procs.append(self.cap)
        self.cap.wait_http("/health/ready")
        self.edge: Proc | None = None
        if edge and nats:
            ep = free_port()
            common = [c for c in common if c not in ("--journal-fsync", "off")]
            self.edge = Proc([sys.executable, "-m", "cdc", "edge", "--state-dir", os.path.join(self.tmp, "edge"), "--port", str(ep), *common, *nats_args], self.tmp, "edge", ep)
            self.procs.append(self.edge)
            self.edge.wait_http("/health/ready")

    def close(self) -> None:
        self.w.kill()
        for p in reversed(self.procs):
            p.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * q))], 2)


async def bench_latency(count: int = 5000, subs: int = 10) -> dict[str, Any]:
    s = Setup()
    try:
        assert s.edge is not None
        loop = asyncio.get_running_loop()
        res: dict[str, Any] = {"writes": count, "rate_per_s": 1000, "subscribers_each": subs}
        lats: dict[str, list[float]] = {"direct": [], "edge": []}
        done = {k: asyncio.Event() for k in lats}
        totals = {k: [0] for k in lats}
        clients = []
        for kind, port in (("direct", s.cap.port), ("edge", s.edge.port)):
            for _ in range(subs):
                c = LatencyClient("/ws/events?types=key_change&prefix=lat&values=1", lats[kind], [], totals[kind], done[kind], count * subs)
                await loop.create_connection(lambda c=c: c, "127.0.0.1", port)
                await asyncio.wait_for(c.open, 10)
                clients.append(c)
        w = s.w

        await asyncio.to_thread(paced_puts, w, count)
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in done.values())), 60)
        close_clients(clients)
        for k, xs in lats.items():
            res[f"{k}_p50_ms"] = _pct(xs, 0.5)
            res[f"{k}_p99_ms"] = _pct(xs, 0.99)
            res[f"{k}_max_ms"] = round(max(xs), 2)
        res["edge_p99_minus_direct_ms"] = round(res["edge_p99_ms"] - res["direct_p99_ms"], 2)
        res["target"] = "edge p99 <= direct p99 + 5 ms"
        return res
    finally:
        s.close()


async def _fanout_one(target: str, subs: int, events: int) -> float:
    s = Setup()
    try:
        node = s.cap if target == "serve" else s.edge
        assert node is not None
        total = [0]
        done = asyncio.Event()
        clients = await open_clients(node.port, "/ws/events?types=key_change&prefix=f", subs, total, done, subs * events, True)
        t0 = time.perf_counter()
        await asyncio.to_thread(s.w.put_many, events, 100, "f")
        await asyncio.wait_for(done.wait(), 300)
        dt = time.perf_counter() - t0
        close_clients(clients)
        return subs * events / dt
    finally:
        s.close()


async def bench_fanout(subs: int = 500, events: int = 20_000) -> dict[str, Any]:
    serve = await _fanout_one("serve", subs, events)
    edge = await _fanout_one("edge", subs, events)
    return {
        "subscribers": subs,
        "events": events,
        "serve_deliveries_per_s": round(serve),
        "edge_deliveries_per_s": round(edge),
        "ratio": round(edge / serve, 2),
        "target": "ratio >= 0.8",
    }


def _cpu_one(nats: bool, events: int) -> float:
    s = Setup(nats=nats, edge=False)
    try:
        target = s.cap.metric("cdc_journal_latest_id")
        cpu0 = s.cap.cpu_s()
        s.w.put_many(events, 100, "c")
        target += events
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if s.cap.metric("cdc_journal_latest_id") >= target and (not nats or s.cap.metric("cdc_nats_publish_lag_events") == 0):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("capture did not finish")
        if os.environ.get("CDC_BENCH_PYSPY") and nats:
            subprocess.run(["py-spy", "dump", "--pid", str(s.cap.p.pid)], check=False)
        us = (s.cap.cpu_s() - cpu0) / events * 1e6
        if nats:
            print(f"# messages: {s.cap.metric('cdc_nats_published_messages_total')}", file=sys.stderr)
        return us
    finally:
        s.close()


async def bench_cpu(events: int = 100_000, runs: int = 3) -> dict[str, Any]:
    off = min(_cpu_one(False, events) for _ in range(runs))
    on = min(_cpu_one(True, events) for _ in range(runs))
    return {
        "events": events,
        "cpu_us_per_event_nats_off": round(off, 1),
        "cpu_us_per_event_nats_on": round(on, 1),
        "ratio": round(on / off, 2),
        "target": "ratio < 1.3",
    }


BENCHES = {"latency": bench_latency, "fanout": bench_fanout, "cpu": bench_cpu}


async def main(names: list[str]) -> None:
    await run_named(BENCHES, names)


if __name__ == "__main__":
    if "-h" in sys.argv or "--help" in sys.argv:
        print(__doc__)
        sys.exit(0)
    unknown = [a for a in sys.argv[1:] if a not in BENCHES]
    if unknown:
        sys.exit(f"usage: bench_edge.py [{' | '.join(BENCHES)}]...  (unknown: {' '.join(unknown)})")
    asyncio.run(main(sys.argv[1:] or list(BENCHES)))
