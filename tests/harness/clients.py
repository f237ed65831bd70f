"""One resuming subscriber for the tests: WebSocket or long-poll, one daemon or a list of nodes.

Whenever a connection (or a poll) ends, the client comes back with ``since=<last id>``; it records
every event once, every duplicate it was sent (an id at or below the last one), every ``reset``
and why each connection ended, so a test can assert "no loss, no duplicate" on ``events``.

    c = ResumingClient(lambda since: d.ws_url(f"since={since}&types=key_change")).start()
    c = ResumingClient.over_nodes("a1", [edge_a, edge_b], "values=1").start()   # fail over
    c = ResumingClient.long_poll(port, token, "types=key_change").start()
    ...
    await c.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.harness.net import http_request


class Node(Protocol):
    """A daemon or edge the client may connect to (``DaemonProcess`` and the scale ``Node``)."""

    proc: Any

    def ws_url(self, query: str = "") -> str: ...


class ResumingClient:
    """Collects events, resuming with ``since=<last id>`` after every drop (see the module doc)."""

    def __init__(self, url_for: Callable[[int], str | None] | None = None, *, name: str = "", since: int = 0,
                 poll: tuple[int, str, str] | None = None, retry_s: float = 0.05) -> None:
        self.name = name
        self.url_for = url_for
        self.poll = poll  # (port, token, query) for long-poll /events
        self.retry_s = retry_s
        self.last_id = since
        self.events: list[dict[str, Any]] = []
        self.duplicates: list[int] = []
        self.resets: list[dict[str, Any]] = []
        self.drops: Counter[str] = Counter()
        self.notes: list[str] = []
        self.connections = 0
        self.current: Any = None  # the node connected now (over_nodes)
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[Any] | None = None

    @classmethod
    def over_nodes(cls, name: str, nodes: Sequence[Node], query: str = "", since: int = 0) -> ResumingClient:
        """Round-robin over ``nodes`` (skipping those whose process is not running)."""
        turn = 0

        def url_for(last: int) -> str | None:
            nonlocal turn
            node = nodes[turn % len(nodes)]
            turn += 1
            if node.proc is None or node.proc.poll() is not None:
                return None
            c.current = node
            return node.ws_url((query + "&" if query else "") + f"since={last}")

        c = cls(url_for, name=name, since=since)
        return c

    @classmethod
    def long_poll(cls, port: int, token: str, query: str = "", since: int = 0, name: str = "") -> ResumingClient:
        return cls(name=name, since=since, poll=(port, token, query))

    # -- compatibility names
    @property
    def last(self) -> int:
        return self.last_id

    @property
    def connects(self) -> int:
        return self.connections

    def keys(self) -> list[str]:
        return [e["key"] for e in self.events if e.get("type") == "key_change"]

    # -- running
    def start(self) -> ResumingClient:
        self.task = asyncio.create_task(self.run())
        return self

    async def stop(self) -> None:
        self.stopping.set()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    def _take(self, m: dict[str, Any]) -> None:
        if "id" in m:
            if m["id"] <= self.last_id:
                self.duplicates.append(m["id"])
                return
            self.last_id = m["id"]
            self.events.append(m)
        elif m.get("type") == "reset":
            self.resets.append(m)
        elif m.get("type") == "error":
            self.notes.append(f"error frame: {m}")

    async def run(self) -> None:
        while not self.stopping.is_set():
            if self.poll is not None:
                await self._poll_once()
                continue
            assert self.url_for is not None
            url = self.url_for(self.last_id)
            if url is None:
                await asyncio.sleep(self.retry_s)
                continue
            try:
                async with websockets.connect(url, max_size=None, open_timeout=5) as ws:
                    self.connections += 1
                    async for raw in ws:
                        msg = json.loads(raw)
                        for m in msg if isinstance(msg, list) else [msg]:
                            self._take(m)
            except ConnectionClosed as exc:
                self.drops[f"closed {exc.rcvd.code if exc.rcvd else 'abnormally'}"] += 1
            except (OSError, InvalidHandshake, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as exc:
                self.drops[type(exc).__name__] += 1
            else:
                self.drops["closed"] += 1
            self.current = None
            await asyncio.sleep(self.retry_s)

    async def _poll_once(self) -> None:
        assert self.poll is not None
        port, token, query = self.poll
        path = f"/events?since={self.last_id}&timeout=5" + (f"&{query}" if query else "")
        try:
            r = await http_request(port, "GET", path, headers={"Authorization": f"Bearer {token}"}, timeout=15)
        except (OSError, http.client.HTTPException) as exc:
            self.drops[type(exc).__name__] += 1
            await asyncio.sleep(self.retry_s)
            return
        if r.status != 200:
            self.notes.append(f"HTTP {r.status}: {r.body[:200]!r}")
            await asyncio.sleep(self.retry_s)
            return
        self.connections += 1
        body = r.json()
        if "reset" in body:
            self.resets.append(body["reset"])
        for ev in body["events"]:
            self._take(ev)
        self.last_id = max(self.last_id, int(body["cursor"]))
