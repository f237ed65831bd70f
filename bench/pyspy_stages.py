"""Summarise a py-spy ``--format raw`` profile of the daemon by pipeline stage.

Usage: ``python -m bench.pyspy_stages PROFILE.txt [--top 15] [--lines 25]``
(``--lines N``: also the N hottest leaf source lines.)

Each sample is charged to the stage of its innermost ``cdc/`` frame (the cdc code that asked for
the work, so LMDB's C calls count as journal, msgspec's as whoever encoded); samples with no cdc
frame are the event loop itself (asyncio/selectors), threads or start-up. Own time = the leaf frame.
Record the daemon with ``CDC_BENCH_PYSPY_SPAWN=FILE`` (bench_delivery.ServerProc runs it under
``py-spy record -f raw`` from its start; ``CDC_BENCH_PYSPY_GIL=1`` samples only the GIL holder).
"""

from __future__ import annotations

import collections
import re
import sys

STAGES = [  # (stage, path fragment, function regex or None), first match wins
    ("WAL decode (cdc/format)", "cdc/format/", None),
    ("event build + numbering (capture/build)", "cdc/capture/build.py", None),
    ("capture: tailing, file reads, checkpoints", "cdc/capture/", None),
    ("journal append (LMDB)", "cdc/journal/", None),
    ("bus", "cdc/delivery/bus.py", None),
    ("fan-out + frame building (hub)", "cdc/delivery/hub.py", None),
    ("websocket send (wsconn, server/ws)", "cdc/delivery/wsconn.py", None),
    ("websocket send (wsconn, server/ws)", "cdc/server/ws.py", None),
    ("model/wire encoding", "cdc/model/", None),
    ("HTTP front + routes", "cdc/server/", None),
    ("stats, metrics, health", "cdc/delivery/", None),
    ("daemon/sources/other cdc", "cdc/", None),
]

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse(path: str):
    for raw in open(path, encoding="utf-8", errors="replace"):
        raw = raw.rstrip("\n")
        if not raw:
            continue
        stack, _, n = raw.rpartition(" ")
        try:
            count = int(n)
        except ValueError:
            continue
        yield stack.split(";"), count


def frame_path(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame)
    if not m:
        return frame, ""
    return m.group("func"), m.group("path")


def stage_of(frames: list[str]) -> str:
    for fr in reversed(frames):  # leaf first
        func, path = frame_path(fr)
        if "/cdc/" in "/" + path or path.startswith("cdc/"):
            p = path[path.find("cdc/"):]
            for name, frag, _ in STAGES:
                if p.startswith(frag):
                    return name
    leaf_func, leaf_path = frame_path(frames[-1])
    if "selectors" in leaf_path or leaf_func in ("select", "poll"):
        return "event loop: waiting in select"
    if "asyncio" in leaf_path:
        return "event loop: asyncio machinery"
    if "threading" in leaf_path or "concurrent/futures" in leaf_path:
        return "threads: waiting"
    if "<frozen importlib" in leaf_path or "importlib" in leaf_path or any("_find_and_load" in f for f in frames):
        return "start-up imports"
    return "other (no cdc frame)"


def main() -> None:
    argv = sys.argv[1:]
    opts = {"--top": 15, "--lines": 0}
    args = []
    i = 0
    while i < len(argv):
        if argv[i] in opts:
            opts[argv[i]] = int(argv[i + 1])
            i += 2
        else:
            args.append(argv[i])
            i += 1
    top = opts["--top"]
    lines: collections.Counter[str] = collections.Counter()
    stages: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in parse(args[0]):
        total += count
        stages[stage_of(frames)] += count
        func, path = frame_path(frames[-1])
        short = path[path.find("cdc/"):] if "cdc/" in path else path.rsplit("/", 2)[-1] if path else ""
        own[f"{func} ({short})"] += count
        m = _FRAME.match(frames[-1])
        lines[f"{func} ({short}:{m.group('line') if m else '?'})"] += count
    print(f"samples: {total}")
    print("\n| stage | share |\n|---|---:|")
    for name, c in stages.most_common():
        print(f"| {name} | {100 * c / total:.1f} % |")
    print(f"\n| top {top} by own time | share |\n|---|---:|")
    for name, c in own.most_common(top):
        print(f"| `{name}` | {100 * c / total:.1f} % |")
    if opts["--lines"]:
        print(f"\n| top {opts['--lines']} leaf lines | share |\n|---|---:|")
        for name, c in lines.most_common(opts["--lines"]):
            print(f"| `{name}` | {100 * c / total:.1f} % |")


if __name__ == "__main__":
    main()
