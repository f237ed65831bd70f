"""Network helpers: a free loopback port, HTTP requests, WebSocket receive helpers."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from typing import Any

import msgspec

from tests.harness.waiting import TIMEOUT_FACTOR


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (also: a port whose connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HttpResult:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def http_request_sync(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 40.0) -> HttpResult:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return HttpResult(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


async def http_request(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 40.0) -> HttpResult:
    return await asyncio.to_thread(http_request_sync, port, method, path, body, headers, timeout)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``http://127.0.0.1:PORT/path`` -> (status, body); (0, b"") when nothing answers."""
    rest = url.split("://", 1)[-1]
    hostport, _, path = rest.partition("/")
    port = int(hostport.rsplit(":", 1)[1])
    try:
        r = http_request_sync(port, "GET", "/" + path, timeout=timeout)
    except (OSError, http.client.HTTPException):
        return 0, b""
    return r.status, r.body


async def publish(port: int, tok: str, event: dict[str, Any]) -> HttpResult:
    return await http_request(
        port, "POST", "/publish", json.dumps(event).encode(), {"Authorization": f"Bearer {tok}", "Content-Type": "application/json"}
    )


async def recv_json(ws: Any, timeout: float = 5.0) -> Any:
    raw = await asyncio.wait_for(ws.recv(), timeout * TIMEOUT_FACTOR)
    if isinstance(raw, bytes):
        return msgspec.msgpack.decode(raw)
    return json.loads(raw)


async def recv_events(ws: Any, n: int, timeout: float = 10.0, keep_control: bool = False) -> list[dict[str, Any]]:
    """Receive until ``n`` events (frames with an ``id``; arrays flattened) arrived."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout * TIMEOUT_FACTOR
    while len([e for e in out if "id" in e]) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(out)} of {n} events: {out[-3:]}")
        msg = await recv_json(ws, left)
        items = msg if isinstance(msg, list) else [msg]
        for m in items:
            if "id" in m or keep_control:
                out.append(m)
    return out
