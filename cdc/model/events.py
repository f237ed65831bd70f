"""Typed events: the schema of everything cdc serves (CONTRACT.md section 4).

Rule: this module is pure (msgspec + stdlib only, no I/O).

Every event on the wire has ``id`` (assigned by the journal), ``type`` and ``timestamp``
(integer milliseconds since the Unix epoch at capture). Producers build the Structs below
with ``id=0``; the journal assigns the id when it commits them.

Keys and values are bytes. UTF-8 bytes travel as JSON strings; anything else as base64 with a
sibling ``*_encoding: "base64"`` field (see :func:`encode_bytes`).
"""

from __future__ import annotations

import base64
from typing import Any, Literal, Union, get_args

import msgspec

# --------------------------------------------------------------------------- bytes on the wire


def encode_bytes(data: bytes) -> tuple[str, str | None]:
    """Return (text, encoding) for bytes: (utf-8 text, None) when valid UTF-8, else (base64, "base64")."""
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def decode_bytes(text: str, encoding: str | None) -> bytes:
    """Inverse of :func:`encode_bytes`."""
    if encoding == "base64":
        return base64.b64decode(text)
    return text.encode("utf-8")


# --------------------------------------------------------------------------- event types


# Fields the contract requires on every event of a type (``cf``, ``details``, ``reason``) get
# a factory default rather than a plain one: ``omit_defaults`` leaves out fields equal to a plain
# default, but cannot introspect these factories, so the fields are always encoded.


def _default_cf() -> str:
    return "default"


def _empty_details() -> dict[str, Any]:
    return {}


def _empty_reason() -> str:
    return ""


_CF = msgspec.field(default_factory=_default_cf)
_DETAILS = msgspec.field(default_factory=_empty_details)
_REASON = msgspec.field(default_factory=_empty_reason)

_STRUCT_OPTS: dict[str, Any] = dict(tag_field="type", omit_defaults=True, kw_only=True)

# The closed sets of values of the enumerated fields: /schema.json lists them (``enum``),
# cdc.d.ts declares the same unions (tests/frontend/test_dts.py checks both ways) and
# cdc.model.published derives what a publisher may send from them.
KeyOperation = Literal["put", "delete", "single_delete", "merge", "delete_range", "put_entity"]
CompactionState = Literal["started", "running", "completed", "failed"]
FlushState = Literal["started", "completed", "failed"]
Probe = Literal["liveness", "readiness", "startup"]
HealthState = Literal["healthy", "unhealthy"]
SyncState = Literal["started", "completed", "conflict"]
SnapshotState = Literal["started", "completed", "failed", "deleted"]
ResetReason = Literal["replaced", "recovered_earlier"]
BytesEncoding = Literal["base64"]


def literal_values(lit: Any) -> frozenset[str]:
    """The allowed values of one of the ``Literal`` aliases above."""
    return frozenset(get_args(lit))


class KeyChange(msgspec.Struct, tag="key_change", **_STRUCT_OPTS):
    """A key written to the store (one WAL record)."""

    id: int = 0
    timestamp: int
    operation: KeyOperation
    key: str
    cf: str = _CF
    seq: int
    # The WriteBatch's LogData blob ``cdc-origin:<origin>`` (who wrote it), when present.
    origin: str | None = None
    # When the WAL record (WriteBatch) holds more than one change: its first sequence number
    # and how many key_change events it produced.
    batch_seq: int | None = None
    batch_count: int | None = None
    key_encoding: BytesEncoding | None = None
    end_key: str | None = None
    end_key_encoding: BytesEncoding | None = None
    # Only present when the subscriber asked for values=1 and its token allows it.
    value: str | None = None
    value_encoding: BytesEncoding | None = None


class CompactionStatus(msgspec.Struct, tag="compaction_status", **_STRUCT_OPTS):
    id: int = 0
    timestamp: int
    status: CompactionState
    cf: str = _CF
    job: int | None = None
    details: dict[str, Any] = _DETAILS


class FlushStatus(msgspec.Struct, tag="flush_status", **_STRUCT_OPTS):
    id: int = 0
    timestamp: int
    status: FlushState
    cf: str = _CF
    job: int | None = None
    details: dict[str, Any] = _DETAILS


