"""WalCapture against real stores (component level: real journal + bus, no server)."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess

import pytest

from tests.capture.conftest import wait_for

pytestmark = pytest.mark.integration


async def test_ordered_exactly_once_with_values_and_kinds(rig, writer_factory):
    w = writer_factory(cfs=["users"])
    expected = []
    for i in range(50):
        seq = w.put(f"k{i:03d}", f"v{i}")
        expected.append(("put", f"k{i:03d}", "default", seq, f"v{i}"))
    await rig.start()
    await wait_for(lambda: rig.health.ok("startup", "capture"), what="startup healthy")
    seq = w.delete("k001")
    expected.append(("delete", "k001", "default", seq, None))
    seq = w.put("u1", "alice", cf="users")
    expected.append(("put", "u1", "users", seq, "alice"))
    seq = w.delete_range("k010", "k020")
    expected.append(("delete_range", "k010", "default", seq, None))
    seq = w.batch(
        [
            {"op": "put", "key": "b1", "value": "x"},
            {"op": "put", "key": "u2", "value": "bob", "cf": "users"},
            {"op": "delete", "key": "u1", "cf": "users"},
        ]
    )
    expected += [
        ("put", "b1", "default", seq - 2, "x"),
        ("put", "u2", "users", seq - 1, "bob"),
        ("delete", "u1", "users", seq, None),
    ]
    await wait_for(lambda: len(rig.key_changes()) >= len(expected), what="all events")
    got = [(e["operation"], e["key"], e.get("cf", "default"), e["seq"], e.get("value")) for e in rig.key_changes()]
    assert got == expected
    dr = [e for e in rig.key_changes() if e["operation"] == "delete_range"][0]
    assert dr["end_key"] == "k020"
    ids = [r.id for r in rig.records]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_non_utf8_keys_are_base64(rig, writer_factory):
    w = writer_factory()
    await rig.start()
    key, value = b"\xff\x00bin", b"\x80\x81"
    seq = w.put(key, value)
    evs = await wait_for(lambda: rig.key_changes(), what="event")
    (e,) = evs
    assert e["seq"] == seq
    assert e["key_encoding"] == "base64" and base64.b64decode(e["key"]) == key
    assert e["value_encoding"] == "base64" and base64.b64decode(e["value"]) == value


async def test_cf_created_while_running_gets_its_name(rig, writer_factory):
    w = writer_factory()
    await rig.start()
    await w.aput("a", "1")
    await asyncio.to_thread(w.create_cf, "late")
    seq = await w.aput("b", "2", cf="late")
    evs = await wait_for(lambda: len(rig.key_changes()) >= 2 and rig.key_changes(), what="events")
    assert [(e["key"], e.get("cf", "default"), e["seq"]) for e in evs] == [("a", "default", 1), ("b", "late", seq)]


async def test_separate_wal_dir(rig, writer_factory, tmp_path):
    wal_dir = str(tmp_path / "wal")
    w = writer_factory(options={"wal_dir": wal_dir})
    await w.aput("a", "1")
    assert any(n.endswith(".log") for n in os.listdir(wal_dir))
    await rig.start(wal_dir=wal_dir)
    await w.aput("b", "2")
    await w.aflush()
    await w.aput("c", "3")
    await wait_for(lambda: len(rig.key_changes()) >= 3, what="events")
    assert [e["key"] for e in rig.key_changes()] == ["a", "b", "c"]


@pytest.mark.skipif(shutil.which("db_bench") is None, reason="needs db_bench (Debian rocksdb-tools)")
async def test_transactiondb_2pc_emitted_at_commit_rollbacks_dropped(rig, tmp_path):
    """A real TransactionDB WAL (RocksDB's db_bench randomtransaction, WriteCommitted 2PC):
    prepared writes consume no sequence numbers until their commit; capture emits them at the
    commit with the numbers RocksDB gives them, drops rolled-back ones, reports no gap."""
    db = str(tmp_path / "db")
    subprocess.run(
        ["db_bench", "-benchmarks=randomtransaction", "-transaction_db=true", "-num=200", f"-db={db}",
         "-disable_auto_compactions=true", "-transaction_sets=2", "-threads=1", "-use_existing_db=false",
         "-write_buffer_size=67108864"],
        check=True, capture_output=True, timeout=60,
    )
    (wal,) = [f for f in os.listdir(db) if f.endswith(".log")]
    dump = subprocess.run(["ldb", "dump_wal", f"--walfile={os.path.join(db, wal)}"], capture_output=True, text=True, check=True).stdout
    lines = [ln for ln in dump.splitlines() if ln[:1].isdigit()]
    rollbacks = sum("ROLLBACK(" in ln for ln in lines)
    assert rollbacks and any("BEGIN_PREPARE" in ln for ln in lines) and any("COMMIT(" in ln for ln in lines)
    # every data record counted in the WAL is applied once, except the 4 of each rolled-back txn
    want = sum(int(ln.split(",")[1]) for ln in lines) - 4 * rollbacks
    await rig.start()
    await wait_for(lambda: len(rig.key_changes()) >= want, what="committed writes")
    await asyncio.sleep(0.05)  # bounded: nothing beyond the committed writes may follow
    evs = rig.key_changes()
    assert len(evs) == want
    assert [e["seq"] for e in evs] == list(range(1, want + 1))
    assert rig.of_type("capture_gap") == []
    assert {e["operation"] for e in evs} == {"put", "delete", "single_delete"}
