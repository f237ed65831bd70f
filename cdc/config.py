"""Configuration: one frozen Struct that every part of the daemon reads.

Rule: this module is pure apart from reading the TOML file named by the user.

Precedence: command line > ``CDC_<OPTION>`` environment variables > ``--config`` TOML file >
defaults. Option names in TOML use the CLI spelling with dashes or underscores
(``allow-origin`` / ``allow_origin``).
"""

from __future__ import annotations

import msgspec


class Config(msgspec.Struct, frozen=True, kw_only=True):
    # --- store
    db: str
    wal_dir: str | None = None  # default: db
    snapshots_dir: str | None = None
    # --- state
    state_dir: str = "./cdc-state"  # default: $STATE_DIRECTORY (systemd) else ./cdc-state
    # --- network
    host: str = "127.0.0.1"
    port: int = 8765
    allow_origin: tuple[str, ...] = ()
    # --- auth
    tokens_file: str | None = None
    jwt_secret_file: str | None = None
    insecure_no_auth: bool = False
    # --- journal
    journal_map_size: int = 1 << 30  # bytes of LMDB map
    retention_count: int = 10_000_000  # events
    retention_bytes: int = 512 << 20  # bytes of event data
    retention_age_s: float = 7 * 24 * 3600.0
    commit_interval_ms: float = 5.0  # max time an event waits for its journal commit
    # --- delivery limits
    max_subscribers: int = 10_000
    max_message_bytes: int = 64 * 1024  # inbound WebSocket frames / POST bodies
    subscriber_queue: int = 10_000  # events buffered per subscriber before close 4429
    heartbeat_ms: int = 15_000
    max_poll_timeout_s: float = 30.0
    # --- capture
    rescan_interval_s: float = 1.0  # periodic rescan in case watch events are lost
    readiness_max_lag_bytes: int = 64 << 20
    # --- process
    shutdown_timeout_s: float = 10.0
    log_format: str = "text"  # text | json
    log_level: str = "info"

    @property
    def effective_wal_dir(self) -> str:
        return self.wal_dir or self.db
