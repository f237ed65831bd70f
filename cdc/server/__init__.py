"""The network edge: ``/ws/events``, ``/events``, ``/health/*``, ``/metrics``, ``/publish`` and the
static files, on one port.

- ``endpoints``: ``Server`` (request routing, auth, Origin/Host checks, limits, WebSocket sessions).

Invariant: never crashes on a peer's bytes; every refusal is an HTTP status or close code, one log
line at most. May import: ``cdc.delivery`` and everything below it. Never ``cdc.daemon`` or
``cdc.cli``.
"""
