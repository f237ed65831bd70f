"""Helpers for the decoder tests: byte builders and a rocksdict/plyvel writer subprocess."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap

import pytest
from crc32c import crc32c

from cdc.format.blocks import BLOCK_SIZE, mask_crc

PRELUDE = textwrap.dedent(
    """
    import os, sys
    from rocksdict import Rdict, Options, WriteBatch
    def open_db(path, recycle=0, raw=True, cfs=()):
        o = Options(raw_mode=raw)
        o.create_if_missing(True)
        if recycle:
            o.set_recycle_log_file_num(recycle)
            o.set_wal_recovery_mode(__import__("rocksdict").DBRecoveryMode.skip_any_corrupted_record())
        db = Rdict(path, o)
        handles = {}
        for name in cfs:
            handles[name] = db.create_column_family(name, Options(raw_mode=raw))
        return db, handles
    """
)


def run_writer(db_path: str, body: str, timeout: float = 60) -> str:
    """Run ``body`` (with ``DB_PATH`` bound) in a subprocess that ends with os._exit(0), so the
    WAL stays on disk. Returns the child's stdout."""
    code = PRELUDE + f"DB_PATH = {db_path!r}\n" + textwrap.dedent(body) + (
        "\nsys.stdout.write('done\\n'); sys.stdout.flush(); os._exit(0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0 and proc.stdout.endswith("done\n"), proc.stderr[-2000:]
    return proc.stdout


def physical(rtype: int, payload: bytes, log_number: int | None = None) -> bytes:
    """One physical record (legacy header, or recyclable when log_number is given)."""
    if log_number is None:
        crc = crc32c(bytes([rtype]) + payload)
        return struct.pack("<IHB", mask_crc(crc), len(payload), rtype) + payload
    ln = struct.pack("<I", log_number & 0xFFFFFFFF)
    crc = crc32c(bytes([rtype]) + ln + payload)
    return struct.pack("<IHB", mask_crc(crc), len(payload), rtype) + ln + payload


def write_log(records: list[bytes], log_number: int | None = None) -> bytes:
    """Frame logical records the way log_writer.cc does (fragments, trailers)."""
    hsize = 7 if log_number is None else 11
    out = bytearray()
    for rec in records:
        left = rec
        begin = True
        while True:
            block_left = BLOCK_SIZE - len(out) % BLOCK_SIZE
            if block_left < hsize:
                out += b"\x00" * block_left
                block_left = BLOCK_SIZE
            avail = block_left - hsize
            frag, left = left[:avail], left[avail:]
            end = not left
            if begin and end:
                t = 1
            elif begin:
                t = 2
            elif end:
                t = 4
            else:
                t = 3
            if log_number is not None:
                t += 4
            out += physical(t, frag, log_number)
            begin = False
            if end:
                break
    return bytes(out)


def varstr(b: bytes) -> bytes:
    return varint(len(b)) + b


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def batch(seq: int, count: int, body: bytes) -> bytes:
    return struct.pack("<QI", seq, count) + body


def ldb_available() -> bool:
    from shutil import which

    return which("ldb") is not None


@pytest.fixture
def db_path(tmp_path):
    return os.fspath(tmp_path / "db")
