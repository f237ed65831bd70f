"""The dashboard's ``#url=`` / ``#poll=`` overrides cannot send the stored token off-origin.

Review finding: the check compared host names only, so ``/#url=ws://<same host>:6666/`` made
the dashboard hand its token to whatever listens on another port of the same machine. In real
Chromium: an override to another port (or another host name for the same address) is ignored
and nothing ever connects to the decoy listener; an override on the page's own origin is used.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import ROOT, TOKEN, Daemon, free_port, wait_for

pytestmark = [pytest.mark.browser]


@pytest.fixture
def daemon(serve_daemon_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Daemon:
    """The daemon of this work tree (not whatever ``cdc`` an editable install points at)."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    return serve_daemon_factory()


class Decoy:
    """A loopback listener that records every connection (and the first bytes) made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port = int(self.sock.getsockname()[1])
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            c.settimeout(1)
            try:
                self.received.append(c.recv(65536))
            except OSError:
                self.received.append(b"")
            finally:
                c.close()

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        self.sock.close()


@pytest.fixture
def decoy() -> Iterator[Decoy]:
    d = Decoy()
    yield d
    d.close()


def _open(context: Any, url: str) -> tuple[Any, list[str], list[str]]:
    page = context.new_page()
    sockets: list[str] = []
    requests: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    return page, sockets, requests


def _status(page: Any) -> str:
    return str(page.locator("#status").first.inner_text())


@pytest.mark.parametrize("target", ["ws://127.0.0.1:{decoy}/ws/events", "http://127.0.0.1:{decoy}/ws/events", "ws://localhost:{port}/ws/events"])
def test_url_override_to_another_origin_is_ignored(daemon: Daemon, context: Any, decoy: Decoy, target: str) -> None:
    bad = target.format(decoy=decoy.port, port=daemon.port)
    poll = f"http://127.0.0.1:{decoy.port}/events"
    page, sockets, requests = _open(context, f"{daemon.base}/#token={TOKEN}&url={bad}&poll={poll}&pollAfterFailures=1")
    try:
        wait_for(lambda: _status(page) == "connected", 10, what="dashboard connected to its own origin")
    except AssertionError:
        raise AssertionError((_status(page), sockets, requests, page.url)) from None
    assert sockets and all(u.startswith(f"ws://127.0.0.1:{daemon.port}/") for u in sockets), sockets
    assert not any(str(decoy.port) in u or "localhost" in u for u in requests), requests
    assert decoy.received == [], decoy.received
    assert not any(TOKEN.encode() in b for b in decoy.received)


def test_url_override_on_the_same_origin_is_used(daemon: Daemon, context: Any, decoy: Decoy) -> None:
    own = f"ws://127.0.0.1:{daemon.port}/ws/events?via=fragment"
    page, sockets, _ = _open(context, f"{daemon.base}/#token={TOKEN}&url={own.replace('?', '%3F').replace('=', '%3D')}")
    wait_for(lambda: _status(page) == "connected", 10, what="dashboard connected via the override")
    assert any("via=fragment" in u for u in sockets), sockets
    assert decoy.received == []


def test_decoy_port_differs(daemon: Daemon, decoy: Decoy) -> None:
    # sanity for the tests above: the decoy is a different port of the same host
    assert decoy.port != daemon.port and free_port() != decoy.port
