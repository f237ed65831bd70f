"""Bounded chaos soak (issue 9): exactly-once, in order, values intact, through kill -9 and SIGSTOP.

One real RocksDB store (3 column families, WAL archiving on, small memtables so flushes and WAL
switches happen) written by a ``tests/harness/writers.py`` subprocess running a seeded script: single
puts, batches across column families, deletes, a few delete_range, explicit flushes and
compactions, one clean reopen half way. Every value carries the step that wrote it and a CRC32,
and the writer logs the sequence number of every committed step, so the expected history
(seq, cf, operation, key, value, end_key) is exact.

The real daemon (``python -m cdc serve``, tokens file + JWT secret) runs as a subprocess and is
killed with SIGKILL, SIGSTOPped (then SIGCONT) and SIGSTOPped-then-killed at seeded moments,
restarted after each kill on the same port and state dir. Four subscribers resume throughout
with ``since=<last id>``:

1. WebSocket ``batch=1&values=1``, everything;
2. WebSocket ``prefix=a/&values=1``;
3. WebSocket ``types=key_change,capture_gap,sync_event&values=1`` (no ops events);
4. HTTP long-poll ``/events?since=&timeout=&values=1``, everything.

At the end (writer done, every subscriber caught up to the last write it should see, then a
published marker event delivered to all) each subscriber's events are checked: ids strictly
increasing and unique; the key_change events equal the writer's history, filtered as that
subscriber's filter implies, in order, values byte-exact with a valid checksum; no
``capture_gap`` (WAL archiving keeps every WAL) and no ``reset``. A failure prints, per
subscriber, the first divergence, missing/duplicated/unexpected/out-of-order sequence numbers
as ranges with the writer step and the daemon action that preceded them, the daemon timeline
and the tail of its log. The full report is also written to ``<tmp>/soak-report.txt``.

Knobs (environment): ``CDC_SOAK_SEED`` (default 9), ``CDC_SOAK_STEPS`` (2400 writer steps),
``CDC_SOAK_RATE`` (60 steps/s: ~40 s of writing), ``CDC_SOAK_REOPEN`` (1: the writer closes
and reopens the store half way), ``CDC_SOAK_WAL_DIR`` (1: the WALs live in a separate
``wal_dir``), ``CDC_SOAK_SERVE_ARGS`` (more ``cdc serve`` options, e.g. ``--journal-fsync off``). Bounds scale with ``CDC_TEST_TIMEOUT_FACTOR``.
"""

from __future__ import annotations

import asyncio
import bisect
import http.client
import json
import os
import random
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from cdc.delivery.auth import mint_token
from cdc.model.events import decode_bytes
from tests.harness.daemon import DaemonProcess, child_env
from tests.harness.net import free_port, http_request, http_request_sync
from tests.harness.waiting import TIMEOUT_FACTOR, wait_for
from tests.harness.writers import StoreWriter, _enc

SEED = int(os.environ.get("CDC_SOAK_SEED", "9"))
STEPS = int(os.environ.get("CDC_SOAK_STEPS", "2400"))
RATE = float(os.environ.get("CDC_SOAK_RATE", "60"))
REOPEN = os.environ.get("CDC_SOAK_REOPEN", "1") not in ("0", "", "no")
WAL_DIR = os.environ.get("CDC_SOAK_WAL_DIR", "0") not in ("0", "", "no")
SERVE_ARGS = os.environ.get("CDC_SOAK_SERVE_ARGS", "").split()


ROOT = Path(__file__).resolve().parents[2]
CFS = ("default", "users", "orders")
PREFIXES = (b"a/", b"b/", b"c/")
WATCH_PREFIX = b"a/"
TOKEN = "soak-opaque-token-0123456789abcdef"
SECRET = "soak-secret-0123456789abcdef0123456789abcdef"
WRITER_OPTIONS = {
    "write_buffer_size": 128 << 10,  # every cf: memtables fill, flushes and WAL switches happen
    "max_total_wal_size": 512 << 10,  # a WAL held by one cf's memtable forces that cf to flush
    "wal_ttl_seconds": 3600,  # archiving on: obsolete WALs move to archive/ where cdc reads them
    "wal_size_limit_mb": 1024,
}
HEARTBEAT_MS = 1000
RECV_IDLE_S = 8.0  # > the longest SIGSTOP: a silent connection past this is dropped and resumed

# --------------------------------------------------------------------------- the writer's script


@dataclass(frozen=True)
class Entry:
    """One change the writer committed (one WAL record), as a subscriber must see it."""

    step: int
    cf: str
    op: str  # put | delete | delete_range
    key: bytes
    value: bytes | None = None
    end_key: bytes | None = None
    seq: int = -1

    def wire(self) -> tuple[Any, ...]:
        return (self.seq, self.cf, self.op, self.key, self.value, self.end_key)


