"""The typed seam between the components (capture, ops, stats, the server) and the daemon.

Components receive a :class:`Context` and reach the daemon's parts only through these Protocols;
``cdc.daemon.app.AppContext`` (and the edge's context) satisfy them structurally. Pure typing:
nothing here runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class StopSignal(Protocol):
    """The daemon's stop flag (an ``asyncio.Event``)."""

    def is_set(self) -> bool: ...
    async def wait(self) -> Any: ...


class EventSink(Protocol):
    """The bus: events (and the checkpoints that cover them) committed in one transaction."""

    async def emit(self, events: list[Any], checkpoints: dict[str, bytes] | None = None) -> None: ...


class CheckpointStore(Protocol):
    """The journal as components see it: their checkpoints and the last id."""

    @property
    def latest_id(self) -> int: ...
    def get_checkpoint(self, name: str) -> bytes | None: ...


class HealthBoard(Protocol):
    """Probe conditions (``health_change`` events on transitions)."""

    def set(self, probe: str, name: str, ok: bool, reason: str = "") -> None: ...
    def status(self, probe: str) -> tuple[bool, str]: ...
    def healthy(self, probe: str) -> bool: ...


class MetricsSink(Protocol):
    """The Prometheus registry's counters and gauges by short name."""

    def inc(self, name: str, n: float = 1) -> None: ...


class StoreLocation(Protocol):
    """Where the store is (``cdc.sources.store.StoreInfo``)."""

    @property
    def kind(self) -> str: ...
    @property
    def db_dir(self) -> str: ...
    @property
    def wal_dir(self) -> str: ...


class Context(Protocol):
    """What every component's ``run(ctx)`` receives."""

    config: Any  # cdc.model.config.Config
    store: StoreLocation | None
    bus: EventSink
    journal: CheckpointStore
    health: HealthBoard
    metrics: MetricsSink
    stop: StopSignal
    components: Sequence[Any]
