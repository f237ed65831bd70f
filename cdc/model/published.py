"""Validation of events that the store's own processes publish (``POST /publish``, ``cdc publish``).

Rule: pure apart from reading the clock when the body carries no ``timestamp``.

What a publisher may send (a JSON object, without ``id`` — the journal assigns ids):

- ``sync_event``: ``status`` in started / completed / conflict, optional ``details`` object.
- ``snapshot_event``: ``status`` in started / completed / failed / deleted, ``name`` (non-empty
  string), optional ``details`` — for backup tools cdc cannot see on disk (remote backups).
- ``compaction_status`` / ``flush_status``: ``status`` as the server's own, optional ``cf``,
  ``job``, ``details`` — for remote / offloaded compaction services.
  Published built-in events get ``details.source = "published"`` so they are never mistaken for
  what cdc observed itself.
- Custom events: ``type`` matching :data:`cdc.events.CUSTOM_TYPE_PATTERN` (namespaced, with a
  dot: ``myapp.reindex``) and any other JSON fields; returned as a dict.

Not publishable: ``key_change`` (only the WAL says what changed), ``health_change`` (the
server's own probes), ``capture_gap`` — they answer 400.

``timestamp`` (integer ms since the epoch) is optional; the server fills it when absent.
Every rejection raises ``ValueError`` with a one-line message naming the field (-> HTTP 400).

Size limits (whatever ``max_message_bytes`` allows for the whole body): ``cf`` and ``name`` at
most :data:`MAX_NAME_BYTES` (1 KiB, UTF-8) — they are filter/label strings and the journal's
index stores a cf's length in 16 bits; a custom type at most :data:`MAX_TYPE_LEN` characters;
an object key anywhere at most :data:`MAX_KEY_LEN` characters; any other string anywhere at
most :data:`MAX_STRING_BYTES` (64 KiB); nesting at most :data:`MAX_DEPTH` levels.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from cdc.model.events import (
    CUSTOM_TYPE_PATTERN,
    CompactionState,
    CompactionStatus,
    Event,
    FlushState,
    FlushStatus,
    SnapshotEvent,
    SnapshotState,
    SyncEvent,
    SyncState,
    literal_values,
)

_CUSTOM_RE = re.compile(CUSTOM_TYPE_PATTERN)

PUBLISHABLE: dict[str, tuple[type, frozenset[str]]] = {
    "sync_event": (SyncEvent, literal_values(SyncState)),
    "snapshot_event": (SnapshotEvent, literal_values(SnapshotState)),
    "compaction_status": (CompactionStatus, literal_values(CompactionState)),
    "flush_status": (FlushStatus, literal_values(FlushState)),
}
"""Built-in types a publisher may send: type -> (Struct, allowed statuses)."""

SERVER_ONLY = frozenset({"key_change", "health_change", "capture_gap"})

MAX_TYPE_LEN = 128
MAX_DEPTH = 32
MAX_NAME_BYTES = 1024
"""``cf`` and ``name``: label strings (UTF-8 bytes)."""
MAX_KEY_LEN = 256
"""Object keys anywhere in the body (characters)."""
MAX_STRING_BYTES = 64 * 1024
"""Any other string anywhere in the body (UTF-8 bytes)."""
_NAME_FIELDS = ("cf", "name")


def _utf8_len(s: str, what: str) -> int:
    try:
        return len(s.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode text") from None


def _depth(obj: Any, limit: int) -> int:
    """Nesting depth of a JSON value (bounded walk; stops counting past ``limit``).

    Also enforces the string limits on the way (keys: :data:`MAX_KEY_LEN` characters, strings:
    :data:`MAX_STRING_BYTES`), raising ``ValueError``.
    """
    stack = [(obj, 1)]
    deepest = 0
    while stack:
        o, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(o, dict):
            for k, v in o.items():
                if isinstance(k, str) and len(k) > MAX_KEY_LEN:
                    raise ValueError(f"field name '{k[:40]}...' is longer than {MAX_KEY_LEN} characters")
                stack.append((v, d + 1))
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
        elif isinstance(o, str) and len(o) > MAX_STRING_BYTES // 4 and _utf8_len(o, "a string") > MAX_STRING_BYTES:
            raise ValueError(f"a string in the body is longer than {MAX_STRING_BYTES} bytes")
    return deepest


def _check_names(body: dict[str, Any]) -> None:
    """``cf`` / ``name`` (when strings) are at most :data:`MAX_NAME_BYTES` of valid UTF-8."""
    for f in _NAME_FIELDS:
        v = body.get(f)
        if isinstance(v, str) and _utf8_len(v, f"field '{f}'") > MAX_NAME_BYTES:
            raise ValueError(f"field '{f}' is longer than {MAX_NAME_BYTES} bytes")


def validate_published(body: Any, *, now_ms: int) -> Event | dict[str, Any]:
    """Check a publisher's event body and return the event to journal.

    Args:
        body: the decoded JSON body.
        now_ms: timestamp to use when the body has none (default: the current time).

    Returns:
        an event Struct for built-in types, a dict (``type``, ``timestamp`` + the body's fields)
        for custom namespaced types.

    Raises:
        ValueError: one line saying what is wrong (field name, expected vs got).
    """
    if not isinstance(body, dict):
        raise ValueError(f"body must be a JSON object, got {_jtype(body)}")
    if "id" in body:
        raise ValueError("field 'id' is assigned by the server; remove it")
    etype = body.get("type")
    if etype is None:
        raise ValueError("field 'type' is required")
    if not isinstance(etype, str):
        raise ValueError(f"field 'type' must be a string, got {_jtype(etype)}")
    if "timestamp" in body:
        ts = body["timestamp"]
        if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
            raise ValueError("field 'timestamp' must be a non-negative integer (ms since the epoch)")
    _check_names(body)
    if _depth(body, MAX_DEPTH) > MAX_DEPTH:
        raise ValueError(f"body nests deeper than {MAX_DEPTH} levels")

    if etype in SERVER_ONLY:
        raise ValueError(f"type '{etype}' cannot be published (only the server emits it)")
    if etype in PUBLISHABLE:
        cls, statuses = PUBLISHABLE[etype]
        fields = set(cls.__struct_fields__) - {"id"}  # type: ignore[attr-defined]
        unknown = sorted(k for k in body if k != "type" and k not in fields)
        if unknown:
            raise ValueError(f"unknown field '{unknown[0]}' for type '{etype}' (allowed: {', '.join(sorted(fields))})")
        if "status" not in body:
            raise ValueError(f"field 'status' is required for type '{etype}'")
        status = body["status"]
        if not isinstance(status, str) or status not in statuses:
            raise ValueError(f"field 'status' must be one of {', '.join(sorted(statuses))} for type '{etype}'")
        if "details" in body and not isinstance(body["details"], dict):
            raise ValueError(f"field 'details' must be an object, got {_jtype(body['details'])}")
        if etype == "snapshot_event":
            name = body.get("name")
            if not isinstance(name, str) or not name:
                raise ValueError("field 'name' is required for type 'snapshot_event' (a non-empty string)")
        data = {k: v for k, v in body.items() if k != "type"}
        data.setdefault("timestamp", now_ms)
        if etype != "sync_event":
            data["details"] = {**data.get("details", {}), "source": "published"}
        try:
            return msgspec.convert(data, type=cls, strict=True)
        except msgspec.ValidationError as exc:
            raise ValueError(f"invalid {etype}: {_clean(str(exc))}") from None

    if len(etype) > MAX_TYPE_LEN or not _CUSTOM_RE.match(etype):
        raise ValueError(
            f"unknown type '{etype[:MAX_TYPE_LEN]}': use sync_event, snapshot_event, compaction_status, "
            "flush_status or a namespaced custom type such as 'myapp.reindex' (lowercase, with a dot)"
        )
    out: dict[str, Any] = {"type": etype, "timestamp": body.get("timestamp", now_ms)}
    for k, v in body.items():
        if k not in out:
            out[k] = v
    return out


def _jtype(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _clean(msg: str) -> str:
    """msgspec messages use backticks and ``$.field`` paths; keep them on one line."""
    return " ".join(msg.replace("`", "'").split())
