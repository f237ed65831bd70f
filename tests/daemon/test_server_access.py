"""cdc_ws_connections_total{result} and the access log lines (no tokens, no query strings)."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from cdc.daemon.logs import TextFormatter
from tests.harness.daemon import token
from tests.harness.net import http_request, recv_json
from tests.harness.waiting import wait_for


async def closed_code(ws) -> int:
    with pytest.raises(ConnectionClosed) as ci:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    return ci.value.rcvd.code


async def ws_results(port: int) -> dict[str, int]:
    r = await http_request(port, "GET", "/metrics")
    assert r.status == 200
    out = {}
    for m in re.finditer(r'^cdc_ws_connections_total\{result="(\w+)"\} (\S+)$', r.body.decode(), re.M):
        out[m.group(1)] = int(float(m.group(2)))
    return out


async def test_ws_connection_results_metric(daemon_factory):
    d = await daemon_factory(allow_origin=("https://app.example",), max_subscribers=1)
    before = await ws_results(d.port)
    assert set(before) >= {"accepted", "unauthorized", "forbidden", "origin", "limit", "bad_request"}
    assert not any(before.values())

    async with d.connect() as ws:  # accepted, and it fills the one subscriber slot
        assert (await recv_json(ws))["type"] == "hello"
        with pytest.raises(InvalidStatus) as ei:  # limit
            async with d.connect():
                pass
        assert ei.value.response.status_code == 503
    await wait_for(lambda: d.ctx.hub.count == 0, 5, "slot freed")

    for _ in range(3):  # a retry storm with a bad token
        async with d.connect(tok="garbage") as ws:
            assert await closed_code(ws) == 4401
    async with d.connect("types=sync_event", tok=token(types=["key_change"])) as ws:
        assert await closed_code(ws) == 4403
    async with d.connect("since=-1") as ws:
        assert await closed_code(ws) == 4400
    with pytest.raises(InvalidStatus) as ei:
        async with websockets.connect(d.ws_url(), origin="https://evil.example"):
            pass
    assert ei.value.response.status_code == 403
    r = await http_request(d.port, "GET", f"/ws/events?token={d.admin}")  # not an upgrade: 426
    assert r.status == 426

    got = await ws_results(d.port)
    assert got == {**before, "accepted": 1, "limit": 1, "unauthorized": 3, "forbidden": 1, "origin": 1, "bad_request": 2}


async def test_access_log_lines_have_peer_subject_code_and_no_secrets(daemon, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="cdc.websockets")
    tok = token(types=["sync_event", "key_change"])
    async with daemon.connect("types=sync_event&prefix=secret-prefix", tok=tok, additional_headers={"Cookie": "sid=cookie-secret-123"}) as ws:
        assert (await recv_json(ws))["type"] == "hello"
    await wait_for(lambda: any("ws closed" in r.getMessage() for r in caplog.records), 5, "close line")
    async with daemon.connect(tok="garbage-token-xyz") as ws:
        assert await closed_code(ws) == 4401
    await wait_for(lambda: any("ws rejected" in r.getMessage() for r in caplog.records), 5, "reject line")

    fmt = TextFormatter()
    records = [r for r in caplog.records if r.name.startswith("cdc")]  # the daemon's side only
    lines = [fmt.format(r) for r in records]
    text = "\n".join(lines)
    access = [r.getMessage() for r in records if r.name == "cdc.access"]
    opened = [m for m in access if m.startswith("ws open")]
    closed = [m for m in access if m.startswith("ws closed")]
    rejected = [m for m in access if m.startswith("ws rejected")]
    assert len(opened) == 1 and len(closed) == 1 and len(rejected) == 1, access
    assert re.search(r"peer=127\.0\.0\.1:\d+ sub=tester ", opened[0]), opened
    assert re.search(r"peer=127\.0\.0\.1:\d+ sub=tester code=1000 ", closed[0]), closed
    assert re.search(r"peer=127\.0\.0\.1:\d+ sub=- result=unauthorized code=4401 ", rejected[0]), rejected
    # never a token, a query string or a connection object's repr
    for secret in (tok, tok.split(".")[1], "garbage-token-xyz", "token=", "secret-prefix", "types=", "object at 0x", "cookie-secret-123"):
        assert secret not in text, (secret, text)
    # websockets' own lines (DEBUG here) carry the peer instead of the object
    ws_lines = [line for line, r in zip(lines, records) if r.name == "cdc.websockets"]
    assert ws_lines and all("websocket=" not in line for line in ws_lines)
    assert any("peer=127.0.0.1:" in line for line in ws_lines)
