"""``cdc dump-wal`` as a user runs it: exit codes, one stderr line, never a traceback."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import pytest

from cdc.cli.dumpwal import run

from .conftest import batch, physical, run_writer, varint, varstr, write_log


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cdc", "dump-wal", *args], capture_output=True, timeout=60
    )


def lines(out: bytes) -> list[dict]:
    return [json.loads(x) for x in out.splitlines()]


@pytest.fixture(scope="module")
def small_db(tmp_path_factory):
    path = os.fspath(tmp_path_factory.mktemp("dump") / "db")
    run_writer(
        path,
        """
        db, h = open_db(DB_PATH, cfs=["users"])
        db.put(b"a", b"1")
        h["users"].put(b"\\xff", b"\\xfe")
        wb = WriteBatch(raw_mode=True)
        wb.set_default_column_family(db.get_column_family_handle("default"))
        wb.delete_range(b"a", b"\\x80")
        wb.delete(b"b")
        db.write(wb)
        """,
    )
    return path


def test_directory_output(small_db):
    p = cli(small_db)
    assert p.returncode == 0 and p.stderr == b""
    assert lines(p.stdout) == [
        {"seq": 1, "op": "put", "cf": "default", "key": "a", "wal": 4, "offset": 0},
        {"seq": 2, "op": "put", "cf": "users", "key": "/w==", "wal": 4, "offset": 24, "key_encoding": "base64"},
        {"seq": 3, "op": "delete_range", "cf": "default", "key": "a", "wal": 4, "offset": 49,
         "end_key": "gA==", "end_key_encoding": "base64"},
        {"seq": 4, "op": "delete", "cf": "default", "key": "b", "wal": 4, "offset": 49},
    ]
    p = cli(small_db, "--values")
    recs = lines(p.stdout)
    assert recs[0]["value"] == "1" and recs[1]["value"] == "/g==" and recs[1]["value_encoding"] == "base64"
    assert "value" not in recs[2] and "value" not in recs[3]


def test_single_file_uses_manifest_of_its_directory(small_db, tmp_path):
    wal = os.path.join(small_db, "000004.log")
    assert lines(cli(wal).stdout)[1]["cf"] == "users"
    # archive/ file: the MANIFEST of the parent directory
    db2 = tmp_path / "db2"
    shutil.copytree(small_db, db2)
    os.makedirs(db2 / "archive")
    os.rename(db2 / "000004.log", db2 / "archive" / "000004.log")
    assert lines(cli(os.fspath(db2 / "archive" / "000004.log")).stdout)[1]["cf"] == "users"
    assert len(lines(cli(os.fspath(db2)).stdout)) == 4  # archive/ is included for a directory
    # no MANIFEST anywhere: "cf<id>" for non-default ids
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(wal, lone / "000004.log")
    assert [r["cf"] for r in lines(cli(os.fspath(lone / "000004.log")).stdout)] == ["default", "cf1", "default", "default"]
    # a directory of WAL files without CURRENT works too
    assert len(lines(cli(os.fspath(lone)).stdout)) == 4


def test_missing_path_exit_2():
    p = cli("/definitely/not/here")
    assert p.returncode == 2 and p.stdout == b""
    assert p.stderr.decode().strip() == "cdc: /definitely/not/here: no such file or directory"


def test_not_a_store_exit_2(tmp_path):
    p = cli(os.fspath(tmp_path))
    assert p.returncode == 2 and b"no CURRENT" in p.stderr and b"Traceback" not in p.stderr


def test_truncated_and_garbage(small_db, tmp_path):
    data = open(os.path.join(small_db, "000004.log"), "rb").read()
    cut = tmp_path / "000004.log"
    cut.write_bytes(data[:-5])
    p = cli(os.fspath(cut))
    assert p.returncode == 1 and len(lines(p.stdout)) == 2
    err = p.stderr.decode().splitlines()
    assert err == ["cdc: 000004.log @0x31: truncated record"]
    bad = bytearray(data)
    bad[30] ^= 1
    cut.write_bytes(bytes(bad))
    p = cli(os.fspath(cut))
    assert p.returncode == 1 and len(lines(p.stdout)) == 1
    assert p.stderr.decode().splitlines() == ["cdc: 000004.log @0x18: checksum mismatch"]
    garbage = tmp_path / "000009.log"
    junk = bytearray(__import__("random").Random(9).randbytes(5000))
    junk[6] = 1  # a legacy type: a recyclable type with a foreign log number would read as "end"
    garbage.write_bytes(bytes(junk))
    p = cli(os.fspath(garbage))
    assert p.returncode == 1 and b"Traceback" not in p.stderr
    assert len(p.stderr.decode().splitlines()) == 1 and p.stderr.startswith(b"cdc: 000009.log")


def test_markers_and_large_block_spanning(tmp_path):
    body = (
        b"\x03" + varstr(b"app-blob")
        + b"\x09" + b"\x01" + varstr(b"p") + varstr(b"v") + b"\x0a" + varstr(b"x1")
        + b"\x0b" + varstr(b"x1")
        + b"\x05" + varint(1) + varstr(b"k") + varstr(b"z" * 70000)
    )
    f = tmp_path / "000007.log"
    f.write_bytes(write_log([batch(10, 2, body)]))
    out = io.BytesIO()
    err = io.StringIO()
    assert run(os.fspath(f), values=True, out=out, err=err) == 0, err.getvalue()
    recs = lines(out.getvalue())
    assert [(r["seq"], r["op"], r["key"]) for r in recs] == [
        (10, "log_data", "app-blob"),
        (10, "begin_prepare", ""),
        (10, "put", "p"),
        (10, "end_prepare", "x1"),
        (10, "commit", "x1"),
        (11, "put", "k"),  # the commit inserted the prepared "p" at 10 (WriteCommitted)
    ]
    assert recs[-1]["value"] == "z" * 70000 and recs[-1]["cf"] == "cf1"


def test_broken_pipe_is_quiet(small_db):
    p = subprocess.run(
        f"{sys.executable} -m cdc dump-wal {small_db} | head -1",
        shell=True, capture_output=True, timeout=60,
    )
    assert len(p.stdout.splitlines()) == 1 and b"Traceback" not in p.stderr


def test_zero_tail_is_clean(tmp_path):
    f = tmp_path / "000003.log"
    f.write_bytes(physical(1, batch(1, 1, b"\x00" + varstr(b"k"))) + b"\x00" * 4000)
    out = io.BytesIO()
    err = io.StringIO()
    assert run(os.fspath(f), out=out, err=err) == 0 and err.getvalue() == ""
    assert lines(out.getvalue())[0]["op"] == "delete"


def test_corrupt_manifest_still_dumps_records(small_db, tmp_path):
    db = tmp_path / "db"
    shutil.copytree(small_db, db)
    name = (db / "CURRENT").read_text().strip()
    data = bytearray((db / name).read_bytes())
    data[10] ^= 0xFF
    (db / name).write_bytes(bytes(data))
    p = cli(os.fspath(db))
    assert p.returncode == 1
    assert [r["cf"] for r in lines(p.stdout)] == ["default", "cf1", "default", "default"]
    err = p.stderr.decode().splitlines()
    assert len(err) == 1 and "MANIFEST" in err[0] and "checksum mismatch" in err[0]
