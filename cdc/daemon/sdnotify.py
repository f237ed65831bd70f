"""systemd notify protocol (sd_notify(3)) without libsystemd.

A :class:`Notifier` sends ``READY=1``, ``STATUS=...``, ``WATCHDOG=1`` and ``STOPPING=1``
datagrams to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a filesystem path, or an abstract
socket when it starts with ``@``). When ``NOTIFY_SOCKET`` is unset every method is a no-op, so
the daemon calls them unconditionally.

Invariants:
- Never raises: a vanished or full socket is counted in ``errors`` and otherwise ignored (the
  service manager going away must not take the daemon with it).
- Never blocks longer than ``send_timeout_s`` (a datagram socket whose receiver queue is full
  blocks the sender; the message is then dropped and counted).
- ``watchdog_interval_s`` is half of ``$WATCHDOG_USEC`` (the recommended ping period), or None
  when the watchdog is off or ``$WATCHDOG_PID`` names another process.
- Thread-safe: each call is one ``sendto`` on a socket opened once.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping

__all__ = ["Notifier"]


class Notifier:
    """Talks to systemd's notify socket; every method is a no-op when not under systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None, *, send_timeout_s: float = 1.0) -> None:
        env = os.environ if environ is None else environ
        self.send_timeout_s = send_timeout_s
        self.address: str | None = None
        self.errors = 0
        self.sent = 0
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        raw = env.get("NOTIFY_SOCKET") or ""
        if raw.startswith("@"):
            self.address = "\0" + raw[1:]
        elif raw.startswith("/"):
            self.address = raw
        self.watchdog_interval_s: float | None = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        """True when ``NOTIFY_SOCKET`` names a socket (i.e. running under ``Type=notify``)."""
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``assignments`` (``"KEY=value"`` strings) as one datagram; True if sent."""
        if self.address is None or not assignments:
            return False
        data = "\n".join(a.replace("\n", " ") for a in assignments).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    self._sock.settimeout(self.send_timeout_s)
                self._sock.sendto(data, self.address)
            except OSError:
                self.errors += 1
                return False
            self.sent += 1
            return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (plus ``MAINPID``): start-up finished (caught up and listening)."""
        parts = ["READY=1", f"MAINPID={os.getpid()}"]
        if status:
            parts.append(f"STATUS={status}")
        return self.notify(*parts)

    def status(self, text: str) -> bool:
        """``STATUS=text``: one line shown by ``systemctl status``."""
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: call only while the capture loop is healthy."""
        return self.notify("WATCHDOG=1")

    def watchdog_trigger(self) -> bool:
        """``WATCHDOG=trigger``: ask systemd to treat the service as hung right now."""
        return self.notify("WATCHDOG=trigger")

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: graceful shutdown has begun."""
        parts = ["STOPPING=1"]
        if status:
            parts.append(f"STATUS={status}")
        return self.notify(*parts)

    def close(self) -> None:
        """Close the socket (idempotent)."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return value / 1_000_000 / 2
