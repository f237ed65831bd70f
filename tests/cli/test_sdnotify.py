"""The notify protocol against a real AF_UNIX datagram socket (path and abstract namespace)."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from pathlib import Path

import pytest

from cdc.daemon.sdnotify import Notifier


def _recv_all(sock: socket.socket) -> list[str]:
    out = []
    sock.settimeout(1.0)
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except (TimeoutError, BlockingIOError):
            return out
        sock.settimeout(0.05)


def _socket_pair(kind: str, tmp_path: Path) -> tuple[socket.socket, str]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if kind == "path":
        path = str(tmp_path / "notify.sock")
        s.bind(path)
        return s, path
    name = f"cdc-test-{uuid.uuid4().hex}"
    s.bind("\0" + name)
    return s, "@" + name


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_protocol_messages(kind: str, tmp_path: Path) -> None:
    sock, addr = _socket_pair(kind, tmp_path)
    with sock:
        n = Notifier({"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "30000000"})
        assert n.enabled and n.watchdog_interval_s == 15.0
        assert n.ready("caught up; listening on 127.0.0.1:8765")
        assert n.status("lag 0 B, 3 subscribers")
        assert n.watchdog()
        assert n.stopping()
        msgs = _recv_all(sock)
        n.close()
    assert msgs[0].split("\n") == ["READY=1", f"MAINPID={os.getpid()}", "STATUS=caught up; listening on 127.0.0.1:8765"]
    assert msgs[1:] == ["STATUS=lag 0 B, 3 subscribers", "WATCHDOG=1", "STOPPING=1"]
    assert n.sent == 4 and n.errors == 0


def test_status_newlines_cannot_inject_assignments(tmp_path: Path) -> None:
    sock, addr = _socket_pair("path", tmp_path)
    with sock:
        n = Notifier({"NOTIFY_SOCKET": addr})
        n.status("ok\nREADY=1")
        (msg,) = _recv_all(sock)
    assert msg == "STATUS=ok READY=1"


def test_noop_without_socket_and_never_raises(tmp_path: Path) -> None:
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval_s is None
    assert n.ready() is False and n.watchdog() is False and n.status("x") is False and n.stopping() is False
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
    assert gone.ready() is False and gone.errors == 1  # socket vanished: counted, not raised
    assert Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled is False


def test_watchdog_interval_rules() -> None:
    assert Notifier({"WATCHDOG_USEC": "2000000"}).watchdog_interval_s == 1.0
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "junk"}).watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}).watchdog_interval_s == 1.0
    assert Notifier({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}).watchdog_interval_s is None


def test_thread_safe_concurrent_sends(tmp_path: Path) -> None:
    sock, addr = _socket_pair("path", tmp_path)
    received: list[str] = []

    def reader() -> None:
        sock.settimeout(2.0)
        while len(received) < 100:
            try:
                received.append(sock.recv(4096).decode())
            except TimeoutError:
                return

    with sock:
        rt = threading.Thread(target=reader)
        rt.start()
        n = Notifier({"NOTIFY_SOCKET": addr})
        threads = [threading.Thread(target=lambda: [n.watchdog() for _ in range(25)]) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rt.join()
    assert received == ["WATCHDOG=1"] * 100 and n.errors == 0


def test_full_receiver_queue_does_not_block_forever(tmp_path: Path) -> None:
    sock, addr = _socket_pair("path", tmp_path)
    with sock:  # nobody reads: the kernel queue (net.unix.max_dgram_qlen) fills up
        n = Notifier({"NOTIFY_SOCKET": addr}, send_timeout_s=0.05)
        results = []
        while n.errors == 0 and len(results) < 5000:
            results.append(n.watchdog())
    assert results[0] is True and results[-1] is False and n.errors == 1 and n.sent == len(results) - 1
