"""``cdc dump-wal`` on a store that a real writer keeps open (and keeps writing)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading

from tests.harness.writers import StoreWriter


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cdc", "dump-wal", *args], capture_output=True, timeout=60)


def wal_files(path: str) -> list[str]:
    return sorted(f for f in os.listdir(path) if f.endswith(".log"))


def test_incomplete_tail_of_newest_wal_is_a_note(tmp_path):
    db = os.fspath(tmp_path / "db")
    big = "B" * 100_000  # spans blocks: FIRST/MIDDLE/LAST fragments
    with StoreWriter(db, options={"write_buffer_size": 64 << 20}) as w:
        for i in range(20):
            w.put(f"k{i:03d}", f"v{i}")
        w.put("big", big)
        snap = os.fspath(tmp_path / "snap")
        shutil.copytree(db, snap)  # the writer still holds the DB open: its WAL is on disk
    (newest,) = wal_files(snap)
    wal = os.path.join(snap, newest)
    data = open(wal, "rb").read()
    full = cli(snap)
    assert full.returncode == 0 and full.stderr == b""
    assert [json.loads(x)["key"] for x in full.stdout.splitlines()] == [f"k{i:03d}" for i in range(20)] + ["big"]

    # the store is in the middle of writing the big record (cut inside its second block)
    with open(wal, "wb") as f:
        f.write(data[: len(data) - 40_000])
    p = cli(snap)
    assert p.returncode == 0, p.stderr
    keys = [json.loads(x)["key"] for x in p.stdout.splitlines()]
    assert keys == [f"k{i:03d}" for i in range(20)]
    err = p.stderr.decode().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cdc: note: {newest} @0x") and "incomplete last record" in err[0], err

    # the same file given alone: a truncated file is an error
    p = cli(wal)
    assert p.returncode == 1 and p.stdout.splitlines() == full.stdout.splitlines()[:20]
    assert p.stderr.decode().splitlines()[-1].endswith(": truncated record")

    # a truncated *older* WAL of a directory is damage, whatever comes after it
    number = int(newest.split(".")[0])
    older = os.path.join(snap, f"{number - 1:06d}.log")
    shutil.copyfile(wal, older)  # truncated copy as the older WAL
    with open(wal, "wb") as f:
        f.write(data)  # the newest is whole again
    p = cli(snap)
    assert p.returncode == 1
    err = p.stderr.decode().splitlines()
    assert err == [err[0]] and err[0].startswith(f"cdc: {number - 1:06d}.log @0x") and err[0].endswith("truncated record")
    assert len(p.stdout.splitlines()) == 20 + 21


def test_dump_while_the_writer_keeps_writing(tmp_path):
    db = os.fspath(tmp_path / "db")
    with StoreWriter(db, options={"write_buffer_size": 256 << 20}) as w:
        w.put("first", "1")
        stop = threading.Event()
        errors: list[BaseException] = []

        def write() -> None:
            i = 0
            try:
                while not stop.is_set() and i < 400:  # <= 24 MB: one WAL, no rotation
                    w.put_many(200, batch=50, prefix=f"w{i:04d}-", value_size=300)
                    i += 1
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        t = threading.Thread(target=write)
        t.start()
        try:
            counts = []
            for _ in range(4):
                p = cli(db)
                assert p.returncode == 0, p.stderr
                recs = [json.loads(x) for x in p.stdout.splitlines()]
                assert recs[0]["key"] == "first"
                seqs = [r["seq"] for r in recs]
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # a gap-free prefix
                for line in p.stderr.decode().splitlines():
                    assert line.startswith("cdc: note: ") and "incomplete last record" in line
                counts.append(len(recs))
        finally:
            stop.set()
            t.join(30)
        assert not errors
        assert counts == sorted(counts) and counts[-1] > 1
