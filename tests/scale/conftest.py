"""Scale-out fixtures: real nats-server processes (single node and a 3-node JetStream cluster),
`cdc serve --nats-url` capture nodes and `cdc edge` nodes as subprocesses, resuming subscribers.

Every process is started on free loopback ports and killed in the fixture's teardown; every wait
is bounded (tests.harness.waiting)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.daemon import ROOT, SECRET, OPAQUE_TOKEN, token
from tests.harness.net import free_port, http_request_sync
from tests.harness.clients import ResumingClient
from tests.harness.waiting import wait_for, wait_for_sync

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"

pytestmark = pytest.mark.skipif(not os.path.exists(NATS_SERVER), reason="nats-server not installed")


class NatsServer:
    """One nats-server -js process; ``stop()`` / ``kill9()`` / ``start()`` again on the same ports and store."""

    def __init__(self, tmp: Path, name: str, *, cluster_port: int | None = None, routes: list[int] | None = None) -> None:
        self.tmp = tmp
        self.name = name
        self.port = free_port()
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.sd = tmp / f"js-{name}"
        self.log_path = tmp / f"nats-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        args = [NATS_SERVER, "-js", "-sd", str(self.sd), "-a", "127.0.0.1", "-p", str(self.port), "-n", self.name]
        if self.cluster_port is not None:
            args += ["--cluster_name", "cdc-test", "--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            if self.routes:
                args += ["--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        wait_for_sync(self._listening, 10, f"nats-server {self.name} listening")
        return self

    def _listening(self) -> bool:
        import socket

        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"nats-server exited: {self.log_path.read_text()[-2000:]}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


@pytest.fixture
def nats_single(tmp_path: Path) -> Iterator[NatsServer]:
    s = NatsServer(tmp_path, "n1").start()
    try:
        yield s
    finally:
        s.kill9()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[list[NatsServer]]:
    cports = [free_port() for _ in range(3)]
    servers = [NatsServer(tmp_path, f"c{i}", cluster_port=cports[i], routes=[p for j, p in enumerate(cports) if j != i]) for i in range(3)]
    try:
        for s in servers:
            s.start()
        yield servers
    finally:
        for s in servers:
            s.kill9()


def cdc_env(tmp: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    secret = tmp / "jwt.secret"
    if not secret.exists():
        secret.write_text(SECRET + "\n")
        (tmp / "tokens").write_text(f"{OPAQUE_TOKEN}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_") and k not in ("NOTIFY_SOCKET", "STATE_DIRECTORY")}
    env.update(PYTHONPATH=ROOT, CDC_JWT_SECRET_FILE=str(secret), CDC_TOKENS_FILE=str(tmp / "tokens"), CDC_LOG_LEVEL="info")
    env.update(extra or {})
    return env


class Node:
    """``python -m cdc serve|edge ...`` on a fixed port; restartable on the same state dir."""

    def __init__(self, tmp: Path, name: str, command: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.command = command
        self.port = free_port()
        self.state = tmp / f"state-{name}"
        self.args = [*args, "--state-dir", str(self.state), "--port", str(self.port)]
        self.env = env
        self.log_path = tmp / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready: str = "startup") -> Node:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "cdc", self.command, *self.args], env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}: {self.log()[-3000:]}")
            try:
                return http_request_sync(self.port, "GET", f"/health/{ready}", timeout=2).status == 200
            except OSError:
                return False

        wait_for_sync(up, 30, f"{self.name} {ready}")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(20)
        self._log.close()
        return rc

    def ws_url(self, query: str = "", tok: str | None = None) -> str:
        tok = tok or token(admin=True, values=True)
        return f"ws://127.0.0.1:{self.port}/ws/events?" + (query + "&" if query else "") + f"token={tok}"

    def get(self, path: str, tok: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {tok or token(admin=True, values=True)}"}
        r = http_request_sync(self.port, "GET", path, headers=headers, timeout=40)
        try:
            return r.status, json.loads(r.body)
        except ValueError:
            return r.status, r.body

    def all_events(self) -> list[dict[str, Any]]:
        """Every retained event, oldest first (GET /events, paged)."""
        out: list[dict[str, Any]] = []
        since = 0
        while True:
            st, body = self.get(f"/events?since={since}&timeout=0&limit=10000&values=1")
            assert st == 200, body
            assert "reset" not in body, body
            out.extend(body["events"])
            if not body["events"] and body["cursor"] == since:
                return out
            since = body["cursor"]


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Any]:
    """``make(name, "serve"|"edge", args, env_extra)`` -> started Node; all killed at teardown."""
    made: list[Node] = []

    def make(name: str, command: str, args: list[str], env: dict[str, str] | None = None, ready: str = "startup") -> Node:
        n = Node(tmp_path, name, command, args, cdc_env(tmp_path, env))
        made.append(n)
        return n.start(ready)

    try:
        yield make
    finally:
        for n in made:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.kill()
                n.proc.wait(10)


# the scale tests' name for the harness's resuming client over a list of nodes
ResumingSubscriber = ResumingClient.over_nodes


def assert_same_events(sub: ResumingClient, truth: list[dict[str, Any]]) -> None:
    """Every event of ``truth`` (the capture node's own) exactly once, in order, identical."""
    assert not sub.duplicates, f"{sub.name}: duplicates {sub.duplicates[:10]}"
    assert not sub.resets, f"{sub.name}: resets {sub.resets[:3]}"
    got = [e["id"] for e in sub.events]
    want = [e["id"] for e in truth]
    assert got == want, f"{sub.name}: {len(got)} events vs {len(want)}; first difference at {next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))}"
    for a, b in zip(sub.events, truth):
        assert a == b, f"{sub.name}: event {a.get('id')} differs: {a} != {b}"


async def wait_caught_up(subs: list[ResumingClient], latest: int, timeout: float = 30.0) -> None:
    await wait_for(lambda: all(s.last_id >= latest for s in subs), timeout, f"subscribers reach id {latest}: " + ", ".join(f"{s.name}={s.last_id}" for s in subs), interval=0.05)


__all__ = [
    "NatsServer",
    "Node",
    "ResumingSubscriber",
    "assert_same_events",
    "wait_caught_up",
    "cdc_env",
]
