"""The composition root: start-up checks, wiring, lifecycle.

- ``app``: ``serve(config)`` (components in a TaskGroup, signals, ordered shutdown, sd_notify)
- ``edge``: ``cdc edge`` wiring (a mirror journal fed by JetStream, the same hub and server)
- ``wiring``: what both share (journal from the config, server start/close, guarded components, signals)
- ``preflight``: checks a user can fix (exit 3), the state-dir lock
- ``sdnotify``: the systemd notify protocol; ``logs``: logging setup (text / JSON, journald)

Invariant: the only package that knows every component; nothing below imports it. May import
everything except ``cdc.cli``.
"""
