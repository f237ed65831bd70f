"""Server hardening from the review: unfinished requests, malformed HTTP, hostile frames.

Everything runs against a real in-process daemon on loopback; malformed HTTP goes through raw
sockets. Half-open sockets come from 127.0.0.2 so that the per-IP cap does not hit the normal
client on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from typing import Any

import pytest
import websockets

from tests.harness.daemon import token


# ----------------------------------------------------------------------------- raw HTTP helpers
from tests.harness.net import http_request, recv_json


# ----------------------------------------------------------------------------- raw HTTP helpers
from tests.harness.waiting import wait_for


# ----------------------------------------------------------------------------- raw HTTP helpers


async def _open_raw(port: int, src: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0))


async def _closed_within(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True when the server closes (EOF or reset) within ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                data = await reader.read(65536)
                if not data:
                    return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


async def _raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes, bool]:
    """Send raw bytes; return (status, headers, body, closed by the server afterwards)."""
    reader, writer = await _open_raw(port)
    writer.write(data)
    await writer.drain()
    async with asyncio.timeout(timeout):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    closed = await _closed_within(reader, timeout)
    writer.close()
    return status, headers, body, closed


def _post(path: str, body: bytes, headers: dict[str, str], extra: bytes = b"") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + body + extra


# ----------------------------------------------------------------------------- 1. unfinished requests


async def test_unfinished_requests_are_capped_and_time_out(daemon_factory: Any) -> None:
    d = await daemon_factory()
    gate = d.ctx.server.gate
    gate.max_per_ip, gate.max_total, gate.timeout_s = 8, 12, 1.0
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for _ in range(8):  # up to the per-IP cap: kept open (for now)
        r, w = await _open_raw(d.port, "127.0.0.2")
        w.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
        held.append((r, w))
    await wait_for(lambda: gate.total == 8, timeout=5)
    # beyond the per-IP cap: the oldest ones of that address are closed at once
    t0 = time.monotonic()
    extra = [await _open_raw(d.port, "127.0.0.2") for _ in range(5)]
    assert all([await _closed_within(r, 2.0) for r, _ in held[:5]])
    assert time.monotonic() - t0 < 2.0
    assert gate.refused["unfinished_per_ip"] == 5 and gate.total == 8
    # another address fills the total cap (12); one more connection evicts the oldest overall
    others = [await _open_raw(d.port, "127.0.0.3") for _ in range(4)]
    await wait_for(lambda: gate.total == 12, timeout=5)
    r5, w5 = await _open_raw(d.port, "127.0.0.4")
    assert await _closed_within(held[5][0], 2.0)
    assert gate.refused["unfinished_total"] == 1
    # a prompt client from the busy address still gets in (it evicts a half-open one)
    reader, writer = await _open_raw(d.port, "127.0.0.2")
    writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b" 200 " in head.split(b"\r\n")[0]
    writer.close()
    # the header timeout frees every slot; then a normal subscriber and /health work
    assert all([await _closed_within(r, 5.0) for r, _ in held[6:] + extra + others + [(r5, w5)]])
    await wait_for(lambda: gate.total == 0, timeout=5)
    assert gate.refused["header_timeout"] >= 10
    async with d.connect() as ws:
        hello = await recv_json(ws)
        assert hello["type"] == "hello"
        r = await http_request(d.port, "GET", "/health/ready")
        assert r.status == 200
        # a completed request no longer counts: a long-poll waits longer than the header timeout
        t0 = time.monotonic()
        r = await http_request(d.port, "GET", "/events?timeout=1.5", headers={"Authorization": f"Bearer {d.admin}"})
        assert r.status == 200 and time.monotonic() - t0 >= 1.4
    m = (await http_request(d.port, "GET", "/metrics")).body.decode()
    assert 'cdc_http_connections_refused_total{reason="unfinished_per_ip"} 5.0' in m
    assert 'cdc_http_connections_refused_total{reason="unfinished_total"} 2.0' in m
    for _, w in held + others + extra + [(r5, w5)]:
        w.close()


async def test_unfinished_requests_keep_normal_clients_working(daemon_factory: Any) -> None:
    """Many half-open sockets (beyond the caps) while a subscriber receives events."""
    d = await daemon_factory()
    gate = d.ctx.server.gate
    gate.max_per_ip, gate.max_total = 20, 60
    async with d.connect("types=app.x") as ws:
        assert (await recv_json(ws))["type"] == "hello"
        socks = []
        for i in range(60):
            r, w = await _open_raw(d.port, f"127.0.0.{2 + i % 2}")
            w.write(b"POST /publish HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")  # body never completes
            socks.append((r, w))
        await wait_for(lambda: gate.refused["unfinished_per_ip"] == 20, timeout=5)
        assert gate.total == 40
        # a normal client from an address holding half-open sockets still gets in
        r, w = await _open_raw(d.port, "127.0.0.2")
        w.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b" 200 " in (await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)).split(b"\r\n")[0]
        w.close()
        await d.emit([{"type": "app.x", "n": 1}])
        ev = await recv_json(ws)
        assert ev["n"] == 1
        assert (await http_request(d.port, "GET", "/health/live")).status == 200
        for _, w in socks:
            w.close()
    await wait_for(lambda: gate.total == 0, timeout=5)


# ----------------------------------------------------------------------------- 3. malformed POST


async def test_publish_with_trailing_bytes_is_answered_once(daemon_factory: Any, caplog: Any) -> None:
    d = await daemon_factory()
    caplog.set_level(logging.ERROR)
    body = json.dumps({"type": "myapp.trail", "n": 1}).encode()
    hdrs = {"Authorization": f"Bearer {d.admin}", "Content-Type": "application/json", "Content-Length": str(len(body))}
    before = d.ctx.journal.latest_id
    status, _h, resp, closed = await _raw_exchange(d.port, _post("/publish", body, hdrs, b"\r\n"))
    assert status == 202 and json.loads(resp)["id"] == before + 1
    assert closed
    # extra bytes in a later packet (after the request) are dropped too
    reader, writer = await _open_raw(d.port)
    writer.write(_post("/publish", body, hdrs))
    await writer.drain()
    writer.write(b"GARBAGE\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b" 202 " in head.split(b"\r\n")[0]
    assert await _closed_within(reader, 5)
    writer.close()
    await d.ctx.bus.flush()
    assert d.ctx.journal.latest_id == before + 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Transfer-Encoding": "chunked"}, 411),
        ({}, 411),
        ({"Content-Length": "-5"}, 400),
        ({"Content-Length": "+24"}, 400),
        ({"Content-Length": "2_4"}, 400),
        ({"Content-Length": "٢٤"}, 400),  # Arabic-Indic digits: not ASCII
    ],
)
async def test_publish_length_rules(daemon_factory: Any, headers: dict[str, str], status: int) -> None:
    d = await daemon_factory()
    body = b'{"type":"myapp.len"}'
    hdrs = {"Authorization": f"Bearer {d.admin}", "Content-Type": "application/json", **headers}
    data = _post("/publish", b"", hdrs)
    if headers.get("Transfer-Encoding"):
        data += b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
    else:
        data = data.replace("٢٤".encode(), "٢٤".encode("utf-8"))
    before = d.ctx.journal.latest_id
    got, _h, resp, closed = await _raw_exchange(d.port, data)
    assert got == status, resp
    assert closed
    assert d.ctx.journal.latest_id == before
    assert (await http_request(d.port, "GET", "/health/live")).status == 200


async def test_publish_needs_json_content_type_and_header_token(daemon_factory: Any) -> None:
    d = await daemon_factory()
    body = b'{"type":"myapp.ct"}'
    r = await http_request(d.port, "POST", "/publish", body, {"Authorization": f"Bearer {d.admin}", "Content-Type": "text/plain"})
    assert r.status == 415
    r = await http_request(d.port, "POST", f"/publish?token={d.admin}", body, {"Content-Type": "application/json"})
    assert r.status == 401
    r = await http_request(d.port, "POST", "/publish", body, {"Authorization": f"Bearer {d.admin}", "Content-Type": "application/json; charset=utf-8"})
    assert r.status == 202


# ----------------------------------------------------------------------------- 4/5. hostile frames


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_hostile_messages_get_error_frames(daemon_factory: Any, fmt: str, caplog: Any) -> None:
    d = await daemon_factory()
    caplog.set_level(logging.ERROR)
    async with d.connect(f"format={fmt}") as ws:
        assert (await recv_json(ws))["type"] == "hello"
        await ws.send("[" * 5000)
        assert (await recv_json(ws))["type"] == "error"
        await ws.send(b"\x91" * 5000)  # msgpack: 5000 nested arrays
        assert (await recv_json(ws))["type"] == "error"
        await ws.send('{"op":"ping","ref":%d}' % (2**70))
        err = await recv_json(ws)
        assert err["type"] == "error" and "ref" in err["error"] and "ref" not in err
        await ws.send(json.dumps({"op": "ping", "ref": "r" * 300}))
        assert (await recv_json(ws))["type"] == "error"
        await ws.send(json.dumps({"op": "subscribe", "types": ["app.a"], "ref": -(2**63) - 1}))
        assert (await recv_json(ws))["type"] == "error"
        for ref in (2**63 - 1, -(2**63), "r" * 256, 7):
            await ws.send(json.dumps({"op": "ping", "ref": ref}))
            pong = await recv_json(ws)
            assert pong["type"] == "pong" and pong["ref"] == ref
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_since_beyond_int64_is_refused(daemon_factory: Any, fmt: str) -> None:
    d = await daemon_factory()
    async with d.connect(f"format={fmt}&since=99999999999999999999999") as ws:
        with pytest.raises(websockets.ConnectionClosed) as ei:
            await recv_json(ws)
        assert ei.value.rcvd.code == 4400
    async with d.connect(f"format={fmt}&since={2**63 - 1}") as ws:  # the largest: a cursor_ahead reset
        assert (await recv_json(ws))["type"] == "hello"
        reset = await recv_json(ws)
        assert reset["type"] == "reset" and reset["since"] == 2**63 - 1
    r = await http_request(d.port, "GET", "/events?since=99999999999999999999999&timeout=0", headers={"Authorization": f"Bearer {d.admin}"})
    assert r.status == 400


# ----------------------------------------------------------------------------- 6. limits, HEAD, origins


async def test_filter_lists_are_capped(daemon_factory: Any) -> None:
    d = await daemon_factory()
    many = ",".join(f"app.t{i}" for i in range(300))
    async with d.connect(f"types={many}") as ws:
        with pytest.raises(websockets.ConnectionClosed) as ei:
            await recv_json(ws)
        assert ei.value.rcvd.code == 4400
    r = await http_request(d.port, "GET", "/events?timeout=0&" + "&".join(f"prefix=p{i}" for i in range(300)), headers={"Authorization": f"Bearer {d.admin}"})
    assert r.status == 400
    async with d.connect() as ws:
        assert (await recv_json(ws))["type"] == "hello"
        await ws.send(json.dumps({"op": "subscribe", "prefix": [f"p{i}" for i in range(257)], "ref": 1}))
        err = await recv_json(ws)
        assert err["type"] == "error" and "256" in err["error"] and err["ref"] == 1
        await ws.send(json.dumps({"op": "subscribe", "cf": ["c" * 1025], "ref": 2}))
        err = await recv_json(ws)
        assert err["type"] == "error" and "1024" in err["error"]
        await ws.send(json.dumps({"op": "subscribe", "types": [f"app.t{i}" for i in range(256)], "ref": 3}))
        ok = await recv_json(ws)
        assert ok["type"] == "subscribed" and len(ok["filter"]["types"]) == 256


async def test_head_has_no_body(daemon_factory: Any) -> None:
    d = await daemon_factory()
    reader, writer = await _open_raw(d.port)
    writer.write(b"HEAD /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b" 200 " in head.split(b"\r\n")[0] and b"Content-Length: " in head
    rest = await asyncio.wait_for(reader.read(), 5)  # the server closes right after the head
    assert rest == b""
    writer.close()


async def test_insecure_no_auth_refuses_foreign_origins(daemon_factory: Any) -> None:
    d = await daemon_factory(insecure_no_auth=True)
    own = f"http://127.0.0.1:{d.port}"
    url = f"ws://127.0.0.1:{d.port}/ws/events"
    with pytest.raises(websockets.InvalidStatus) as ei:
        async with websockets.connect(url, origin="http://evil.example"):
            pass
    assert ei.value.response.status_code == 403
    async with websockets.connect(url, origin=own) as ws:
        assert (await recv_json(ws))["type"] == "hello"
    async with websockets.connect(url) as ws:  # no Origin: not a browser
        assert (await recv_json(ws))["type"] == "hello"
    body = b'{"type":"myapp.evil"}'
    r = await http_request(d.port, "POST", "/publish", body, {"Origin": "http://evil.example", "Content-Type": "application/json"})
    assert r.status == 403
    r = await http_request(d.port, "GET", "/events?since=0&timeout=0", headers={"Origin": "http://evil.example"})
    assert r.status == 403
    r = await http_request(d.port, "GET", "/events?since=0&timeout=0", headers={"Origin": own})
    assert r.status == 200
    # with authentication on, Origin is not restricted without allow_origin (a token is needed)
    d2 = await daemon_factory()
    r = await http_request(d2.port, "GET", "/events?since=0&timeout=0", headers={"Origin": "http://evil.example", "Authorization": f"Bearer {token()}"})
    assert r.status == 200


async def test_accept_errors_are_logged_once_and_counted(daemon_factory: Any, caplog: Any) -> None:
    """asyncio reports EMFILE on accept through the loop's exception handler, once per retry."""
    d = await daemon_factory()
    caplog.set_level(logging.DEBUG)
    loop = asyncio.get_running_loop()
    for _ in range(5):
        loop.call_exception_handler(
            {"message": "socket.accept() out of system resource", "exception": OSError(24, "Too many open files")}
        )
    lines = [r for r in caplog.records if "accept" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None, [r.getMessage() for r in lines]
    assert d.ctx.server.gate.refused["accept_error"] == 5
    m = (await http_request(d.port, "GET", "/metrics")).body.decode()
    assert 'cdc_http_connections_refused_total{reason="accept_error"} 5.0' in m


async def test_real_daemon_survives_hundreds_of_half_open_sockets(daemon_proc_factory: Any) -> None:
    """The reviewer's slowloris against a daemon process: excess sockets closed, others unharmed."""
    p = daemon_proc_factory()
    socks: list[socket.socket] = []
    try:
        for i in range(300):
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.connect(("127.0.0.1", p.port))
            s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n" if i % 2 else b"POST /publish HTTP/1.1\r\n")
            socks.append(s)

        def closed_count() -> int:
            n = 0
            for s in socks:
                s.setblocking(False)
                try:
                    if s.recv(100) == b"":
                        n += 1
                except BlockingIOError:
                    pass
                except OSError:
                    n += 1
            return n

        await wait_for(lambda: closed_count() == 300 - 64, timeout=10)  # all but the per-IP cap
        r = await http_request(p.port, "GET", "/health/live")
        assert r.status == 200
        async with websockets.connect(f"ws://127.0.0.1:{p.port}/ws/events?token={p.admin}") as ws:
            assert (await recv_json(ws))["type"] == "hello"
        m = (await http_request(p.port, "GET", "/metrics")).body.decode()
        assert 'cdc_http_connections_refused_total{reason="unfinished_per_ip"} 236.0' in m
        assert "Traceback" not in p.log()
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize(
    "data",
    [
        b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\nGET /health/live HTTP/1.1\r\nHost: x\r\n\r\n",  # pipelined
        b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\nJUNK",
        b"POST /health/live HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\nJUNK",
        b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 24\r\nContent-Length: 3\r\n\r\n" + b"x" * 24,
    ],
)
async def test_bytes_after_a_request_get_one_answer(daemon_factory: Any, caplog: Any, data: bytes) -> None:
    d = await daemon_factory()
    caplog.set_level(logging.ERROR)
    status, _h, _body, closed = await _raw_exchange(d.port, data)
    assert status in (200, 400, 405) and closed
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
