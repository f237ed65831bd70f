"""WalCapture against real stores (component level: real journal + bus, no server)."""

from __future__ import annotations

import asyncio
import base64
import os

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