def make_value(rng: random.Random, step: int, j: int, cf: str, key: bytes) -> bytes:
    """``step.j|cf|key|payload|crc32``: the step that wrote it and a checksum of the rest."""
    r = rng.random()
    if r < 0.03:  # large: spans 32 KiB WAL blocks
        payload = rng.randbytes(rng.randint(2_000, 20_000)).hex().encode()
    elif r < 0.10:  # not UTF-8: travels as base64
        payload = b"\xff" + rng.randbytes(rng.randint(4, 64))
    else:
        payload = rng.randbytes(rng.randint(4, 100)).hex().encode()
    body = b"%d.%d|%s|%s|" % (step, j, cf.encode(), key) + payload
    return body + b"|%08x" % zlib.crc32(body)


def value_ok(value: bytes) -> bool:
    body, _, crc = value.rpartition(b"|")
    return len(crc) == 8 and b"%08x" % zlib.crc32(body) == crc


def value_step(value: bytes) -> str:
    return value.split(b"|", 1)[0].decode("ascii", "replace")


def make_script(seed: int, steps: int, reopen: bool) -> tuple[list[dict[str, Any]], list[list[Entry]]]:
    """The writer's commands and, per step, the entries it writes (seq filled in later)."""
    rng = random.Random(seed)
    written: dict[str, list[bytes]] = {cf: [] for cf in CFS}
    script: list[dict[str, Any]] = []
    entries: list[list[Entry]] = []

    def key() -> bytes:
        return rng.choice(PREFIXES) + b"%05d" % rng.randrange(500)

    def change(step: int, j: int, kind: str) -> Entry:
        cf = rng.choice(CFS)
        if kind == "put":
            k = key()
            written[cf].append(k)
            return Entry(step, cf, "put", k, make_value(rng, step, j, cf, k))
        if kind == "delete":
            k = rng.choice(written[cf]) if written[cf] and rng.random() < 0.8 else key()
            return Entry(step, cf, "delete", k)
        p = rng.choice(PREFIXES)
        lo = rng.randrange(500)
        start, end = p + b"%05d" % lo, p + b"%05d" % (lo + rng.randint(1, 30))
        r = rng.random()
        if r < 0.15:  # starts before the watched prefix, ends inside it
            start, end = b"0/" + b"%05d" % lo, WATCH_PREFIX + b"%05d" % rng.randrange(1, 500)
        elif r < 0.3:  # starts inside one prefix, ends in the next
            start, end = b"a/" + b"%05d" % lo, b"b/" + b"%05d" % rng.randrange(500)
        return Entry(step, cf, "delete_range", start, None, end)

    def cmd(e: Entry) -> dict[str, Any]:
        c: dict[str, Any] = {"op": e.op, "cf": None if e.cf == "default" else e.cf}
        if e.op == "delete_range":
            c.update(start=_enc(e.key), end=_enc(e.end_key or b""))
        else:
            c["key"] = _enc(e.key)
            if e.value is not None:
                c["value"] = _enc(e.value)
        return c

    bursts: set[int] = set()  # a few runs of steps written as fast as possible: capture lags behind
    for _ in range(max(1, steps // 500)):
        a = rng.randrange(steps)
        bursts.update(range(a, min(steps, a + rng.randint(100, 300))))
    for step in range(steps):
        r = rng.random()
        if reopen and step == steps // 2:
            script.append({"op": "reopen"})
            entries.append([])
        elif r < 0.012:
            script.append({"op": "flush", "cf": rng.choice((None, "users", "orders"))})
            entries.append([])
        elif r < 0.016:
            script.append({"op": "compact", "cf": rng.choice((None, "users", "orders"))})
            entries.append([])
        elif r < 0.56:
            kind = "put" if r < 0.46 else ("delete" if r < 0.545 else "delete_range")
            e = change(step, 0, kind)
            script.append(cmd(e))
            entries.append([e])
        else:
            batch = [
                change(step, j, rng.choices(("put", "delete", "delete_range"), (75, 21, 4))[0])
                for j in range(rng.randint(2, 8))
            ]
            script.append({"op": "batch", "ops": [cmd(e) for e in batch]})
            entries.append(batch)
        if step in bursts:
            script[-1]["nowait"] = True
    return script, entries


def writer_marks(script: list[dict[str, Any]], step_times: dict[int, float]) -> list[tuple[float, str]]:
    """Timeline entries for the writer's reopen and bursts."""
    out: list[tuple[float, str]] = []
    n = 0
    while n < len(script):
        if script[n].get("op") == "reopen" and n in step_times:
            out.append((step_times[n], f"writer: reopen at step {n}"))
        if script[n].get("nowait"):
            m = n
            while m + 1 < len(script) and script[m + 1].get("nowait"):
                m += 1
            if n in step_times:
                out.append((step_times[n], f"writer: burst of steps {n}..{m}"))
            n = m
        n += 1
    return out


def committed_history(entries: list[list[Entry]], log: list[dict[str, Any]]) -> tuple[list[Entry], list[str], dict[int, float]]:
    """The entries with their sequence numbers, from the writer's log; anomalies; step -> commit time."""
    out: list[Entry] = []
    anomalies: list[str] = []
    times: dict[int, float] = {}
    prev: int | None = None
    for rec in log:
        i = rec["i"]
        times[i] = rec["t"]
        if "error" in rec:
            anomalies.append(f"writer step {i} failed: {rec['error']}")
            continue
        batch = entries[i]
        last = int(rec["seq"])
        first = last - len(batch) + 1
        if prev is not None and batch and first != prev + 1:
            anomalies.append(f"writer step {i}: seq {first}..{last} does not follow {prev}")
        for n, e in enumerate(batch):
            out.append(Entry(e.step, e.cf, e.op, e.key, e.value, e.end_key, first + n))
        prev = last
    return out, anomalies, times


# --------------------------------------------------------------------------- subscribers' filters


def _prefix_successor(p: bytes) -> bytes | None:
    b = bytearray(p)
    while b and b[-1] == 0xFF:
        b.pop()
    if not b:
        return None
    b[-1] += 1
    return bytes(b)


def matches_prefix(e: Entry, prefix: bytes = WATCH_PREFIX) -> bool:
    """The contract's rule: a key under the prefix; a delete_range whose [key, end_key) overlaps it."""
    if e.end_key is None:
        return e.key.startswith(prefix)
    hi = _prefix_successor(prefix)
    return (hi is None or e.key < hi) and e.end_key > prefix


def _all(e: Entry) -> bool:
    return True


# --------------------------------------------------------------------------- the daemon


class ChaosDaemon(DaemonProcess):
    """``python -m cdc serve`` on a fixed port and state dir (the harness's subprocess daemon, which
    keeps the timeline of what was done to it), with the soak's store, tokens and options."""

    def __init__(self, tmp: Path, db: str, wal_dir: str | None = None) -> None:
        self.tmp = tmp
        self.db = db
        self.wal_dir = wal_dir
        self.state = tmp / "state"
        (tmp / "tokens").write_text(f"# soak\n{TOKEN}\n")
        (tmp / "jwt-secret").write_text(SECRET + "\n")
        args = ["--db", db, "--state-dir", str(self.state), "--host", "127.0.0.1",
                "--tokens-file", str(tmp / "tokens"), "--jwt-secret-file", str(tmp / "jwt-secret"),
                "--heartbeat-ms", str(HEARTBEAT_MS), "--log-level", "info",
                *(["--wal-dir", wal_dir] if wal_dir else []), *SERVE_ARGS]  # fmt: skip
        port = free_port()
        env = child_env({"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)})
        super().__init__(["-m", "cdc", "serve", *args, "--port", str(port)], port, tmp / "daemon.log", env=env, cwd=tmp,
                         admin=mint_token(SECRET, "soak", admin=True, values=True, ttl=3600))


CHAOS_KINDS = {"kill9": 35, "stop": 25, "stop_flood": 15, "stop_kill": 13, "kill_starting": 12}
FLOOD_WRITES = 40_000  # > the default inotify queue (16384 events): notifications get lost


def flood(d: ChaosDaemon, n: int) -> None:
    """``n`` one-byte appends alternating between two files in the WAL dir: one IN_MODIFY each
    (alternating names are never merged), for every inotify watch the daemon has there."""
    fds = [os.open(os.path.join(d.wal_dir or d.db, f"soak-flood-{c}"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) for c in "ab"]
    try:
        for i in range(n):
            os.write(fds[i & 1], b".")
    finally:
        for fd in fds:
            os.close(fd)


async def chaos(d: ChaosDaemon, rng: random.Random, writer_done: asyncio.Event, errors: list[str]) -> None:
    """Until the writer is done: wait 1.5-4.5 s, then one of: kill -9 (restart after 0-1.5 s);
    SIGSTOP for 0.3-3 s; SIGSTOP while more file changes happen in the store dir than inotify
    can queue (notifications lost), then 0.5-2.5 s more; SIGSTOP then kill -9; kill -9, restart and kill -9 again 0.05-0.6 s into
    the start-up (imports, journal open, catch-up), restart."""
    kinds = list(CHAOS_KINDS)
    rng.shuffle(kinds)  # each kind happens at least once (typically within the first ~30 s)
    n = 0
    while not writer_done.is_set():
        try:
            await asyncio.wait_for(writer_done.wait(), rng.uniform(1.5, 4.5))
            break
        except TimeoutError:
            pass
        kind = kinds[n] if n < len(kinds) else rng.choices(list(CHAOS_KINDS), list(CHAOS_KINDS.values()))[0]
        n += 1
        try:
            if kind == "stop":
                d.pause()
                await asyncio.sleep(rng.uniform(0.3, 3.0))
                d.resume()
                continue
            if kind == "stop_flood":
                d.pause()
                t = time.monotonic()
                await asyncio.to_thread(flood, d, FLOOD_WRITES)
                d.note(f"{FLOOD_WRITES} file writes in the store dir (inotify overflow) in {time.monotonic() - t:.2f} s")
                await asyncio.sleep(rng.uniform(0.5, 2.5))
                d.resume()
                continue
            if kind == "stop_kill":
                d.pause()
                await asyncio.sleep(rng.uniform(0.2, 1.5))
            d.kill9()
            await asyncio.sleep(rng.uniform(0.0, 1.5))  # the writer goes on while the daemon is down
            if kind == "kill_starting":
                d.start(ready=False)
                await asyncio.sleep(rng.uniform(0.05, 0.6))  # imports, journal open, catch-up, first clients
                d.kill9()
            await asyncio.to_thread(d.start)
        except Exception as exc:  # noqa: BLE001 - a daemon that cannot restart ends the chaos; reported
            errors.append(f"daemon {kind} / restart failed: {type(exc).__name__}: {str(exc)[-1500:]}")
            d.note(f"chaos stopped: {kind} failed")
            return


# --------------------------------------------------------------------------- subscribers


@dataclass
class Sub:
    name: str
    query: str  # WebSocket query (without since/token), or /events parameters
    match: Callable[[Entry], bool]
    poll: bool = False
    allowed_types: frozenset[str] | None = None
    events: list[tuple[dict[str, Any], int]] = field(default_factory=list)  # (event, connection no.)
    connections: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    resets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cursor: int = 0

    @property
    def last_id(self) -> int:
        return self.cursor

    def add(self, ev: dict[str, Any], conn: int) -> None:
        self.events.append((ev, conn))
        self.cursor = max(self.cursor, int(ev["id"]))

    def seen_seq(self, seq: int) -> bool:
        for ev, _ in reversed(self.events):
            if ev.get("type") == "key_change":
                return int(ev["seq"]) >= seq
        return False

    def seen_id(self, id_: int) -> bool:
        return self.cursor >= id_


async def run_ws(sub: Sub, port: int, rng: random.Random) -> None:
    """Receive, resuming with ``since=<last id>`` after every drop; the client also leaves on its
    own every 1-6 s (seeded), so resumes race the writer's live stream, not only restarts."""
    backoff = 0.05
    idle = RECV_IDLE_S * TIMEOUT_FACTOR
    while True:
        url = f"ws://127.0.0.1:{port}/ws/events?since={sub.last_id}&{sub.query}&token={TOKEN}"
        try:
            async with websockets.connect(url, max_size=None, open_timeout=3, close_timeout=1) as ws:
                sub.connections += 1
                conn = sub.connections
                now = time.monotonic()
                leave, idle_at = now + rng.uniform(1.0, 6.0), now + idle
                while True:
                    now = time.monotonic()
                    if now >= leave:
                        sub.drops["client left"] += 1
                        break
                    try:
                        raw = await asyncio.wait_for(ws.recv(), min(leave, idle_at) - now)
                    except TimeoutError:
                        if time.monotonic() >= leave:
                            continue
                        raise
                    idle_at = time.monotonic() + idle
                    backoff = 0.05
                    msg = json.loads(raw)
                    for m in msg if isinstance(msg, list) else [msg]:
                        if "id" in m:
                            sub.add(m, conn)
                        elif m.get("type") == "reset":
                            sub.resets.append(m)
                        elif m.get("type") == "error":
                            sub.notes.append(f"error frame: {m}")
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            sub.drops[f"closed {rcvd.code if rcvd else 'abnormally'}"] += 1
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            sub.drops[type(exc).__name__] += 1
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 0.5)


async def run_poll(sub: Sub, port: int) -> None:
    backoff = 0.05
    while True:
        path = f"/events?since={sub.cursor}&timeout=5&{sub.query}"
        try:
            r = await http_request(port, "GET", path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=12 * TIMEOUT_FACTOR)
        except (OSError, http.client.HTTPException) as exc:
            sub.drops[type(exc).__name__] += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 0.5)
            continue
        backoff = 0.05
        if r.status != 200:
            sub.notes.append(f"HTTP {r.status}: {r.body[:200]!r}")
            await asyncio.sleep(0.2)
            continue
        sub.connections += 1
        body = r.json()
        if "reset" in body:
            sub.resets.append(body["reset"])
        for ev in body["events"]:
            sub.add(ev, sub.connections)
        sub.cursor = max(sub.cursor, int(body["cursor"]))


# --------------------------------------------------------------------------- verification


def wire_tuple(ev: dict[str, Any]) -> tuple[Any, ...]:
    value = decode_bytes(ev["value"], ev.get("value_encoding")) if "value" in ev else None
    end = decode_bytes(ev["end_key"], ev.get("end_key_encoding")) if "end_key" in ev else None
    return (int(ev["seq"]), ev.get("cf", "default"), ev["operation"], decode_bytes(ev["key"], ev.get("key_encoding")), value, end)


def _show(t: tuple[Any, ...] | None) -> str:
    if t is None:
        return "(nothing)"
    seq, cf, op, key, value, end = t
    s = f"seq {seq} {cf} {op} {key!r}"
    if end is not None:
        s += f"..{end!r}"
    if value is not None:
        s += f" value[{len(value)}] from step {value_step(value)}{'' if value_ok(value) else ' BAD CHECKSUM'}"
    return s


def _ranges(seqs: list[int], order: dict[int, int]) -> list[tuple[int, int, int]]:
    """Runs of ``seqs`` that are consecutive in the subscriber's expected stream (``order``: seq ->
    position): (first seq, last seq, count)."""
    out: list[list[int]] = []  # [first seq, last seq, last position, count]
    for s in sorted(seqs, key=lambda s: order.get(s, s)):
        pos = order.get(s, -2)
        if out and pos >= 0 and pos == out[-1][2] + 1:
            out[-1][1:] = [s, pos, out[-1][3] + 1]
        else:
            out.append([s, s, pos, 1])
    return [(a, b, n) for a, b, _, n in out]


class Context:
    """Maps a sequence number to the writer step, its commit time and the daemon's surrounding actions."""

    def __init__(self, history: list[Entry], step_times: dict[int, float], timeline: list[tuple[float, str]], t0: float) -> None:
        self.by_seq = {e.seq: e for e in history}
        self.step_times = step_times
        self.timeline = timeline
        self.times = [t for t, _ in timeline]
        self.t0 = t0

    def at(self, seq: int) -> str:
        e = self.by_seq.get(seq)
        if e is None:
            return f"seq {seq}: not written by the writer"
        t = self.step_times.get(e.step)
        if t is None:
            return f"seq {seq}: step {e.step} (no commit time)"
        i = bisect.bisect_right(self.times, t)
        before = self.timeline[i - 1] if i else None
        after = self.timeline[i] if i < len(self.timeline) else None
        s = f"step {e.step} committed at +{t - self.t0:.2f} s"
        if before:
            s += f"; daemon before: {before[1]} at +{before[0] - self.t0:.2f} s"
        if after:
            s += f"; next: {after[1]} at +{after[0] - self.t0:.2f} s"
        return s


def verify(sub: Sub, history: list[Entry], ctx: Context) -> list[str]:
    """What is wrong with what ``sub`` received (empty: nothing)."""
    problems: list[str] = []
    events = sub.events
    # ids strictly increasing (no duplicate, nothing out of order), whatever the type
    prev: tuple[int, int] | None = None
    bad_ids: list[str] = []
    for ev, conn in events:
        i = int(ev["id"])
        if prev is not None and i <= prev[0]:
            bad_ids.append(f"id {i} ({ev['type']}, connection {conn}) after id {prev[0]} (connection {prev[1]})")
        prev = (i, conn)
    if bad_ids:
        problems.append(f"{len(bad_ids)} ids not strictly increasing; first: " + "; ".join(bad_ids[:5]))
    types = Counter(ev["type"] for ev, _ in events)
    if sub.allowed_types is not None and set(types) - sub.allowed_types:
        problems.append(f"types outside the filter: {dict((t, n) for t, n in types.items() if t not in sub.allowed_types)}")
    for ev, _ in events:
        if ev["type"] == "capture_gap":
            problems.append(
                f"capture_gap id {ev['id']}: seq {ev.get('from_seq')}..{ev.get('to_seq')} ({ev.get('reason')}); "
                f"{ctx.at(int(ev.get('from_seq', -1)))}"
            )
    if sub.resets:
        problems.append(f"{len(sub.resets)} reset(s): {sub.resets[:3]}")

    kcs = [(ev, conn) for ev, conn in events if ev["type"] == "key_change"]
    got = [wire_tuple(ev) for ev, _ in kcs]
    want = [e.wire() for e in history if sub.match(e)]
    if got == want:
        return problems
    k = next((n for n, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    where = f"id {kcs[k][0]['id']}, connection {kcs[k][1]}" if k < len(kcs) else "end of stream"
    problems.append(
        f"key_change stream differs: {len(got)} received, {len(want)} expected; first divergence at #{k} ({where}):\n"
        f"      expected {_show(want[k] if k < len(want) else None)}\n"
        f"      received {_show(got[k] if k < len(got) else None)}"
        + (f"\n      expected seq there: {ctx.at(want[k][0])}" if k < len(want) else "")
    )
    want_by_seq = {t[0]: t for t in want}
    got_seqs = [t[0] for t in got]
    counts = Counter(got_seqs)
    missing = sorted(set(want_by_seq) - set(counts))
    dups = sorted(s for s, c in counts.items() if c > 1)
    extra = sorted(set(counts) - set(want_by_seq))
    order = {t[0]: n for n, t in enumerate(want)}
    if missing:
        rs = _ranges(missing, order)
        problems.append(
            f"missing {len(missing)} change(s) in {len(rs)} run(s): "
            + "; ".join(f"seq {a}..{b} ({n}) [{ctx.at(a)}]" for a, b, n in rs[:6])
            + (" ..." if len(rs) > 6 else "")
        )
    if dups:
        rs = _ranges(dups, order)
        detail = []
        for a, b, n in rs[:6]:
            ids = [(ev["id"], conn) for (ev, conn), t in zip(kcs, got) if t[0] == a]
            detail.append(f"seq {a}..{b} ({n}) as (id, connection) {ids} [{ctx.at(a)}]")
        problems.append(
            f"duplicated {len(dups)} change(s) ({sum(counts[s] - 1 for s in dups)} extra deliveries; same id twice = "
            f"delivery duplicate, two ids = journaled twice) in {len(rs)} run(s): " + "; ".join(detail)
        )
    if extra:
        problems.append(f"{len(extra)} change(s) the writer did not make (or filtered out): " + "; ".join(
            _show(next(t for t in got if t[0] == s)) for s in extra[:5]))
    out_of_order = [(p, s) for p, s in zip(got_seqs, got_seqs[1:]) if s < p]
    if out_of_order:
        problems.append(f"{len(out_of_order)} change(s) out of order; first: seq {out_of_order[0][1]} after {out_of_order[0][0]}")
    differ = [(want_by_seq[t[0]], t) for t in got if t[0] in want_by_seq and want_by_seq[t[0]] != t]
    if differ:
        lines = [f"{len(differ)} change(s) with the right seq but other content; first:"]
        for w, g in differ[:3]:
            lines.append(f"      expected {_show(w)}\n      received {_show(g)}")
        problems.append("\n".join(lines))
    return problems


# --------------------------------------------------------------------------- the test


async def _settle(cond: Callable[[], Any], timeout: float, what: str, notes: list[str]) -> bool:
    try:
        await wait_for(cond, timeout, what, interval=0.1)
        return True
    except AssertionError as exc:
        notes.append(str(exc))
        return False


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(int(240 * TIMEOUT_FACTOR))
async def test_chaos_soak(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    t_begin = time.monotonic()
    script, entries = make_script(SEED, STEPS, REOPEN)
    script_path, log_path = tmp_path / "script.ndjson", tmp_path / "writer-log.ndjson"
    script_path.write_text("".join(json.dumps(c) + "\n" for c in script))
    db = str(tmp_path / "db")
    wal_dir = str(tmp_path / "wal") if WAL_DIR else None
    writer = StoreWriter(db, cfs=["users", "orders"], options=dict(WRITER_OPTIONS, **({"wal_dir": wal_dir} if wal_dir else {})))
    request.addfinalizer(writer.kill)  # also after a pytest-timeout, when the finally below may not run
    writer.start()
    d = ChaosDaemon(tmp_path, db, wal_dir)
    request.addfinalizer(d.shutdown)
    subs = [
        Sub("ws-all-batch", "batch=1&values=1", _all),
        Sub("ws-prefix", f"prefix={WATCH_PREFIX.decode()}&values=1", matches_prefix),
        Sub("ws-types", "types=key_change,capture_gap,sync_event&values=1", _all,
            allowed_types=frozenset({"key_change", "capture_gap", "sync_event"})),
        Sub("longpoll-all", "values=1", _all, poll=True),
    ]  # fmt: skip
    tasks: list[asyncio.Task[Any]] = []
    failures: list[str] = []
    notes: list[str] = []
    chaos_errors: list[str] = []
    t0 = time.time()
    try:
        await asyncio.to_thread(d.start)
        tasks = [
            asyncio.create_task(run_poll(s, d.port) if s.poll else run_ws(s, d.port, random.Random(f"{SEED}-{s.name}")), name=s.name)
            for s in subs
        ]
        await wait_for(lambda: all(s.connections for s in subs), 15, "every subscriber connected", interval=0.05)

        t0 = time.time()
        d.note("writer starts")
        writer_done = asyncio.Event()
        writer_task = asyncio.create_task(writer.acmd("script", path=str(script_path), log=str(log_path), rate=RATE))
        writer_task.add_done_callback(lambda _: writer_done.set())
        chaos_task = asyncio.create_task(chaos(d, random.Random(SEED * 7919 + 1), writer_done, chaos_errors))
        writer_bound = (STEPS / RATE + 60) * TIMEOUT_FACTOR
        try:
            answer = await asyncio.wait_for(asyncio.shield(writer_task), writer_bound)
            d.note(f"writer done: {answer['steps']} steps in {answer['elapsed_s']:.1f} s, last seq {answer['seq']}")
        except Exception as exc:  # noqa: BLE001 - reported; what was logged is still checked
            failures.append(f"writer failed or did not finish within {writer_bound:.0f} s: {type(exc).__name__}: {exc}")
            writer.kill()
            writer_done.set()
        await asyncio.wait_for(chaos_task, 60 * TIMEOUT_FACTOR)
        failures.extend(chaos_errors)

        log = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
        history, anomalies, step_times = committed_history(entries, log)
        failures.extend(anomalies)
        ctx = Context(history, step_times, d.timeline, t0)
        daemon_up = d.proc is not None and d.proc.poll() is None and not chaos_errors

        if daemon_up:
            # caught up: each subscriber has the last change it should see ...
            for s in subs:
                want = [e for e in history if s.match(e)]
                if want:
                    last = want[-1].seq
                    await _settle(lambda s=s, last=last: s.seen_seq(last), 30, f"{s.name} to receive seq {last}", notes)
            # ... then a marker published after everything: delivered to all, so nothing is in flight
            r = await http_request(d.port, "POST", "/publish", json.dumps({"type": "sync_event", "status": "completed", "details": {"soak": "end"}}).encode(),
                                   {"Authorization": f"Bearer {d.admin}", "Content-Type": "application/json"})  # fmt: skip
            if r.status == 202:
                marker = int(r.json()["id"])
                await _settle(lambda: all(s.seen_id(marker) for s in subs), 15, f"every subscriber to receive marker id {marker}", notes)
            else:
                failures.append(f"publishing the end marker: HTTP {r.status} {r.body[:200]!r}")
            ready_state: list[Any] = []

            def ready() -> bool:
                try:
                    res = http_request_sync(d.port, "GET", "/health/ready", timeout=5)
                except OSError as exc:
                    ready_state[:] = [f"{type(exc).__name__}: {exc}"]
                    return False
                ready_state[:] = [res.status, res.body[:300].decode(errors="replace")]
                return res.status == 200

            if not await _settle(ready, 10, "/health/ready 200", notes):
                failures.append(f"/health/ready not 200 at the end: {ready_state}")
        else:
            failures.append("the daemon is not running at the end")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        d.shutdown()
        writer.kill()

    for s in subs:
        for p in verify(s, history, ctx):
            failures.append(f"[{s.name}] {p}")

    # ---- the report
    elapsed = time.monotonic() - t_begin
    actions = Counter(w.split(" ")[0] for _, w in d.timeline if w.split(" ")[0] in ("kill", "SIGSTOP"))
    lines = [
        f"chaos soak: seed {SEED}, {STEPS} steps at {RATE}/s{', wal_dir' if wal_dir else ''}{' ' + ' '.join(SERVE_ARGS) if SERVE_ARGS else ''}, {len(history)} changes "
        f"(seq {history[0].seq if history else '-'}..{history[-1].seq if history else '-'}), "
        f"{actions['kill']} kill -9, {actions['SIGSTOP']} SIGSTOP, {d.incarnation} daemon incarnations, {elapsed:.1f} s total",
    ]
    for s in subs:
        types = Counter(ev["type"] for ev, _ in s.events)
        lines.append(f"  {s.name}: {len(s.events)} events {dict(types)}, {s.connections} connections/polls, drops {dict(s.drops)}")
        lines.extend(f"    note: {n}" for n in s.notes[:5])
    health = sorted({(ev.get("probe"), ev.get("status"), ev.get("reason", "")[:120]) for ev, _ in subs[0].events if ev["type"] == "health_change" and ev.get("status") == "unhealthy"})
    if health:
        lines.append("  unhealthy transitions seen: " + "; ".join(f"{p} {r!r}" for p, _, r in health[:8]))
    lines.append("  timeline:")
    lines.extend(f"    +{t - t0:6.2f} s  {w}" for t, w in sorted(d.timeline + writer_marks(script, step_times)))
    lines.extend(f"  note: {n}" for n in notes)
    summary = "\n".join(lines)
    if failures:
        daemon_log = d.log().splitlines()
        warn = [ln for ln in daemon_log if any(w in ln for w in ("WARNING", "ERROR", "CRITICAL", "Traceback", "gap"))]
        report = "\n".join(
            ["CHAOS SOAK FAILED", *(f"- {f}" for f in failures), summary,
             "daemon warnings/errors (last 25):", *warn[-25:], "daemon log tail (40 lines):", *daemon_log[-40:]]
        )  # fmt: skip
        (tmp_path / "soak-report.txt").write_text(report + "\n")
        pytest.fail(report + f"\n(full report: {tmp_path / 'soak-report.txt'})", pytrace=False)
    print(summary)
    (tmp_path / "soak-report.txt").write_text(summary + "\n")
    assert actions["kill"] >= 2 and actions["SIGSTOP"] >= 2, f"too little chaos for a soak:\n{summary}"


# --------------------------------------------------------------------------- the checker itself (fast)


def _event(e: Entry, id_: int) -> dict[str, Any]:
    """``e`` as the daemon sends it with values=1."""
    from cdc.model.events import encode_bytes

    ev: dict[str, Any] = {"id": id_, "type": "key_change", "timestamp": 0, "operation": e.op, "cf": e.cf, "seq": e.seq}
    for name, data in (("key", e.key), ("end_key", e.end_key), ("value", e.value)):
        if data is not None:
            ev[name], enc = encode_bytes(data)
            if enc:
                ev[name + "_encoding"] = enc
    return ev


def test_verify_names_what_went_wrong() -> None:
    """The soak's checker: a faithful stream passes; a lost, a duplicated, a reordered and a damaged
    change, a repeated id, a gap and a type outside the filter are each reported."""
    script, entries = make_script(3, 60, reopen=True)
    log = [{"i": i, "seq": 0, "t": 1000.0 + i} for i in range(len(script))]
    seq = 0
    for i, batch in enumerate(entries):  # the seqs a single writer gets
        seq += len(batch)
        log[i]["seq"] = seq
    history, anomalies, times = committed_history(entries, log)
    assert anomalies == [] and [e.seq for e in history] == list(range(1, seq + 1))
    ctx = Context(history, times, [(1000.5, "kill -9 pid 1")], 1000.0)
    good = Sub("ok", "", _all)
    for n, e in enumerate(history):
        good.add(_event(e, n + 1), 1)
    assert verify(good, history, ctx) == []
    pre = Sub("prefix", "", matches_prefix)
    for n, e in enumerate(e for e in history if matches_prefix(e)):
        pre.add(_event(e, n + 1), 1)
    assert verify(pre, history, ctx) == []
    holes = Sub("prefix-holes", "", matches_prefix)
    mine = [e for e in history if matches_prefix(e)]
    for n, e in enumerate(mine):
        if not 3 <= n < 6:  # three changes in a row of this subscriber's stream (not seq-adjacent)
            holes.add(_event(e, n + 1), 1)
    assert f"missing 3 change(s) in 1 run(s): seq {mine[3].seq}..{mine[5].seq} (3)" in "\n".join(verify(holes, history, ctx))

    bad = Sub("bad", "", _all, allowed_types=frozenset({"key_change"}))
    evs = [_event(e, n + 1) for n, e in enumerate(history)]
    lost = evs.pop(10)
    evs.insert(20, dict(evs[20]))  # delivered twice, same id
    evs[30], evs[31] = evs[31], evs[30]  # out of order
    put = next(i for i, ev in enumerate(evs) if i > 40 and "value" in ev and "value_encoding" not in ev)
    evs[put]["value"] = evs[put]["value"][:-1] + ("0" if evs[put]["value"][-1] != "0" else "1")  # one byte changed
    evs.append({"id": 10_000, "type": "capture_gap", "timestamp": 0, "from_seq": 5, "to_seq": 6, "reason": "test"})
    for ev in evs:
        bad.add(ev, 1)
    report = "\n".join(verify(bad, history, ctx))
    assert f"missing 1 change(s) in 1 run(s): seq {lost['seq']}..{lost['seq']}" in report
    assert "duplicated 1 change(s)" in report and "ids not strictly increasing" in report
    assert "out of order" in report
    assert "with the right seq but other content" in report and "BAD CHECKSUM" in report
    assert "capture_gap id 10000: seq 5..6" in report and "types outside the filter" in report
    assert "daemon before: kill -9 pid 1" in report or "next: kill -9 pid 1" in report
