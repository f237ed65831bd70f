"""The contexts of the parts above the components: the server and the NATS publisher.

``cdc.model.context.Context`` is what every component gets; the server (and the publisher)
also reach the hub, the real journal and the HTTP-facing parts of health and metrics.
``cdc.daemon.app.AppContext`` satisfies both Protocols; ``cdc.daemon.edge``'s context satisfies
:class:`ServerContext`. Pure typing: nothing here runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from cdc.delivery.health import Health
from cdc.delivery.hub import Hub
from cdc.delivery.metrics import Metrics
from cdc.journal.lmdb_journal import Journal
from cdc.model.config import Config
from cdc.model.context import CaptureGauges, Context, SstGauges, StopSignal, StoreLocation


class PublishSink(Protocol):
    """Where ``POST /publish`` puts an event (the bus; on an edge, the stream)."""

    @property
    def journal_ok(self) -> bool: ...
    async def emit_and_wait(self, events: Sequence[Any]) -> list[int]: ...


class ServerContext(Protocol):
    """What ``cdc.server.endpoints.Server`` (and its stats frames) use."""

    config: Config
    store: StoreLocation | None
    capture: CaptureGauges | None
    infolog: SstGauges | None
    journal: Journal
    health: Health
    metrics: Metrics
    stop: StopSignal
    bus: PublishSink


class PublisherContext(Context, Protocol):
    """What ``cdc.delivery.natsbus.NatsPublisher`` uses: a component that also reads the real
    journal and waits on the hub."""

    journal: Journal  # type: ignore[misc]
    hub: Hub
