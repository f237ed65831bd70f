"""Pure data model: what travels and what is configured.

- ``events``: the event Structs (msgspec; the wire schema, ``/schema.json`` and ``cdc.d.ts``).
- ``published``: validation of events posted to ``/publish``.
- ``config``: the ``Config`` schema and option precedence (CLI > env > TOML > defaults).
- ``context``: the typed ``Context`` Protocol through which components reach the daemon.

Invariant: no sockets, threads, event loops or file watching; values in, values out (the config
module alone reads the TOML file it is given). May import: the stdlib, msgspec, ``cdc.errors``.
"""
