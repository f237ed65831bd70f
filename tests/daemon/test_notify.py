"""sd_notify integration: READY=1 once listening and started, STATUS=, WATCHDOG=1 while live."""

from __future__ import annotations

import socket

from tests.harness.waiting import wait_for


async def test_ready_status_watchdog_over_notify_socket(daemon_factory, tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    got: list[str] = []

    def drain() -> str:
        while True:
            try:
                got.append(sock.recv(4096).decode())
            except BlockingIOError:
                break
        return "\n".join(got)

    try:
        await daemon_factory()
        await wait_for(lambda: "READY=1" in drain(), 5, "READY=1")
        await wait_for(lambda: "WATCHDOG=1" in drain(), 5, "WATCHDOG=1")
        text = drain()
        assert "STATUS=" in text and "subscribers" in text
    finally:
        sock.close()
