"""Delivery benchmarks (issues 3 and 11): fan-out, idle memory, journal replay, write->subscriber latency.

Run: ``python -m bench.bench_delivery [NAME|GROUP]...`` (all by default); names: fanout,
fanout_issue3, memory, replay, latency, latency10k, throughput; group ``issue11`` = fanout,
latency, latency10k, replay, memory (issue 11's delivery rows, each < 60 s). One JSON line per
bench, with its duration and the 1-minute load average before/after (the machine is shared).

Each server (cdc, or the bare ``websockets`` baseline) runs in its own subprocess
(``python -m bench.bench_delivery _server KIND PORT ...``); this process is the client side.
Clients are raw asyncio protocols (handshake + streaming frame counting, no per-frame JSON
parsing) so that the client costs the same for both servers and stays cheap.

Figures (targets: issue 11; see BENCHMARKS.md "Issue 11 delivery figures (session 15)"):
- fanout: 500 ``batch=1`` subscribers, 20,000 events framed 100 per frame on both sides (cdc:
  commits of 100 emitted on the bus; bare: websockets ``broadcast()`` of the same pre-built
  frames); events/s delivered, ratio cdc / bare >= 1.0. ``fanout_issue3``: the older figure
  (1,000 subscribers, one frame per event).
- memory: RSS delta per idle subscriber at 10,000 subscribers (cdc vs bare websockets with
  default settings), target <= 12 KB.
- replay: journal of 1,000,000 events replayed to one ``since=0&batch=1`` subscriber vs a raw
  LMDB cursor iteration of every value of every named database of that env, ratio >= 0.8.
- latency / latency10k: write -> subscriber p50/p99 at 1,000 / 10,000 writes/s with 20
  subscribers (real RocksDB writer, real capture, fsync per commit), p99 <= 10 ms / <= 5 ms.
- throughput: 300,000 puts in batches of 100 by a rocksdict writer reach one batch=1 subscriber
  in no more time than the writer took (ratio >= 1.0).

Diagnostics (environment): ``CDC_BENCH_PYSPY=FILE`` (py-spy attached after READY),
``CDC_BENCH_PYSPY_SPAWN=FILE`` (+ ``CDC_BENCH_PYSPY_GIL=1``, ``CDC_BENCH_PYSPY_RATE``: the server
runs under py-spy from its start), ``CDC_BENCH_TRACE=1`` (daemon: commit / fan-out durations,
capture -> fan-out and write -> fan-out-done ages, on stderr), ``CDC_BENCH_GCLOG=1``,
``CDC_BENCH_NOSYNC=1`` (journal without fsync), ``CDC_BENCH_RUNS``, ``CDC_BENCH_FANOUT_SUBS`` /
``_EVENTS`` / ``_FRAME``, ``CDC_BENCH_MEM_SUBS``, ``CDC_BENCH_REPLAY_EVENTS``,
``CDC_BENCH_LAT_RATE`` / ``_COUNT``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from tests.harness.net import free_port  # noqa: E402,F401  (bench_edge imports it from here)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PY = sys.executable


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# =========================================================================== servers (subprocess)


def make_event_bytes(i: int) -> bytes:
    return b'{"id":%d,"type":"key_change","timestamp":1700000000000,"operation":"put","key":"user:%08d","cf":"default","seq":%d}' % (i, i, i)


def pct(xs: list[float], q: float) -> float:
    """The ``q`` quantile of sorted ``xs`` (ms, 2 decimals)."""
    return round(xs[min(len(xs) - 1, int(len(xs) * q))], 2)


def write_json(path: str, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f)


def read_json(path: str) -> Any:
    """The JSON in ``path``, or None when it is missing or not JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def make_array_frame(lo: int, hi: int) -> bytes:
    """A ``batch=1`` frame as cdc builds it: the JSON array of the events with ids lo..hi-1."""
    return b"[" + b",".join([make_event_bytes(i) for i in range(lo, hi)]) + b"]"


