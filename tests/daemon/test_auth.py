"""Every auth failure and scope rule, over real connections."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

import jwt
import pytest
from websockets.exceptions import ConnectionClosed

from cdc.delivery.auth import Authenticator, mint_token, narrow
from cdc.errors import AuthError, ConfigError
from cdc.model.events import KeyChange, SyncEvent
from tests.harness.daemon import OPAQUE_TOKEN, SECRET, token
from tests.harness.clock import ManualClock
from tests.harness.net import http_request, publish, recv_events, recv_json


async def closed_with(ws) -> int:
    with pytest.raises(ConnectionClosed) as ci:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    return ci.value.rcvd.code


@pytest.mark.parametrize(
    "tok,code",
    [
        (None, 4401),
        ("garbage", 4401),
        ("a.b.c", 4401),
        (jwt.encode({"exp": int(time.time()) - 5, "sub": "x"}, SECRET, algorithm="HS256"), 4401),  # expired
        (jwt.encode({"sub": "x"}, SECRET, algorithm="HS256"), 4401),  # no exp
        (jwt.encode({"exp": int(time.time()) + 60}, "wrong-secret-wrong-secret-wrong-secret", algorithm="HS256"), 4401),
    ],
)
async def test_ws_token_failures_4401(daemon, tok, code):
    async with daemon.connect(tok=tok) as ws:
        assert await closed_with(ws) == code


async def test_scope_4403_and_narrowing(daemon):
    limited = token(types=["key_change"], prefix=["user:"])
    async with daemon.connect("types=sync_event", tok=limited) as ws:
        assert await closed_with(ws) == 4403
    async with daemon.connect("values=1", tok=limited) as ws:
        assert await closed_with(ws) == 4403
    async with daemon.connect("prefix=order:", tok=limited) as ws:
        assert await closed_with(ws) == 4403
    async with daemon.connect("prefix=user:vip", tok=limited) as ws:  # narrower is fine
        assert (await recv_json(ws))["type"] == "hello"
    async with daemon.connect(tok=limited) as ws:  # nothing asked: narrowed to the scope
        hello = await recv_json(ws)
        assert hello["filter"] == {"types": ["key_change"], "cf": None, "prefix": ["user:"]}
        await daemon.emit([KeyChange(timestamp=1, operation="put", key="order:1", seq=1), SyncEvent(timestamp=1, status="started"),
                           KeyChange(timestamp=1, operation="put", key="user:1", seq=2)])
        (ev,) = await recv_events(ws, 1)
        assert ev["key"] == "user:1"
        await ws.send(json.dumps({"op": "subscribe", "types": ["sync_event"]}))
        err = await recv_json(ws)
        assert err["type"] == "error" and err["code"] == 4403


async def test_opaque_token_and_bearer_header(daemon):
    async with daemon.connect("values=1", tok=OPAQUE_TOKEN) as ws:
        assert (await recv_json(ws))["type"] == "hello"
    async with daemon.connect(tok=None, additional_headers={"Authorization": f"Bearer {daemon.reader}"}) as ws:
        assert (await recv_json(ws))["type"] == "hello"


async def test_expiring_token_closes_4401_unless_refreshed(daemon):
    daemon.ctx.server.clock = ManualClock(time.time() + 120)  # the server's clock is past the token's exp
    async with daemon.connect(tok=token(ttl=60)) as ws:  # valid when checked, expired on the server's clock
        t0 = time.monotonic()
        assert await closed_with(ws) == 4401
        assert time.monotonic() - t0 < 3
    daemon.ctx.server.clock = time.time
    first = token(ttl=2)  # exp = int(now) + 2: between 1 and 2 s from now
    async with daemon.connect(tok=first) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"op": "auth", "token": token(ttl=60)}))
        ok = await recv_json(ws)
        assert ok["type"] == "authenticated" and ok["exp"] > time.time() + 30
        await asyncio.sleep(2.1)  # past the first token's exp: still connected
        await ws.send(json.dumps({"op": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"
        await ws.send(json.dumps({"op": "auth", "token": "bad"}))
        assert await closed_with(ws) == 4401
    async with daemon.connect(tok=daemon.reader) as ws:  # refresh with a narrower token than the subscription
        await recv_json(ws)
        await ws.send(json.dumps({"op": "auth", "token": token(types=["sync_event"])}))
        assert await closed_with(ws) == 4403


async def test_publish_auth(daemon):
    ev = {"type": "sync_event", "status": "completed"}
    assert (await publish(daemon.port, "nope", ev)).status == 401
    assert (await publish(daemon.port, daemon.reader, ev)).status == 403
    assert (await publish(daemon.port, OPAQUE_TOKEN, ev)).status == 403
    r = await http_request(daemon.port, "POST", "/publish", b"{}", {})
    assert r.status == 401
    r = await publish(daemon.port, daemon.admin, {"type": "sync_event", "status": "bogus"})
    assert r.status == 400 and r.json()["error"]
    r = await http_request(daemon.port, "POST", "/publish", b"{not json", {"Authorization": f"Bearer {daemon.admin}", "Content-Type": "application/json"})
    assert r.status == 400
    r = await http_request(daemon.port, "POST", "/publish", b"x" * 100_000, {"Authorization": f"Bearer {daemon.admin}"})
    assert r.status == 413
    r = await publish(daemon.port, daemon.admin, {"type": "myapp.reindex", "details": {"a": 1}})
    assert r.status == 202 and r.json()["id"] > 0
    r = await http_request(daemon.port, "GET", "/events?since=0&timeout=0")
    assert r.status == 401


async def test_tokens_never_logged(daemon, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="cdc.websockets")
    secret_tok = token(types=["nope.never"])
    async with daemon.connect("types=sync_event", tok=secret_tok) as ws:
        await closed_with(ws)
    await http_request(daemon.port, "GET", f"/events?token={secret_tok}&since=x")

    def raw_bad_request() -> bytes:
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as sk:
            sk.sendall(f"GET /bad path?token={secret_tok} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            return sk.recv(65536)

    await asyncio.to_thread(raw_bad_request)
    await publish(daemon.port, secret_tok, {"type": "sync_event", "status": "started"})
    metrics = (await http_request(daemon.port, "GET", "/metrics")).body.decode()
    server_logs = "\n".join(
        r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
        for r in caplog.records
        if not r.name.startswith("websockets.client")  # the test's own client logs its request
    )
    assert "GET /ws/events" in server_logs or "connection" in server_logs  # the server did log
    assert secret_tok.split(".")[2] not in server_logs
    assert secret_tok not in metrics


def test_authenticator_unit(tmp_path):
    f = tmp_path / "tokens"
    f.write_text("# comment\n  tok-1  \n\ntok-2 # trailing comment\n")
    a = Authenticator(str(f))
    assert a.verify("tok-1").values and a.verify("tok-2")
    with pytest.raises(AuthError):
        a.verify("tok-3")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(ConfigError):
        Authenticator(str(tmp_path / "empty"))
    with pytest.raises(ConfigError) as ei:
        Authenticator(jwt_secret_file=str(tmp_path / "missing"))
    assert "missing" in str(ei.value)
    assert not Authenticator().configured and Authenticator(insecure_no_auth=True).configured
    s = tmp_path / "s"
    s.write_text("  " + SECRET + "\n")
    a = Authenticator(jwt_secret_file=str(s))
    tok = mint_token(SECRET, "me", 60, types=["key_change"], cf=["default"], prefix=["u:"], admin=True, values=True)
    g = a.verify(tok)
    assert g.subject == "me" and g.admin and g.values and g.types == {"key_change"} and g.prefixes == (b"u:",)
    assert narrow(g, None, None, None, False) == (frozenset({"key_change"}), frozenset({"default"}), (b"u:",))
    with pytest.raises(AuthError) as ei:
        narrow(g, None, ["other"], None, False)
    assert ei.value.code == 4403
