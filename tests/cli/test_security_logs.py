"""No token in the log, even at ``--log-level debug`` with websockets' frame dumps.

A real ``cdc serve`` (subprocess, debug level, JSON lines) is given every kind of credential:
JWTs in the query string, the Authorization header and ``auth`` frames (JSON text and msgpack
binary), the opaque token, a forged JWT and an expired one. Afterwards the whole log is
searched for every token and every 8-character piece of one: none may appear. Rejection
reasons stay readable ("invalid token: claim 'prefix' ..." is not over-redacted).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import signal
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from cdc.delivery.auth import mint_token
from tests.harness.net import http_request_sync

from .conftest import debug_serve

SECRET = "log-test-secret-5f1e2d3c4b5a69788796a5b4c3d2e1f0"
OPAQUE = "opaque-log-token-7c9d2e4f8a1b"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw_jwt(payload: bytes) -> str:
    header = _b64(b'{"alg":"HS256","typ":"JWT"}')
    si = f"{header}.{_b64(payload)}"
    return f"{si}.{_b64(hmac.new(SECRET.encode(), si.encode(), hashlib.sha256).digest())}"


@pytest.fixture
def debug_daemon(tmp_path: Path, rocks_db: Path) -> Any:
    secret = tmp_path / "jwt.secret"
    secret.write_text(SECRET + "\n")
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# tokens\n{OPAQUE}\n")
    with debug_serve(tmp_path, rocks_db, "--tokens-file", str(tokens), "--jwt-secret-file", str(secret)) as running:
        yield running


async def _close_reason(ws: Any) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as ci:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    assert ci.value.rcvd is not None
    return ci.value.rcvd.code, ci.value.rcvd.reason


async def _until(ws: Any, typ: str) -> dict[str, Any]:
    """Receive (skipping events) until a control frame of type ``typ`` arrives."""
    deadline = time.monotonic() + 10
    while True:
        raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        msg = msgspec.msgpack.decode(raw) if isinstance(raw, bytes) else json.loads(raw)
        for m in msg if isinstance(msg, list) else [msg]:
            if m.get("type") == typ and "id" not in m:
                return m


async def _exercise(port: int, toks: dict[str, str]) -> None:
    base = f"ws://127.0.0.1:{port}/ws/events"
    # JWT in the query string, then a JSON auth frame with another JWT
    async with websockets.connect(f"{base}?token={toks['query']}") as ws:
        await _until(ws, "hello")
        await ws.send(json.dumps({"op": "auth", "token": toks["auth_json"], "ref": 1}))
        await _until(ws, "authenticated")
        await ws.send(json.dumps({"op": "auth", "token": toks["opaque"], "ref": 2}))
        await _until(ws, "authenticated")
    # Authorization header, msgpack format, binary auth frame
    async with websockets.connect(f"{base}?format=msgpack", additional_headers={"Authorization": f"Bearer {toks['header']}"}) as ws:
        await _until(ws, "hello")
        await ws.send(msgspec.msgpack.encode({"op": "auth", "token": toks["auth_msgpack"]}))
        await _until(ws, "authenticated")
    # the opaque token in the query
    async with websockets.connect(f"{base}?token={toks['opaque']}") as ws:
        await _until(ws, "hello")
    # rejected ones: forged, expired, malformed claim (whose reason must stay readable)
    for name in ("forged", "expired", "bad_claim"):
        async with websockets.connect(f"{base}?token={toks[name]}") as ws:
            code, reason = await _close_reason(ws)
            assert code == 4401
            if name == "bad_claim":
                assert reason.startswith("invalid token: claim 'prefix'"), reason
    # HTTP: long-poll with a query token and a header token, publish with a Bearer token
    r = await asyncio.to_thread(http_request_sync, port, "GET", f"/events?timeout=0&token={toks['poll']}")
    assert r.status == 200, r.body
    r = await asyncio.to_thread(http_request_sync, port, "POST", "/publish",
                                json.dumps({"type": "sync_event", "status": "started"}).encode(),
                                {"Authorization": f"Bearer {toks['publish']}", "Content-Type": "application/json"})
    assert r.status in (200, 201, 202), r.body


def _pieces(tok: str, n: int = 8) -> set[str]:
    return {tok[i:i + n] for i in range(len(tok) - n + 1)}


async def test_debug_json_log_has_no_token_piece(debug_daemon: Any) -> None:
    port, proc, log_path = debug_daemon
    now = int(time.time())
    toks = {
        "query": mint_token(SECRET, "q-user", ttl=600, values=True),
        "auth_json": mint_token(SECRET, "json-user", ttl=700, values=True),
        "header": mint_token(SECRET, "hdr-user", ttl=800),
        "auth_msgpack": mint_token(SECRET, "mp-user", ttl=900),
        "poll": mint_token(SECRET, "poll-user", ttl=650),
        "publish": mint_token(SECRET, "pub-user", ttl=660, admin=True),
        "opaque": OPAQUE,
        "forged": mint_token("another-secret-entirely-0123456789", "forger", ttl=600, admin=True),
        "expired": mint_token(SECRET, "old-user", ttl=1, now=now - 100),
        "bad_claim": _raw_jwt(b'{"exp":4000000000,"sub":"bad","prefix":[1]}'),
    }
    await _exercise(port, toks)
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    log = log_path.read_text("utf-8", "replace")
    lines = [json.loads(ln) for ln in log.splitlines() if ln.strip()]
    # the frame dumps were there (debug level really on) and show sizes only
    frames = [ln["msg"] for ln in lines if ln.get("logger") == "cdc.websockets" and ln["msg"][:7] in ("< TEXT ", "> TEXT ", "< BINAR", "> BINAR")]
    assert any(m.startswith("< TEXT") for m in frames) and any(m.startswith("< BINARY") for m in frames), frames[:5]
    for m in frames:
        assert m.split(" ", 2)[2].startswith("["), m  # "< TEXT [57 bytes]"
    # no token, no 8-character piece of one, no secret
    for name, tok in {**toks, "secret": SECRET}.items():
        leaked = sorted(p for p in _pieces(tok) if p in log)
        assert not leaked, (name, leaked[:5])
    # reasons are not over-redacted
    assert "invalid token: claim 'prefix'" in log
    assert "invalid token: [REDACTED]" not in log
