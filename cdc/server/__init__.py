"""The network edge: ``/ws/events``, ``/events``, ``/health/*``, ``/metrics``, ``/publish`` and the
static files, on one port.

- ``endpoints``: ``Server`` (lifecycle, heartbeats; re-exported here)
- ``http``: requests parsed by h11, the unfinished-request gate (header timeout, caps), responses
- ``routes``: the HTTP routes (long-poll, health, metrics, publish, static), Origin/Host, CORS
- ``ws``: the WebSocket session (hello, client ops, control frames, close codes, access lines)
- ``query``: query parameters and client-message field checks
- ``logsafe``: redaction of tokens/queries in log lines

websockets internals are reached only through ``cdc.delivery.wsconn``.

Invariant: never crashes on a peer's bytes; every refusal is an HTTP status or close code, one log
line at most. May import: ``cdc.delivery`` and everything below it. Never ``cdc.daemon`` or
``cdc.cli``.
"""

from cdc.server.endpoints import Server

__all__ = ["Server"]
