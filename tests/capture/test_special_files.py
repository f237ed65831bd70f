"""A FIFO (or any non-regular file) carrying a store file name must never stall the daemon.

``open()`` on a FIFO blocks until a writer appears; a capture that opened it the ordinary way
would hang (and with it, on the event-loop thread, the whole daemon).
"""

from __future__ import annotations

import os

import pytest

from tests.harness.net import http_request, recv_events, recv_json
from tests.harness.writers import StoreWriter

pytestmark = pytest.mark.integration


async def test_fifo_named_like_a_wal_does_not_stall_capture(daemon_factory, tmp_path):
    db = str(tmp_path / "store")
    with StoreWriter(db) as w:
        w.put("before", "1")
        os.mkfifo(os.path.join(db, "999999.log"))  # a "future WAL" nobody will ever write
        d = await daemon_factory(components=None, db=db)
        async with d.connect("types=key_change&since=0") as ws:
            assert (await recv_json(ws))["type"] == "hello"
            first = await recv_events(ws, 1)
            assert first[0]["key"] == "before"
            for i in range(5):
                w.put(f"after-{i}", str(i))
            evs = await recv_events(ws, 5)
            assert [e["key"] for e in evs] == [f"after-{i}" for i in range(5)]
        assert (await http_request(d.port, "GET", "/health/live")).status == 200