class HealthChange(msgspec.Struct, tag="health_change", **_STRUCT_OPTS):
    id: int = 0
    timestamp: int
    probe: Probe
    status: HealthState
    reason: str = _REASON


class SyncEvent(msgspec.Struct, tag="sync_event", **_STRUCT_OPTS):
    id: int = 0
    timestamp: int
    status: SyncState
    details: dict[str, Any] = _DETAILS


class SnapshotEvent(msgspec.Struct, tag="snapshot_event", **_STRUCT_OPTS):
    id: int = 0
    timestamp: int
    status: SnapshotState
    name: str
    details: dict[str, Any] = _DETAILS


class CaptureGap(msgspec.Struct, tag="capture_gap", **_STRUCT_OPTS):
    """Sequence numbers the capture could not read (e.g. a WAL deleted while cdc was down)."""

    id: int = 0
    timestamp: int
    from_seq: int
    to_seq: int
    reason: str = _REASON


class StoreReset(msgspec.Struct, tag="store_reset", **_STRUCT_OPTS):
    """The store went back in time under cdc; capture continues in its new history.

    ``reason``: ``replaced`` (another store now lives at the path: a restore, a re-created DB)
    or ``recovered_earlier`` (the same store reopened at an earlier sequence number, e.g. after
    its live WAL was truncated). ``old_*``: where capture was (WAL number, offset, last sequence
    number delivered); ``new_*``: where it continues (``new_seq``: the first sequence number of
    the new history it reads, -1 while that WAL holds nothing yet). Changes delivered with
    sequence numbers >= ``new_seq`` before this event belong to the old history.
    """

    id: int = 0
    timestamp: int
    reason: ResetReason
    old_wal: int
    old_offset: int
    old_seq: int
    new_wal: int
    new_offset: int
    new_seq: int
    old_db_id: str | None = None
    new_db_id: str | None = None
    message: str | None = None


Event = Union[
    KeyChange,
    CompactionStatus,
    FlushStatus,
    HealthChange,
    SyncEvent,
    SnapshotEvent,
    CaptureGap,
    StoreReset,
]

EVENT_TYPES: dict[str, type] = {
    cls.__struct_config__.tag: cls  # type: ignore[attr-defined]
    for cls in Event.__args__  # type: ignore[attr-defined]
}

# --------------------------------------------------------------------------- stats frames
# Not events: no id, never journaled (``types=stats``, see cdc/stats.py). Declared here so that
# /schema.json and cdc.d.ts describe them too.


class StatsCounts(msgspec.Struct, kw_only=True):
    put: int
    delete: int
    merge: int
    delete_range: int
    bytes: int  # key + value bytes of those changes


class StatsCf(msgspec.Struct, kw_only=True):
    interval: StatsCounts
    total: StatsCounts


class StatsFrame(msgspec.Struct, tag="stats", tag_field="type", kw_only=True):
    timestamp: int
    interval_ms: int
    events_per_s: float
    cf: dict[str, StatsCf]
    capture_lag_bytes: int
    capture_lag_ms: int
    wal_bytes: int
    sst_bytes: dict[str, dict[str, int]]  # cf -> level ("0", "1", ...) -> bytes
    running_compactions: int
    subscribers: int


def schema_document() -> dict[str, Any]:
    """What ``/schema.json`` serves: the Event union, plus ``$defs`` of the frames that are not
    events (``StatsFrame``), listed under ``x-frames``."""
    doc = msgspec.json.schema(Event)
    _, defs = msgspec.json.schema_components([StatsFrame])
    doc.setdefault("$defs", {}).update(defs)
    doc["x-frames"] = {"stats": {"$ref": "#/$defs/StatsFrame"}}
    return doc


json_encoder = msgspec.json.Encoder()
json_decoder = msgspec.json.Decoder(Event)
msgpack_encoder = msgspec.msgpack.Encoder()

# Published events of other types (``cdc publish --type myapp.reindex``) are namespaced
# strings containing a dot; they are journaled as plain JSON objects (see journal.py).
CUSTOM_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$"
