"""Open-file limit: ``cdc serve`` raises its soft RLIMIT_NOFILE to the hard limit at start-up.

Review finding: a few hundred half-open connections exhausted the default soft limit and
blinded capture (EMFILE). A real ``cdc serve`` started with a soft limit of 256 must run with
soft == hard, log the value at debug level, and keep serving while 400 idle TCP connections
are held open against it. The unit file sets ``LimitNOFILE=65536``.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
from pathlib import Path
from typing import Any

import pytest
import websockets

from cdc.daemon.preflight import raise_nofile_limit
from tests.harness.net import http_request_sync

from .conftest import debug_serve

LOW = 256
IDLE = 400


def _proc_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no 'Max open files' line")


def _low_soft_limit() -> None:  # runs in the child before exec
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW, hard))


@pytest.fixture
def low_limit_daemon(tmp_path: Path, rocks_db: Path) -> Any:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < IDLE + 200:
        pytest.skip(f"hard RLIMIT_NOFILE {hard} is too low for this test")
    tokens = tmp_path / "tokens"
    tokens.write_text("limits-test-token-0123456789\n")
    with debug_serve(tmp_path, rocks_db, "--tokens-file", str(tokens), preexec_fn=_low_soft_limit) as running:
        yield running


async def test_serve_raises_soft_nofile_and_survives_idle_connections(low_limit_daemon: Any) -> None:
    port, proc, log_path = low_limit_daemon
    soft, hard = _proc_limits(proc.pid)
    assert soft == hard and soft > LOW, (soft, hard)
    lines = [json.loads(ln) for ln in log_path.read_text().splitlines() if ln.startswith("{")]
    msg = [ln["msg"] for ln in lines if "RLIMIT_NOFILE" in ln["msg"]]
    assert msg and f"soft {soft} (was {LOW})" in msg[0], msg
    # hold many half-open connections (connected, nothing sent): more than the old soft limit
    idle: list[socket.socket] = []
    try:
        for _ in range(IDLE):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        r = await asyncio.to_thread(http_request_sync, port, "GET", "/health/live", None, None, 10)
        assert r.status == 200
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/events?token=limits-test-token-0123456789") as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert hello["type"] == "hello"
    finally:
        for s in idle:
            s.close()
    assert proc.poll() is None


def test_raise_nofile_limit_in_process() -> None:
    soft0, hard0 = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(LOW, hard0), hard0))
        before, now, hard = raise_nofile_limit()
        assert before == min(LOW, hard0) and hard == hard0
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == now
        assert now == hard0 or hard0 == resource.RLIM_INFINITY
        assert raise_nofile_limit()[0] == now  # idempotent
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft0, hard0))
