"""Prometheus metrics: one registry per app (never the global one).

Hot-path numbers (events published/delivered, subscribers, journal size) are plain integers
kept by the hub, bus and journal and read at scrape time by a collector, so the fan-out pays
nothing per event. Components update the prometheus objects below directly:

- ``decode_errors`` (Counter): WAL records that could not be decoded
- ``capture_lag_bytes`` / ``capture_lag_seq`` (Gauge): how far capture is behind the store
- ``capture_gaps`` (Counter): sequence gaps detected
- ``wal_bytes_read`` (Counter): WAL bytes read by capture
- ``ops_events`` (Counter, label ``type``): compaction/flush/snapshot notices emitted
- from the server (bound by ``Server`` itself): ``cdc_ws_connections_total{result}`` (accepted /
  unauthorized / forbidden / origin / limit / bad_request / shutting_down) and
  ``cdc_http_polls_waiting``, ``cdc_http_connections_refused_total{reason}`` and
  ``cdc_http_connections_unfinished``
- from the bus / journal: ``cdc_journal_commit_failures_total``, ``cdc_events_dropped_total``,
  ``cdc_journal_rejected_events_total``
- ``inc(name, n)`` / ``set(name, value)``: any other counter / gauge ``cdc_<name>``, created on
  first use (``events_captured`` from capture becomes ``cdc_wal_events_captured_total``)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cdc.format import speedups

if TYPE_CHECKING:
    from cdc.delivery.bus import EventBus
    from cdc.delivery.health import Health
    from cdc.delivery.hub import Hub
    from cdc.journal.lmdb_journal import Journal

__all__ = ["Metrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _counter_by(name: str, doc: str, label: str, counts: Mapping[Any, int]) -> CounterMetricFamily:
    """A counter family with one sample per key of ``counts`` (in key order), labelled ``label``."""
    c = CounterMetricFamily(name, doc, labels=[label])
    for key, n in sorted(counts.items()):
        c.add_metric([str(key)], n)
    return c


class _Pull(Collector):
    def __init__(self, fn: Callable[[], Iterator[Any]]) -> None:
        self._fn = fn

    def collect(self) -> Iterator[Any]:
        yield from self._fn()


class Metrics:
    """The app's metrics registry and the objects components update."""

    def __init__(self) -> None:
        disable_created_metrics()  # no *_created series (process-wide switch of prometheus_client)
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.decode_errors = Counter("cdc_decode_errors", "WAL/LOG records cdc could not decode", registry=r)
        self.capture_lag_bytes = Gauge("cdc_capture_lag_bytes", "WAL bytes written by the store and not yet captured", registry=r)
        self.capture_lag_seq = Gauge("cdc_capture_lag_seq", "store sequence numbers not yet captured", registry=r)
        self.capture_gaps = Counter("cdc_capture_gaps", "sequence gaps detected by capture", registry=r)
        self.wal_bytes_read = Counter("cdc_wal_bytes_read", "WAL bytes read by capture", registry=r)
        self.ops_events = Counter("cdc_ops_events", "operational notices emitted", ["type"], registry=r)
        Gauge("cdc_speedups_info", 'which hot path runs: path="c" (the optional C extension) or "python"', ["path"], registry=r).labels(path=speedups.NAME).set(1)
        self._by_name: dict[str, Counter | Gauge] = {
            "decode_errors": self.decode_errors,
            "capture_lag_bytes": self.capture_lag_bytes,
            "capture_lag_seq": self.capture_lag_seq,
            "capture_gaps": self.capture_gaps,
            "wal_bytes_read": self.wal_bytes_read,
        }
        """The objects behind ``inc`` / ``set`` by short name (others are created on first use)."""
        self._hub: Hub | None = None
        self._bus: EventBus | None = None
        self._journal: Journal | None = None
        self._health: Health | None = None
        self._server: Any = None  # cdc.server.endpoints.Server (a layer above: not imported)
        r.register(_Pull(self._collect))

    def bind(self, *, hub: Hub | None = None, bus: EventBus | None = None, journal: Journal | None = None, health: Health | None = None, server: Any = None) -> None:
        """Attach the objects whose counters are read at scrape time (the server binds itself)."""
        if hub is not None:
            self._hub = hub
        if bus is not None:
            self._bus = bus
        if journal is not None:
            self._journal = journal
        if health is not None:
            self._health = health
        if server is not None:
            self._server = server

    def count_ops(self, by_type: Mapping[str, int]) -> None:
        """Count emitted operational notices (``cdc_ops_events_total{type}``)."""
        for t, n in by_type.items():
            self.ops_events.labels(type=t).inc(n)

    def capture_lag(self) -> float:
        """The current ``cdc_capture_lag_bytes``."""
        return float(self.capture_lag_bytes._value.get())  # noqa: SLF001 - our own gauge

    def _collect(self) -> Iterator[Any]:
        hub = self._hub
        bus = self._bus
        journal = self._journal
        health = self._health
        if hub is not None:
            yield _counter_by("cdc_events_captured", "events journaled and published, by type", "type", hub.published_by_type)
            yield CounterMetricFamily("cdc_events_delivered", "events handed to subscriber connections", value=hub.delivered)
            yield GaugeMetricFamily("cdc_subscribers", "connected WebSocket subscribers", value=hub.count)
            yield GaugeMetricFamily("cdc_subscribers_closing", "subscribers closed by the server whose connection is not gone yet", value=hub.closing)
            yield _counter_by("cdc_subscribers_closed", "subscribers closed by the server, by close code", "code", hub.closed_by_code)
        if bus is not None:
            yield GaugeMetricFamily("cdc_bus_pending_events", "events emitted and not yet committed", value=bus.pending)
            yield GaugeMetricFamily("cdc_bus_pending_bytes", "bytes of events emitted and not yet committed", value=bus.pending_bytes)
            yield CounterMetricFamily("cdc_journal_commits", "journal write transactions", value=bus.commits)
            yield CounterMetricFamily(
                "cdc_journal_commit_failures", "commits that failed for another reason than a full journal (retried event by event)",
                value=bus.failed_batches,
            )
            yield CounterMetricFamily("cdc_events_dropped", "events that could not be committed at all", value=bus.dropped_events)
        if journal is not None:
            yield GaugeMetricFamily("cdc_journal_bytes", "stored bytes of retained events", value=journal.size_bytes)
            yield GaugeMetricFamily("cdc_journal_events", "retained events", value=journal.count)
            yield GaugeMetricFamily("cdc_journal_latest_id", "id of the last committed event", value=journal.latest_id)
            yield GaugeMetricFamily("cdc_journal_oldest_id", "id of the oldest retained event", value=journal.oldest_id)
            yield GaugeMetricFamily("cdc_journal_map_bytes", "LMDB map size", value=journal.map_size)
            yield GaugeMetricFamily("cdc_journal_full", "1 while the journal refuses writes", value=1 if journal.full else 0)
            yield CounterMetricFamily("cdc_journal_rejected_events", "events skipped because they cannot be stored", value=journal.rejected)
        server = self._server
        if server is not None:
            yield _counter_by("cdc_ws_connections", "WebSocket /ws/events attempts by result", "result", server.ws_results)
            yield GaugeMetricFamily("cdc_http_polls_waiting", "long-polls (GET /events) waiting for events", value=server.polls_waiting)
            gate = server.gate
            yield _counter_by(
                "cdc_http_connections_refused",
                "connections closed before their request completed, by reason "
                "(unfinished_total / unfinished_per_ip caps, header_timeout, accept_error)",
                "reason",
                gate.refused,
            )
            yield GaugeMetricFamily("cdc_http_connections_unfinished", "connections whose request is not complete yet", value=gate.total)
        if health is not None:
            g = GaugeMetricFamily("cdc_health", "1 when the probe is healthy", labels=["probe"])
            for probe in ("liveness", "readiness", "startup"):
                g.add_metric([probe], 1 if health.healthy(probe) else 0)
            yield g

    # Generic hooks for components: ``metrics.inc(name, n)`` / ``metrics.set(name, value)``.
    _RENAME = {"events_captured": "wal_events_captured"}

    def inc(self, name: str, n: float = 1) -> None:
        """Increment the counter ``cdc_<name>`` (created on first use)."""
        obj = self._named(name, Counter)
        obj.inc(n)

    def set(self, name: str, value: float) -> None:
        """Set the gauge ``cdc_<name>`` (created on first use)."""
        obj = self._named(name, Gauge)
        obj.set(value)

    def _named(self, name: str, kind: type) -> Any:
        attr = self._RENAME.get(name, name)
        obj = self._by_name.get(attr)
        if obj is None:
            if not attr.isidentifier() or attr.startswith("_"):
                raise ValueError(f"bad metric name {name!r}")
            obj = self._by_name[attr] = kind(f"cdc_{attr}", f"{attr.replace('_', ' ')} (reported by a component)", registry=self.registry)
        return obj

    def render(self) -> bytes:
        """Prometheus text exposition."""
        return generate_latest(self.registry)