async def bare_server(port: int) -> None:
    """The baseline: websockets with defaults, a broadcast() loop over every connection."""
    from websockets.asyncio.server import broadcast, serve

    conns: set[Any] = set()

    async def handler(ws: Any) -> None:
        conns.add(ws)
        try:
            await ws.wait_closed()
        finally:
            conns.discard(ws)

    async with serve(handler, "127.0.0.1", port, max_queue=16):
        print("READY", flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = (await reader.readline()).decode().split()
            if not line:
                return
            if line[0] == "go":
                n, batch = int(line[1]), int(line[2])
                i = 0
                while i < n:
                    for _ in range(min(batch, n - i)):
                        i += 1
                        broadcast(conns, make_event_bytes(i), text=True)
                    await asyncio.sleep(0)
                print("SENT", flush=True)
            elif line[0] == "prep":  # prep N FRAME FIRST_ID: build the frames (JSON arrays of FRAME events) now
                n, per, first = int(line[1]), int(line[2]), int(line[3])
                frames = [make_array_frame(i, min(n + first, i + per)) for i in range(first, n + first, per)]
                print("PREPPED", flush=True)
            elif line[0] == "send":  # broadcast the prepared frames, one per loop turn
                for f in frames:
                    broadcast(conns, f, text=True)
                    await asyncio.sleep(0)
                print("SENT", flush=True)


async def cdc_server(port: int, state: str, prefill: int, db: str | None) -> None:
    from cdc.daemon.app import App
    from cdc.model.config import Config
    from cdc.model.events import KeyChange
    from cdc.journal.lmdb_journal import Journal

    if prefill:
        j = Journal(os.path.join(state, "journal"), map_size=8 << 30, retention_bytes=0, retention_count=0, sync=False)
        for start in range(0, prefill, 20_000):
            j.append([KeyChange(timestamp=1700000000000, operation="put", key=f"user:{i:08d}", seq=i) for i in range(start, min(prefill, start + 20_000))])
        j.close()
    cfg = Config(
        db=db or os.path.join(state, "db"),
        state_dir=state,
        port=port,
        insecure_no_auth=True,
        max_subscribers=20_000,
        # thousands of bench clients connect at once from one address: lift the per-IP cap on
        # connections still sending their request (production default: 64)
        max_pending_connections=20_000,
        max_pending_per_ip=20_000,
        journal_map_size=8 << 30,
        retention_bytes=0,
        retention_count=0,
        heartbeat_ms=600_000,
        subscriber_queue=100_000,
    )
    if os.environ.get("CDC_BENCH_SWITCH_MS"):  # experiment: the GIL switch interval (default 5 ms)
        sys.setswitchinterval(float(os.environ["CDC_BENCH_SWITCH_MS"]) / 1000)
    app = App(cfg, components=None if db else [], journal_sync=not os.environ.get("CDC_BENCH_NOSYNC"))
    gc_pauses: list[float] = []
    if os.environ.get("CDC_BENCH_GCLOG"):  # diagnose latency tails: GC pauses in the daemon
        import gc

        t_gc = [0.0]

        def on_gc(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                t_gc[0] = time.perf_counter()
            else:
                gc_pauses.append((time.perf_counter() - t_gc[0]) * 1000)

        gc.callbacks.append(on_gc)
    started = asyncio.Event()
    task = asyncio.create_task(app.run(started))
    await started.wait()
    assert app.ctx is not None
    bus = app.ctx.bus
    trace: dict[str, list[float]] = {}
    if os.environ.get("CDC_BENCH_TRACE"):  # diagnose latency: commit and fan-out durations, capture -> fan-out age
        journal = bus.journal
        append0, publish0 = journal.append, bus.on_commit

        def traced_append(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            out = append0(*a, **k)
            trace.setdefault("commit_ms", []).append((time.perf_counter() - t) * 1000)
            trace.setdefault("commit_events", []).append(len(out) if isinstance(out, list) else 0)
            return out

        def traced_publish(records: Any) -> None:
            t = time.perf_counter()
            ts = getattr(records[0], "ts", None) if records else None  # (Record fields as of session 15)
            if ts is not None:
                trace.setdefault("capture_to_fanout_ms", []).append(time.time() * 1000 - ts)
            publish0(records)
            trace.setdefault("fanout_ms", []).append((time.perf_counter() - t) * 1000)
            now = time.time_ns()
            for r in records:  # latency bench: the value is the write's wall time in ns
                v = getattr(r, "value", b"")
                if isinstance(v, bytes) and v.startswith(b',"value":"') and v[10:-1].isdigit() and len(v) > 25:
                    trace.setdefault("write_to_fanout_done_ms", []).append((now - int(v[10:-1])) / 1e6)

        journal.append = traced_append  # type: ignore[method-assign]
        bus.on_commit = traced_publish
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().split()
        if not line:
            break
        if line[0] == "go":
            n, batch = int(line[1]), int(line[2])
            i = 0
            while i < n:
                k = min(batch, n - i)
                await bus.emit([KeyChange(timestamp=1700000000000, operation="put", key=f"user:{i + j:08d}", seq=i + j) for j in range(k)])
                i += k
                await asyncio.sleep(0)
            await bus.flush()
            print("SENT", flush=True)
        elif line[0] == "prep":  # prep N FRAME: build the events now, N/FRAME emits, commits capped at FRAME
            n, per = int(line[1]), int(line[2])
            first = app.ctx.hub.latest_id + 1
            chunks = [
                [KeyChange(timestamp=1700000000000, operation="put", key=f"user:{i:08d}", seq=i) for i in range(lo, min(n + first, lo + per))]
                for lo in range(first, n + first, per)
            ]
            # one commit (= one batch=1 frame) per emit; the bench checks the framing it got
            # (frames per subscriber, bytes per event) against the bare server's
            bus.max_batch = per
            if hasattr(bus, "_batch_limit"):
                bus._batch_limit = per
            print(f"PREPPED {first}", flush=True)
        elif line[0] == "send":  # emit the prepared chunks, one per loop turn
            for chunk in chunks:
                await bus.emit(chunk)
                await asyncio.sleep(0)
            await bus.flush()
            print("SENT", flush=True)
    app.stop.set()
    await task
    if trace:
        print(f"TRACE bus: {bus._emitted_seq} emits, {bus.commits} commits, {bus.committed_events} events", file=sys.stderr)
    summary: dict[str, Any] = {}
    for name, xs in trace.items():
        xs.sort()
        summary[name] = {"n": len(xs), "p50": round(xs[len(xs) // 2], 2), "p99": round(xs[int(len(xs) * 0.99)], 2), "max": round(xs[-1], 2)}
        print(f"TRACE {name}: n {len(xs)} p50 {xs[len(xs) // 2]:.2f} p99 {xs[int(len(xs) * 0.99)]:.2f} max {xs[-1]:.2f}", file=sys.stderr)
    if trace and os.environ.get("CDC_BENCH_TRACE_FILE"):
        write_json(os.environ["CDC_BENCH_TRACE_FILE"], {"commits": bus.commits, **summary})
    if gc_pauses:
        gc_pauses.sort()
        print(f"GC: {len(gc_pauses)} collections, max {gc_pauses[-1]:.1f} ms, >5 ms: {sum(p > 5 for p in gc_pauses)}", file=sys.stderr)


def server_main(argv: list[str]) -> None:
    raise_nofile()
    kind, port = argv[0], int(argv[1])
    if kind == "bare":
        asyncio.run(bare_server(port))
    else:
        state = argv[2]
        prefill = int(argv[3]) if len(argv) > 3 else 0
        db = argv[4] if len(argv) > 4 and argv[4] != "-" else None
        if not db:
            from rocksdict import Rdict

            d = Rdict(os.path.join(state, "db"))
            d["x"] = "1"
            d.close()
        asyncio.run(cdc_server(port, state, prefill, db))


class ServerProc:
    def __init__(self, kind: str, *extra: str, env: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.port = free_port()
        self.tmp = tempfile.mkdtemp(prefix="cdcbench-")
        args = [PY, "-m", "bench.bench_delivery", "_server", kind, str(self.port)]
        if kind == "cdc":
            args += [self.tmp, *extra]
        spawn = os.environ.get("CDC_BENCH_PYSPY_SPAWN")  # run the server under py-spy from its start: raw stacks to this file
        if spawn:
            args = ["py-spy", "record", "-r", os.environ.get("CDC_BENCH_PYSPY_RATE", "200"), "-f", "raw", "-o", spawn,
                    *(["--gil"] if os.environ.get("CDC_BENCH_PYSPY_GIL") else []), "--", *args]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, cwd=ROOT, env={**os.environ, **(env or {})}
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        while spawn and line and line.strip() != "READY":  # py-spy's own lines
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != "READY":
            raise RuntimeError(f"{kind} server failed: {line!r}")
        self.profiler = None
        out = os.environ.get("CDC_BENCH_PYSPY")  # profile the server: collapsed stacks to this file
        if out:
            rate = os.environ.get("CDC_BENCH_PYSPY_RATE", "200")
            gil = ["--gil"] if os.environ.get("CDC_BENCH_PYSPY_GIL") else []
            self.profiler = subprocess.Popen(["py-spy", "record", "-p", str(self.proc.pid), "-o", out, "-f", "raw", "-r", rate, "--nonblocking", *gil],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)

    def command(self, line: str, answer: str | None = None) -> str:
        """Send one command line; with ``answer``, wait for the line starting with it and return it."""
        self.proc.stdin.write(line + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        while answer is not None:
            got = self.proc.stdout.readline()  # type: ignore[union-attr]
            if not got:
                raise RuntimeError(f"{self.kind} server ended before {answer}")
            if got.startswith(answer):
                return got.strip()
        return ""

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the server process so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tck = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tck, int(fields[12]) / tck

    def cpu_s(self) -> float:
        """CPU time (user + system) of the server process so far."""
        return sum(self.cpu_split())

    def go(self, n: int, batch: int) -> None:
        self.proc.stdin.write(f"go {n} {batch}\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        if self.profiler is not None:
            self.profiler.send_signal(2)
            self.profiler.wait(30)
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(120 if os.environ.get("CDC_BENCH_PYSPY_SPAWN") else 20)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


# =========================================================================== raw clients


_MARK = b'{"id":'


class RawClient(asyncio.Protocol):
    """A WebSocket client that only counts events (occurrences of ``{"id":`` in text frames).

    Streaming: a frame's payload is counted in place in each chunk the transport hands over
    (no copy into a reassembly buffer), so large array frames (``batch=1``) cost the client one
    C-level ``bytes.count`` per chunk; a mark split across two chunks is found from the last 5
    bytes of the previous chunk. Also counts the data frames (frames with >= 1 event) and their
    payload bytes, so two servers' framing can be compared.
    """

    def __init__(self, path: str, total: list[int], done: asyncio.Event | None = None, target: int = 0) -> None:
        self.path = path
        self.total = total
        self.done = done
        self.target = target
        self.buf = bytearray()  # the handshake response until it is complete
        self.open: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.hello = asyncio.get_running_loop().create_future()
        self.events = 0
        self.frames = 0  # data frames (holding >= 1 event)
        self.payload_bytes = 0  # payload bytes of those frames
        self._hdr = b""  # a frame header split across chunks
        self._left = 0  # payload bytes of the current frame still to come
        self._len = 0  # the current frame's payload length
        self._text = False
        self._cur = 0  # events counted in the current frame
        self._tail = b""  # last <= 5 payload bytes of the current frame (a mark split across chunks)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        # Host with the port: with auth off the daemon refuses a Host naming another port (port 80 when absent)
        port = transport.get_extra_info("peername")[1]
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def _handshake(self, data: bytes) -> bytes | None:
        """Feed handshake bytes; the bytes after the response once it is complete, else None."""
        buf = self.buf
        buf += data
        i = buf.find(b"\r\n\r\n")
        if i < 0:
            return None
        if not buf.startswith(b"HTTP/1.1 101"):
            self.open.set_exception(RuntimeError(bytes(buf[:400]).decode()))
            return None
        rest = bytes(buf[i + 4 :])
        buf.clear()
        self.open.set_result(None)
        return rest

    def data_received(self, data: bytes) -> None:
        if not self.open.done():
            rest = self._handshake(data)
            if not rest:
                return
            data = rest
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        pos = 0
        n = len(data)
        count = 0
        while pos < n:
            left = self._left
            if left:
                end = pos + left if n - pos > left else n
                if self._text:
                    c = data.count(_MARK, pos, end)
                    tail = self._tail
                    if tail:  # a mark split between the previous chunk and this one
                        c += (tail + data[pos : pos + 5]).count(_MARK)
                    self._cur += c
                    count += c
                    if end - pos >= 5:
                        self._tail = data[end - 5 : end]
                    else:
                        self._tail = (tail + data[pos:end])[-5:]
                self._left = left - (end - pos)
                pos = end
                if not self._left:
                    self._frame_end()
                continue
            h = self._hdr + data[pos : pos + 10] if self._hdr else data[pos : pos + 10]
            if len(h) < 2:
                self._hdr = h
                break
            b1 = h[1] & 0x7F
            hl = 4 if b1 == 126 else 10 if b1 == 127 else 2
            if len(h) < hl:
                self._hdr = h
                break
            ln = int.from_bytes(h[2:4], "big") if b1 == 126 else int.from_bytes(h[2:10], "big") if b1 == 127 else b1
            pos += hl - len(self._hdr)
            self._hdr = b""
            self._text = h[0] & 0x0F == 1
            self._len = self._left = ln
            self._cur = 0
            self._tail = b""
            if not ln:
                self._frame_end()
        if count:
            self.events += count
            self.total[0] += count
            if self.done is not None and self.total[0] >= self.target:
                self.done.set()

    def _frame_end(self) -> None:
        if self._cur:
            self.frames += 1
            self.payload_bytes += self._len
        if not self.hello.done():
            self.hello.set_result(None)


async def open_clients(port: int, path: str, n: int, total: list[int], done: asyncio.Event, target: int, wait_hello: bool) -> list[RawClient]:
    loop = asyncio.get_running_loop()
    clients: list[RawClient] = []
    sem = asyncio.Semaphore(100)

    async def one() -> None:
        async with sem:
            c = RawClient(path, total, done, target)
            await loop.create_connection(lambda: c, "127.0.0.1", port)
            await asyncio.wait_for(c.open, 30)
            if wait_hello:
                await asyncio.wait_for(c.hello, 30)
            clients.append(c)

    await asyncio.gather(*(one() for _ in range(n)))
    return clients


def close_clients(clients: list[RawClient]) -> None:
    for c in clients:
        if c.transport is not None:
            c.transport.abort()


# =========================================================================== benchmarks


async def fanout_frames_one(kind: str, subs: int, events: int, per: int) -> dict[str, Any]:
    """One run of the issue-11 fan-out: ``events`` events in frames of ``per`` to ``subs`` clients."""
    srv = ServerProc(kind)
    try:
        if kind == "cdc":
            first = int(srv.command(f"prep {events} {per}", "PREPPED").split()[1])
            path = "/ws/events?batch=1"
        else:
            srv.command(f"prep {events} {per} 1", "PREPPED")
            path = "/"
        total = [0]
        done = asyncio.Event()
        target = subs * events
        clients = await open_clients(srv.port, path, subs, total, done, target, wait_hello=kind == "cdc")
        await asyncio.sleep(0.5)
        cpu0, my0 = srv.cpu_s(), time.process_time()
        t0 = time.perf_counter()
        srv.command("send")
        await asyncio.wait_for(done.wait(), 300)
        dt = time.perf_counter() - t0
        cpu, my = srv.cpu_s() - cpu0, time.process_time() - my0
        frames = sum(c.frames for c in clients)
        nbytes = sum(c.payload_bytes for c in clients)
        close_clients(clients)
        return {
            "events_per_s": target / dt,
            "s": dt,
            "server_cpu_s": cpu,
            "client_cpu_s": my,
            "frames_per_sub": frames / subs,
            "bytes_per_event": nbytes / target,
            **({"first_id": first} if kind == "cdc" else {}),
        }
    finally:
        srv.close()


async def bench_fanout() -> dict[str, Any]:
    """Issue 11: 500 ``batch=1`` subscribers; the same events in the same framing on both sides.

    cdc: the events (pre-built KeyChange Structs) are emitted on the daemon's bus in chunks of
    100 with the bus's commit size capped at 100, so every journal commit (fsync per commit, the
    default) is one chunk and each ``batch=1`` subscriber gets one JSON array frame of 100
    events per commit. Bare: a ``websockets`` server with defaults ``broadcast()``-ing the same
    frames pre-built (byte-identical JSON, ids from 1), one frame per loop turn. The same raw
    client counts events on both sides; events/s = subscribers x events / (send -> last event
    at the last client). Best of ``CDC_BENCH_RUNS`` (3) runs, alternating bare/cdc.
    """
    subs = int(os.environ.get("CDC_BENCH_FANOUT_SUBS", "500"))
    events = int(os.environ.get("CDC_BENCH_FANOUT_EVENTS", "20000"))
    per = int(os.environ.get("CDC_BENCH_FANOUT_FRAME", "100"))
    res: dict[str, list[dict[str, Any]]] = {"bare": [], "cdc": []}
    for _ in range(int(os.environ.get("CDC_BENCH_RUNS", "3"))):
        for kind in ("bare", "cdc"):
            res[kind].append(await fanout_frames_one(kind, subs, events, per))
    best = {k: max(v, key=lambda r: r["events_per_s"]) for k, v in res.items()}
    out: dict[str, Any] = {"subscribers": subs, "events": events, "events_per_frame": per}
    for k in ("bare", "cdc"):
        b = best[k]
        out[k] = {
            "events_per_s": round(b["events_per_s"]),
            "server_cpu_us_per_delivery": round(b["server_cpu_s"] * 1e6 / (subs * events), 3),
            "client_cpu_share": round(b["client_cpu_s"] / b["s"], 2),
            "frames_per_sub": b["frames_per_sub"],
            "bytes_per_event": round(b["bytes_per_event"], 1),
        }
    out["ratio_cdc_over_bare"] = round(best["cdc"]["events_per_s"] / best["bare"]["events_per_s"], 3)
    # like for like only if cdc sent as many frames per subscriber and the same bytes per event
    # (ids may differ by a digit at most)
    out["framing_equal"] = best["cdc"]["frames_per_sub"] == best["bare"]["frames_per_sub"] and abs(
        best["cdc"]["bytes_per_event"] - best["bare"]["bytes_per_event"]
    ) < 1.0
    out["runs_events_per_s"] = {k: [round(r["events_per_s"]) for r in v] for k, v in res.items()}
    return out


async def fanout_one(kind: str, subs: int, events: int, batch: int) -> float:
    srv = ServerProc(kind)
    try:
        total = [0]
        done = asyncio.Event()
        target = subs * events
        path = "/ws/events" + os.environ.get("CDC_BENCH_FANOUT_QUERY", "") if kind == "cdc" else "/"
        clients = await open_clients(srv.port, path, subs, total, done, target, wait_hello=kind == "cdc")
        await asyncio.sleep(0.5)
        t0 = time.perf_counter()
        srv.go(events, batch)
        await asyncio.wait_for(done.wait(), 300)
        dt = time.perf_counter() - t0
        close_clients(clients)
        return target / dt
    finally:
        srv.close()


async def bench_fanout_issue3() -> dict[str, Any]:
    """Issue 3's fan-out (the figure before session 15): 1,000 subscribers, one frame per event on
    both sides, cdc emitting 10 events per ``bus.emit`` with commits uncapped."""
    # CDC_BENCH_FANOUT_SUBS / _QUERY (e.g. "?batch=1") / _EMIT
    subs, events = int(os.environ.get("CDC_BENCH_FANOUT_SUBS", "1000")), 500
    batch = int(os.environ.get("CDC_BENCH_FANOUT_EMIT", "10"))  # events per bus.emit (bare: per loop turn)
    res: dict[str, list[float]] = {"bare": [], "cdc": []}
    for _ in range(int(os.environ.get("CDC_BENCH_RUNS", "3"))):
        for kind in ("bare", "cdc"):
            res[kind].append(await fanout_one(kind, subs, events, batch))
    bare = max(res["bare"])
    cdc = max(res["cdc"])
    return {
        "subscribers": subs,
        "query": os.environ.get("CDC_BENCH_FANOUT_QUERY", ""),
        "events": events,
        "emit_batch": batch,
        "bare_deliveries_per_s": round(bare),
        "cdc_deliveries_per_s": round(cdc),
        "ratio": round(cdc / bare, 3),
        "runs": {k: [round(x) for x in v] for k, v in res.items()},
    }


async def memory_one(kind: str, subs: int) -> float:
    srv = ServerProc(kind)
    try:
        await asyncio.sleep(0.3)
        before = rss_kb(srv.pid)
        total = [0]
        path = "/ws/events" if kind == "cdc" else "/"
        clients = await open_clients(srv.port, path, subs, total, asyncio.Event(), 1 << 60, wait_hello=kind == "cdc")
        await asyncio.sleep(2.0)
        after = rss_kb(srv.pid)
        close_clients(clients)
        return (after - before) * 1024 / subs
    finally:
        srv.close()


async def bench_memory() -> dict[str, Any]:
    """RSS delta of the server process per idle subscriber: RSS 0.3 s after start-up vs 2 s after
    ``CDC_BENCH_MEM_SUBS`` (default 10,000) clients connected (cdc: ``/ws/events``, no filter, each
    got its hello), against a bare ``websockets`` server with defaults holding as many."""
    subs = int(os.environ.get("CDC_BENCH_MEM_SUBS", "10000"))
    bare = await memory_one("bare", subs)
    cdc = await memory_one("cdc", subs)
    return {"subscribers": subs, "bare_bytes_per_sub": round(bare), "cdc_bytes_per_sub": round(cdc), "ratio_cdc_over_bare": round(cdc / bare, 3)}


def raw_lmdb_iterate(path: str) -> dict[str, Any]:
    """The replay baseline, independent of the journal's layout: open the LMDB env read-only,
    list the named databases (the keys of the main database), iterate every value of every one
    of them with a cursor (``iternext(keys=False, values=True)``) and sum their lengths."""
    import lmdb

    env = lmdb.open(path, max_dbs=64, readonly=True, subdir=os.path.isdir(path))
    try:
        t0 = time.perf_counter()
        with env.begin(buffers=False) as txn:
            names = [k for k in txn.cursor().iternext(keys=True, values=False)]
            values = nbytes = 0
            dbs = []
            for name in names:
                try:
                    db = env.open_db(name, txn=txn, create=False)
                except lmdb.Error:  # a plain key of the main database, not a named database
                    continue
                dbs.append(name.decode(errors="replace"))
                for v in txn.cursor(db=db).iternext(keys=False, values=True):
                    values += 1
                    nbytes += len(v)
        return {"s": time.perf_counter() - t0, "values": values, "bytes": nbytes, "dbs": dbs}
    finally:
        env.close()


def raw_lmdb_iterate_in_subprocess(path: str) -> dict[str, Any]:
    """:func:`raw_lmdb_iterate` in a fresh interpreter (``python -m bench.bench_delivery _raw PATH``)."""
    out = subprocess.run([PY, "-m", "bench.bench_delivery", "_raw", path], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return dict(json.loads(out))


async def bench_replay() -> dict[str, Any]:
    """Journal replay to one ``since=0&batch=1`` subscriber vs raw LMDB cursor iteration.

    The daemon's journal is filled first (``CDC_BENCH_REPLAY_EVENTS``, default 1,000,000 key
    changes without values, through ``Journal.append`` in chunks of 20,000, before the daemon
    starts on it). (a) :func:`raw_lmdb_iterate` over that journal's env, in this process; (b) the
    daemon replays the whole journal to one raw client (``/ws/events?since=0&batch=1``): time from
    connect to the last event. Best of 3 each; ratio = (b) / (a) in events per second.
    """
    n = int(os.environ.get("CDC_BENCH_REPLAY_EVENTS", "1000000"))
    t_fill = time.perf_counter()
    srv = ServerProc("cdc", str(n))
    fill_s = time.perf_counter() - t_fill
    try:
        # in a fresh process each time: the baseline does not depend on this process's state
        # (after the memory bench's 20,000 connections it ran ~1.5x slower in-process)
        raws = [raw_lmdb_iterate_in_subprocess(os.path.join(srv.tmp, "journal")) for _ in range(3)]
        raw = min(raws, key=lambda r: r["s"])
        results = []
        for _ in range(3):
            total = [0]
            done = asyncio.Event()
            cpu0, my0 = srv.cpu_s(), time.process_time()
            t0 = time.perf_counter()
            clients = await open_clients(srv.port, "/ws/events?since=0&batch=1", 1, total, done, n, wait_hello=False)
            await asyncio.wait_for(done.wait(), 120)
            dt = time.perf_counter() - t0
            results.append((n / dt, clients[0].payload_bytes, clients[0].frames, srv.cpu_s() - cpu0, time.process_time() - my0))
            close_clients(clients)
        best = max(results)
        raw_eps = n / raw["s"]
        wire = await _replay_bare_transport(n, best[2] - 1 if best[2] > 1 else 1)
        return {
            "events": n,
            "fill_and_start_s": round(fill_s, 1),
            "raw_lmdb": {
                "events_per_s": round(raw_eps),
                "s": round(raw["s"], 3),
                "values": raw["values"],
                "mb": round(raw["bytes"] / 1e6, 1),
                "dbs": raw["dbs"],
                "runs_s": [round(r["s"], 3) for r in raws],
            },
            "cdc_replay": {
                "events_per_s": round(best[0]),
                "mb_sent": round(best[1] / 1e6, 1),
                "frames": best[2],
                "runs_events_per_s": [round(r[0]) for r in results],
                "runs_daemon_cpu_s": [round(r[3], 3) for r in results],
                "runs_client_cpu_s": [round(r[4], 3) for r in results],
            },
            "ratio_cdc_over_raw": round(best[0] / raw_eps, 3),
            "bare_transport": wire,
            "ratio_cdc_over_bare_transport": round(best[0] / wire["events_per_s"], 3),
        }
    finally:
        srv.close()


async def _replay_bare_transport(n: int, frames: int) -> dict[str, Any]:
    """A second baseline for replay: the same events (same JSON shape), pre-built in as many array
    frames, sent by a bare ``websockets`` server to the same raw client -- what moving those bytes
    through a loopback WebSocket costs, with no journal at all. Best of 3."""
    per = -(-n // frames)
    runs = []
    srv = ServerProc("bare")
    try:
        srv.command(f"prep {n} {per} 1", "PREPPED")
        for _ in range(3):
            total = [0]
            done = asyncio.Event()
            clients = await open_clients(srv.port, "/", 1, total, done, n, wait_hello=False)
            await asyncio.sleep(0.2)
            t0 = time.perf_counter()
            srv.command("send")
            await asyncio.wait_for(done.wait(), 120)
            runs.append(n / (time.perf_counter() - t0))
            close_clients(clients)
    finally:
        srv.close()
    return {"events_per_s": round(max(runs)), "frames": frames, "runs_events_per_s": [round(r) for r in runs]}


_LAT_EVENT = re.compile(rb'"timestamp":(\d+),[^{}]*?"value":"(\d+)"')


class LatencyClient(RawClient):
    """Raw client recording write -> receive latency from the value (the write's wall time in ns).

    Cheap per chunk, so that the client (one process, 20 connections) adds little delay: one
    regex pass over each received chunk finds every event's capture timestamp and value (frame
    headers are not parsed: the pattern cannot span two events, and an event cut at the chunk's
    end is kept for the next chunk). Needs ``values=1`` and events whose value is the write's
    wall time in ns (the writer's ``paced`` command)."""

    def __init__(self, path: str, lat: list[float], cap: list[float], total: list[int], done: asyncio.Event, target: int) -> None:
        super().__init__(path, total, done, target)
        self.lat = lat
        self.cap = cap

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        if not self.open.done():
            rest = self._handshake(data)
            if not rest:
                return
            data = rest
        if self.buf:
            self.buf += data
            data = bytes(self.buf)
            self.buf.clear()
        end = 0
        found = 0
        lat, cap = self.lat, self.cap
        for m in _LAT_EVENT.finditer(data):
            v = int(m[2])
            lat.append((now - v) / 1e6)
            cap.append(int(m[1]) - v / 1e6)
            end = m.end()
            found += 1
        rest = data.rfind(b'{"id":', end)  # an event not complete yet
        if rest >= 0:
            self.buf += data[rest:]
        if found:
            self.total[0] += found
            if self.total[0] >= self.target and self.done is not None:
                self.done.set()


async def bench_latency(rate: int = 1000, count: int = 5000, subs: int = 20) -> dict[str, Any]:
    """Write -> subscriber latency: ``count`` single puts paced at ``rate``/s by the writer process
    (which stamps each value with the wall time just before its write and paces by sleeping, no
    busy wait: a write that is late goes out at once), real capture, journal with fsync per
    commit (the daemon's default), ``subs`` subscribers (``values=1``, one frame per event)."""
    from tests.harness.writers import StoreWriter

    rate = int(os.environ.get("CDC_BENCH_LAT_RATE", rate))
    count = int(os.environ.get("CDC_BENCH_LAT_COUNT", count))
    tmp = tempfile.mkdtemp(prefix="cdcbench-lat-")
    db = os.path.join(tmp, "db")
    with StoreWriter(db) as w:
        w.put("seed", "1")
        # the daemon's own view (CDC_BENCH_TRACE): commit durations, write -> end of its fan-out
        trace_file = os.path.join(tmp, "trace.json")
        srv = ServerProc("cdc", "0", db, env={"CDC_BENCH_TRACE": "1", "CDC_BENCH_TRACE_FILE": trace_file})
        daemon: dict[str, Any] = {}
        try:
            lat: list[float] = []
            cap: list[float] = []  # write -> capture timestamp
            total = [0]
            done = asyncio.Event()
            loop = asyncio.get_running_loop()
            clients = []
            for _ in range(subs):
                c = LatencyClient("/ws/events?types=key_change&prefix=lat&values=1", lat, cap, total, done, count * subs)
                await loop.create_connection(lambda c=c: c, "127.0.0.1", srv.port)
                await asyncio.wait_for(c.open, 10)
                clients.append(c)
            (u0, s0), my0, t0 = srv.cpu_split(), time.process_time(), time.perf_counter()
            ans = await asyncio.to_thread(w.cmd, "paced", count=count, rate=rate, prefix="lat", spin=False)
            await asyncio.wait_for(done.wait(), 120)
            wall = time.perf_counter() - t0
            u1, s1 = srv.cpu_split()
            cpu, my = u1 - u0 + s1 - s0, time.process_time() - my0
            close_clients(clients)
        finally:
            srv.close()
            w.kill()
            daemon = read_json(trace_file) or {}
            shutil.rmtree(tmp, ignore_errors=True)
    lat.sort()
    cap.sort()

    return {
        "writes": count,
        "rate_per_s": rate,
        "achieved_rate_per_s": round(count / float(ans["elapsed_s"])),
        "subscribers": subs,
        "p50_ms": pct(lat, 0.5),
        "p99_ms": pct(lat, 0.99),
        "p999_ms": pct(lat, 0.999),
        "max_ms": round(lat[-1], 2),
        "capture_p50_ms": pct(cap, 0.5),
        "capture_p99_ms": pct(cap, 0.99),
        "daemon_cpu_share": round(cpu / wall, 2),
        "daemon_cpu_us_per_write": {"user": round((u1 - u0) * 1e6 / count), "sys": round((s1 - s0) * 1e6 / count)},
        "client_cpu_share": round(my / wall, 2),
        # inside the daemon: write -> end of the fan-out call (per event), commit (LMDB + fsync) durations
        "daemon_write_to_fanout_ms": {k: daemon["write_to_fanout_done_ms"][k] for k in ("p50", "p99", "max")} if "write_to_fanout_done_ms" in daemon else None,
        "daemon_commit_ms": {k: daemon["commit_ms"][k] for k in ("p50", "p99", "max")} if "commit_ms" in daemon else None,
        "daemon_commits": daemon.get("commits"),
    }


async def bench_latency10k() -> dict[str, Any]:
    """The same at 10,000 writes/s (30,000 writes)."""
    return await bench_latency(10_000, 30_000)


async def bench_throughput() -> dict[str, Any]:
    from tests.harness.writers import StoreWriter

    tmp = tempfile.mkdtemp(prefix="cdcbench-tp-")
    db = os.path.join(tmp, "db")
    n = 300_000
    with StoreWriter(db, options={"write_buffer_size": 256 << 20}) as w:
        w.put("seed", "1")
        srv = ServerProc("cdc", "0", db)
        try:
            total = [0]
            done = asyncio.Event()
            clients = await open_clients(srv.port, "/ws/events?types=key_change&prefix=tp&batch=1", 1, total, done, n, wait_hello=True)
            t0 = time.perf_counter()
            ans = await asyncio.to_thread(w.put_many, n, 100, "tp")
            writer_s = float(ans.get("elapsed_s") or (time.perf_counter() - t0))
            await asyncio.wait_for(done.wait(), 300)
            delivered_s = time.perf_counter() - t0
            close_clients(clients)
            return {"puts": n, "batch": 100, "writer_s": round(writer_s, 3), "delivered_s": round(delivered_s, 3), "ratio_writer_over_delivery": round(writer_s / delivered_s, 3)}
        finally:
            srv.close()
            w.kill()
            shutil.rmtree(tmp, ignore_errors=True)


BENCHES = {"fanout": bench_fanout, "fanout_issue3": bench_fanout_issue3, "memory": bench_memory, "replay": bench_replay, "latency": bench_latency, "latency10k": bench_latency10k, "throughput": bench_throughput}


def paced_puts(w: Any, count: int, rate: float = 1000.0) -> None:
    """``count`` puts at ``rate``/s, each value the wall time in ns just before the put goes to the
    writer (so latency includes the pipe hop to the writer process). Pacing by sleeping, not
    spinning, keeps a core free for the daemon."""
    t0 = time.perf_counter()
    for i in range(count):
        d = t0 + i / rate - time.perf_counter()
        if d > 0:
            time.sleep(d)
        w.put(f"lat{i:010d}", str(time.time_ns()))


async def run_named(benches: dict[str, Any], names: list[str]) -> None:
    """Run the named benches in order, one JSON line each (with the bench's own duration)."""
    raise_nofile()
    for name in names:
        t0 = time.perf_counter()
        load0 = os.getloadavg()[0]
        res = await benches[name]()
        res["bench_s"] = round(time.perf_counter() - t0, 1)
        res["load_1min"] = [round(load0, 2), round(os.getloadavg()[0], 2)]  # before, after: the machine is shared
        print(json.dumps({name: res}), flush=True)


GROUPS = {"issue11": ["fanout", "latency", "latency10k", "replay", "memory"]}
"""Named groups of benches: ``issue11`` = the delivery rows of issue 11's targets (BENCHMARKS.md)."""


async def main(names: list[str]) -> None:
    await run_named(BENCHES, [b for name in names for b in GROUPS.get(name, [name])])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_server":
        server_main(sys.argv[2:])
    elif len(sys.argv) > 2 and sys.argv[1] == "_raw":  # the replay baseline, in its own process
        print(json.dumps(raw_lmdb_iterate(sys.argv[2])))
    else:
        unknown = [a for a in sys.argv[1:] if a not in BENCHES and a not in GROUPS]
        if unknown:
            sys.exit(f"usage: bench_delivery.py [{' | '.join([*BENCHES, *GROUPS])}]...  (unknown: {' '.join(unknown)})")
        asyncio.run(main(sys.argv[1:] or list(BENCHES)))
