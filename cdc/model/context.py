"""The typed seam between the components (capture, ops, stats, the NATS publisher, the server)
and the daemon.

Components receive a :class:`Context` and reach the daemon's parts only through these Protocols;
``cdc.daemon.app.AppContext`` and ``cdc.daemon.edge.EdgeContext`` satisfy them structurally (a
test checks it), and so must every test double: tests pass real ``Health`` and ``Metrics``
objects, never ``None``. Pure typing: nothing here runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from cdc.model.config import Config


class StopSignal(Protocol):
    """The daemon's stop flag (an ``asyncio.Event``)."""

    def is_set(self) -> bool: ...
    async def wait(self) -> Any: ...


class EventSink(Protocol):
    """The bus: events (and the checkpoints that cover them) committed in one transaction."""

    @property
    def pending(self) -> int: ...
    @property
    def max_pending(self) -> int: ...
    async def emit(self, events: Sequence[Any], checkpoints: dict[str, bytes] | None = None) -> None: ...


class CheckpointStore(Protocol):
    """The journal as components see it: their checkpoints, the last id and its identity."""

    @property
    def latest_id(self) -> int: ...
    @property
    def epoch(self) -> str | None: ...
    def get_checkpoint(self, name: str) -> bytes | None: ...


class HealthBoard(Protocol):
    """Probe conditions (``health_change`` events on transitions), warnings and beats."""

    def set(self, probe: str, name: str, ok: bool, reason: str = "") -> None: ...
    def status(self, probe: str) -> tuple[bool, str]: ...
    def healthy(self, probe: str) -> bool: ...
    def warn(self, probe: str, name: str, text: str | None) -> None: ...
    def beat(self, name: str) -> None: ...


class MetricsSink(Protocol):
    """The Prometheus registry's counters and gauges by short name (``cdc.delivery.metrics``)."""

    def inc(self, name: str, n: float = 1) -> None: ...
    def set(self, name: str, value: float) -> None: ...
    def count_ops(self, by_type: Mapping[str, int]) -> None: ...


class StoreLocation(Protocol):
    """Where the store is (``cdc.sources.store.StoreInfo``)."""

    @property
    def kind(self) -> str: ...
    @property
    def db_dir(self) -> str: ...
    @property
    def wal_dir(self) -> str: ...


class Component(Protocol):
    """A daemon component: runs until ``ctx.stop`` is set; never raises on a file's content."""

    async def run(self, ctx: Context) -> None: ...


class CaptureGauges(Protocol):
    """What the stats frame reads from the WAL capture (``cdc.capture.WalCapture``)."""

    cf_counts: Mapping[str, list[int]]
    cf_names: Mapping[int, str]
    lag_bytes: int
    idle_at: float


class SstGauges(Protocol):
    """What the stats frame reads from the info LOG watcher (``cdc.ops.InfoLogWatcher``)."""

    def sst_bytes(self) -> dict[str, dict[str, int]]: ...
    def running_compactions(self) -> int: ...


class Context(Protocol):
    """What every component's ``run(ctx)`` receives."""

    config: Config
    store: StoreLocation | None  # None: no store found yet (ops components cope)
    bus: EventSink
    journal: CheckpointStore
    health: HealthBoard
    metrics: MetricsSink
    stop: StopSignal
    components: Sequence[Component]


class StatsSources(Protocol):
    """The parts of the context the stats frame reads (``cdc.delivery.stats``)."""

    config: Config
    store: StoreLocation | None
    capture: CaptureGauges | None
    infolog: SstGauges | None
