"""From the journal to subscribers: the bus, the hub and what they report.

- ``bus``: ``EventBus`` (group commit in a writer thread, bounded in events and bytes, then fan-out)
- ``hub``: subscribers, filters, encode-once fan-out, replay, coalescing
- ``auth``: tokens file and HS256 JWT scopes
- ``health``, ``metrics``, ``stats``: probes, Prometheus, ``stats`` frames
- ``natsbus``: the JetStream publisher (scale-out) and its stream conventions
- ``wsconn``: the only module touching websockets internals (frame writes, flow control, abort)

Invariant: every journaled event reaches every matching subscriber once, in id order, or the
subscriber is closed with a code that tells it to resume. May import: ``cdc.journal``,
``cdc.capture``/``cdc.ops`` (only their public counters), ``cdc.sources``, ``cdc.format``,
``cdc.model``, ``cdc.errors``. Never ``cdc.server``, ``cdc.daemon`` or ``cdc.cli``.
"""
