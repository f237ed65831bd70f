"""Review findings on token verification, over real connections to a real daemon.

- clock skew: a token minted by a backend whose clock runs a little fast (``iat``/``nbf`` a few
  seconds in our future) is accepted; one far in the future, or past its ``exp``, is not;
- malformed claims (wrong types, lone surrogates, huge lists, non-finite numbers) close with a
  clean 4401 and a reason, never 1011 and never a traceback in the log.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from cdc.delivery.auth import CLOCK_SKEW_S, MAX_SCOPE_ITEMS, Authenticator
from cdc.errors import AuthError
from tests.harness.daemon import SECRET
from tests.harness.net import http_request, recv_json


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_jwt(payload: dict[str, Any] | bytes | list[Any], secret: str = SECRET) -> str:
    """An HS256 JWT over an arbitrary payload (raw JSON bytes allowed: NaN, lone surrogates)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{_b64(body)}"
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(sig)}"


async def close_of(ws: Any) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as ci:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    assert ci.value.rcvd is not None
    return ci.value.rcvd.code, ci.value.rcvd.reason


def now() -> int:
    return int(time.time())


@pytest.mark.parametrize("field", ["iat", "nbf"])
async def test_token_from_a_fast_clock_connects(daemon: Any, field: str) -> None:
    tok = raw_jwt({"sub": "fast-clock", field: now() + 2, "exp": now() + 600})
    async with daemon.connect(tok=tok) as ws:
        hello = await recv_json(ws)
        assert hello["type"] == "hello"


@pytest.mark.parametrize("field", ["iat", "nbf"])
async def test_token_far_in_the_future_is_refused(daemon: Any, field: str) -> None:
    tok = raw_jwt({"sub": "x", field: now() + int(CLOCK_SKEW_S) + 120, "exp": now() + 3600})
    async with daemon.connect(tok=tok) as ws:
        code, reason = await close_of(ws)
    assert code == 4401 and "not yet valid" in reason


def test_exp_gets_no_leeway() -> None:
    auth_file_secret = SECRET
    a = _auth(auth_file_secret)
    t = 1_800_000_000
    tok = raw_jwt({"exp": t, "iat": t - 10})
    with pytest.raises(AuthError, match="expired"):
        a.verify(tok, now=t)
    with pytest.raises(AuthError, match="expired"):
        a.verify(tok, now=t + 1)
    assert a.verify(tok, now=t - 1).exp == t
    # the iat/nbf leeway is bounded: 60 s in the future passes, 61 s does not
    assert a.verify(raw_jwt({"exp": t + 600, "iat": t + CLOCK_SKEW_S}), now=t)
    with pytest.raises(AuthError, match="not yet valid"):
        a.verify(raw_jwt({"exp": t + 600, "nbf": t + CLOCK_SKEW_S + 1}), now=t)


def _auth(secret: str) -> Authenticator:
    import os
    import tempfile

    fd, path = tempfile.mkstemp()
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    try:
        return Authenticator(jwt_secret_file=path)
    finally:
        os.unlink(path)


FAR = 4_000_000_000
MALFORMED: dict[str, bytes | dict[str, Any] | list[Any]] = {
    "prefix_lone_surrogate": b'{"exp":4000000000,"prefix":["\\ud800"]}',
    "types_lone_surrogate": b'{"exp":4000000000,"types":["a\\udfff"]}',
    "cf_lone_surrogate_str": b'{"exp":4000000000,"cf":"\\ud800"}',
    "sub_lone_surrogate": b'{"exp":4000000000,"sub":"\\udc00x"}',
    "prefix_object": {"exp": FAR, "prefix": {"a": 1}},
    "prefix_numbers": {"exp": FAR, "prefix": [1, 2]},
    "types_int": {"exp": FAR, "types": 5},
    "cf_nested": {"exp": FAR, "cf": [["default"]]},
    "prefix_huge_list": {"exp": FAR, "prefix": [f"p{i}" for i in range(MAX_SCOPE_ITEMS + 1)]},
    "types_long_entry": {"exp": FAR, "types": ["a." + "x" * 5000]},
    "sub_int": {"exp": FAR, "sub": 123},
    "admin_string": {"exp": FAR, "admin": "true"},
    "values_int": {"exp": FAR, "values": 1},
    "exp_string": {"exp": str(FAR)},
    "exp_bool": {"exp": True},
    "exp_null": {"exp": None},
    "exp_nan": b'{"exp":NaN}',
    "iat_infinity": b'{"exp":4000000000,"iat":Infinity}',
    "nbf_string": {"exp": FAR, "nbf": "x"},
    "payload_list": [1, 2],
    "payload_string": b'"just a string"',
}


async def test_malformed_claims_close_4401_cleanly(daemon: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name, payload in MALFORMED.items():
        tok = raw_jwt(payload)
        async with daemon.connect(tok=tok) as ws:
            code, reason = await close_of(ws)
        assert code == 4401, (name, code, reason)
        assert reason.startswith(("invalid token", "token expired")), (name, reason)
        # the long-poll endpoint gives the same clean answer
        r = await http_request(daemon.port, "GET", "/events?timeout=0", headers={"Authorization": f"Bearer {tok}"})
        assert r.status == 401, (name, r.status, r.body)
    # still serving, and nothing crashed on the way
    async with daemon.connect() as ws:
        assert (await recv_json(ws))["type"] == "hello"
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR or "Traceback" in r.getMessage()]
    assert not bad, [(r.name, r.getMessage()[:200]) for r in bad]


def test_reason_names_the_claim() -> None:
    a = _auth(SECRET)
    with pytest.raises(AuthError) as ei:
        a.verify(raw_jwt(b'{"exp":4000000000,"prefix":["\\ud800"]}'))
    assert ei.value.code == 4401 and "'prefix'" in str(ei.value)
    with pytest.raises(AuthError) as ei:
        a.verify(raw_jwt({"exp": FAR, "types": [f"t{i}" for i in range(1000)]}))
    assert "more than 256" in str(ei.value)
    # a full-size scope is still fine
    g = a.verify(raw_jwt({"exp": FAR, "prefix": [f"p{i}" for i in range(MAX_SCOPE_ITEMS)], "values": True}))
    assert g.prefixes is not None and len(g.prefixes) == MAX_SCOPE_ITEMS and g.values is True


def test_mint_token_refuses_what_the_verifier_would_refuse() -> None:
    from cdc.delivery.auth import mint_token
    from cdc.errors import ConfigError

    with pytest.raises(ConfigError, match="--prefix"):
        mint_token(SECRET, prefix=[f"p{i}" for i in range(MAX_SCOPE_ITEMS + 1)])
    with pytest.raises(ConfigError, match="--types"):
        mint_token(SECRET, types=["a." + "x" * 2000])
    tok = mint_token(SECRET, prefix=[f"p{i}" for i in range(MAX_SCOPE_ITEMS)])
    assert _auth(SECRET).verify(tok).prefixes is not None
