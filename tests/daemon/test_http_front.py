"""The HTTP front-end (cdc/server/http.py): h11 parses every request; plain requests are answered
without websockets; websockets internals are reached only through cdc/delivery/wsconn.py."""

from __future__ import annotations

import logging
import pathlib
import re
from typing import Any

from tests.harness.net import http_request, recv_json
from tests.daemon.test_server_hardening import _raw_exchange

CDC = pathlib.Path(__file__).resolve().parents[2] / "cdc"
_INTERNALS = re.compile(
    r"send_data\(|\.paused\b|\.drain\(\)|protocol\.state|transport\.abort|connection_lost_waiter"
    r"|websockets\.protocol|\(ServerConnection\)|\.data_received\(|process_event"
)


def test_websockets_internals_only_in_the_adapter() -> None:
    hits = [
        f"{path.relative_to(CDC.parent)}:{n}: {line.strip()}"
        for path in sorted(CDC.rglob("*.py"))
        if path.name != "wsconn.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if _INTERNALS.search(line)
    ]
    assert not hits, hits


async def test_plain_requests_never_reach_websockets(daemon: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="cdc.websockets")
    for path in ("/health/live", "/nope", "/ws/events"):
        before = len(caplog.records)
        r = await http_request(daemon.port, "GET", path)
        assert r.status in (200, 404, 426) and r.headers.get("server", "").startswith("cdc/")
        ws_lines = [rec.getMessage() for rec in caplog.records[before:] if rec.name == "cdc.websockets"]
        assert not [m for m in ws_lines if "rejected" in m or "HTTP" in m], ws_lines
    async with daemon.connect() as ws:  # upgrades still go to websockets
        assert (await recv_json(ws))["type"] == "hello"


async def test_head_limit_http10_and_no_host(daemon: Any) -> None:
    port = daemon.port
    big = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n"
    status, _h, body, closed = await _raw_exchange(port, big)
    assert status == 431 and b"16384" in body and closed
    status, _h, body, closed = await _raw_exchange(port, b"GET /health/live HTTP/1.0\r\n\r\n")
    assert status == 200 and b"healthy" in body and closed
    status, _h, body, closed = await _raw_exchange(port, b"GET /health/live HTTP/1.1\r\n\r\n")  # no Host: not a browser
    assert status == 200 and closed
    status, _h, body, closed = await _raw_exchange(port, b"GET /health/live HTTP/1.1\r\nHost : x\r\n\r\n")  # space before ':'
    assert status == 400 and b"malformed" in body and closed
