"""Run every benchmark in bench/ one after the other and keep their output.

Usage: python -m bench.run_all [--quick]

Each bench prints its own figures with the baseline measured in the same run (see
BENCHMARKS.md for what each measures). The combined output goes to stdout and to
bench/results/<UTC time>.txt, headed by the machine description. --quick runs smaller
workloads where a bench supports it (for a smoke test, not for figures).
Run it on a quiet machine: the benches share the cores with whatever else runs.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{platform.machine()} {model}, {os.cpu_count()} cores, Python {platform.python_version()}, load {load}"


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    runs = [
        ["bench_dump_wal.py"] + (["--scale", "0.1", "--runs", "1"] if quick else []),
        ["bench_capture.py"],
        ["bench_delivery.py"],
        ["bench_edge.py"] + (["latency", "cpu"] if quick else []),
        ["bench_ops.py"] + (["--mb", "5"] if quick else []),
        ["bench_frontend.py"] + (["--events", "10000", "--runs", "1"] if quick else []),
    ]
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_path = os.path.join(HERE, "results", f"{stamp}.txt")
    failed = 0
    with open(out_path, "w") as out:
        head = f"# cdc benchmarks {stamp}\n# {machine()}\n"
        sys.stdout.write(head)
        out.write(head)
        for cmd in runs:
            line = f"\n## {' '.join(cmd)}\n"
            sys.stdout.write(line)
            out.write(line)
            module = "bench." + cmd[0].removesuffix(".py")
            proc = subprocess.run([sys.executable, "-m", module, *cmd[1:]], capture_output=True, text=True, cwd=os.path.dirname(HERE))
            sys.stdout.write(proc.stdout)
            out.write(proc.stdout)
            if proc.returncode:
                failed += 1
                msg = f"(exit {proc.returncode})\n{proc.stderr[-2000:]}\n"
                sys.stdout.write(msg)
                out.write(msg)
    print(f"\nsaved to {out_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
