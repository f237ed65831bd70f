"""cdc.published.validate_published: what publishers may send and the 400 messages."""

from __future__ import annotations

import pytest

from cdc.model.events import CompactionStatus, SnapshotEvent, SyncEvent, json_encoder
from cdc.model.published import validate_published

NOW = 1_700_000_000_000  # the clock is the caller's: validate_published is pure


def test_sync_event_ok_and_timestamp_filled():
    ev = validate_published({"type": "sync_event", "status": "conflict", "details": {"key": "a", "peer": "b"}}, now_ms=42)
    assert isinstance(ev, SyncEvent) and ev.timestamp == 42 and ev.status == "conflict"
    assert ev.details == {"key": "a", "peer": "b"}
    ev = validate_published({"type": "sync_event", "status": "started", "timestamp": 7}, now_ms=NOW)
    assert ev.timestamp == 7 and ev.details == {}
    for s in ("started", "completed", "conflict"):
        assert validate_published({"type": "sync_event", "status": s}, now_ms=NOW).status == s


def test_other_builtins_are_marked_published():
    ev = validate_published({"type": "snapshot_event", "status": "completed", "name": "s3://b/1", "details": {"bytes": 5}}, now_ms=NOW)
    assert isinstance(ev, SnapshotEvent) and ev.details == {"bytes": 5, "source": "published"}
    ev = validate_published({"type": "compaction_status", "status": "running", "cf": "x", "job": 3}, now_ms=NOW)
    assert isinstance(ev, CompactionStatus) and ev.cf == "x" and ev.details["source"] == "published"
    assert validate_published({"type": "flush_status", "status": "completed"}, now_ms=NOW).details == {"source": "published"}


def test_custom_namespaced_event_keeps_fields():
    ev = validate_published({"type": "myapp.reindex", "progress": 0.5, "tags": ["a"], "nested": {"x": None}}, now_ms=9)
    assert ev == {"type": "myapp.reindex", "timestamp": 9, "progress": 0.5, "tags": ["a"], "nested": {"x": None}}
    assert validate_published({"type": "a.b.c_d", "timestamp": 1}, now_ms=NOW)["timestamp"] == 1
    json_encoder.encode(ev)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body must be a JSON object, got array"),
        ("x", "body must be a JSON object, got string"),
        ({}, "field 'type' is required"),
        ({"type": 5}, "field 'type' must be a string, got number"),
        ({"type": None}, "field 'type' is required"),
        ({"type": "sync_event", "status": "started", "details": None}, "field 'details' must be an object, got null"),
        ({"type": True}, "field 'type' must be a string, got boolean"),
        ({"type": 1.5}, "field 'type' must be a string, got number"),
        ({"type": []}, "field 'type' must be a string, got array"),
        ({"type": {}}, "field 'type' must be a string, got object"),
        ({"type": "sync_event", "status": "started", "id": 3}, "field 'id' is assigned by the server"),
        ({"type": "sync_event"}, "field 'status' is required for type 'sync_event'"),
        ({"type": "sync_event", "status": "running"}, "field 'status' must be one of completed, conflict, started"),
        ({"type": "sync_event", "status": 1}, "field 'status' must be one of"),
        ({"type": "sync_event", "status": "started", "details": [1]}, "field 'details' must be an object, got array"),
        ({"type": "sync_event", "status": "started", "extra": 1}, "unknown field 'extra' for type 'sync_event'"),
        ({"type": "sync_event", "status": "started", "timestamp": "now"}, "field 'timestamp' must be a non-negative integer"),
        ({"type": "sync_event", "status": "started", "timestamp": -1}, "field 'timestamp' must be a non-negative integer"),
        ({"type": "sync_event", "status": "started", "timestamp": True}, "field 'timestamp' must be a non-negative integer"),
        ({"type": "snapshot_event", "status": "completed"}, "field 'name' is required for type 'snapshot_event'"),
        ({"type": "snapshot_event", "status": "completed", "name": ""}, "field 'name' is required"),
        ({"type": "compaction_status", "status": "started", "job": "7"}, "invalid compaction_status: Expected 'int | null', got 'str' - at '$.job'"),
        ({"type": "compaction_status", "status": "started", "cf": 3}, "invalid compaction_status: Expected 'str', got 'int' - at '$.cf'"),
        ({"type": "key_change", "key": "a"}, "type 'key_change' cannot be published"),
        ({"type": "health_change"}, "type 'health_change' cannot be published"),
        ({"type": "capture_gap"}, "type 'capture_gap' cannot be published"),
        ({"type": "reindex"}, "unknown type 'reindex': use sync_event"),
        ({"type": "MyApp.Reindex"}, "unknown type 'MyApp.Reindex'"),
        ({"type": "myapp."}, "unknown type 'myapp.'"),
        ({"type": "a." + "b" * 300}, "unknown type"),
    ],
)
def test_rejections_have_clear_messages(body, message):
    with pytest.raises(ValueError) as exc:
        validate_published(body, now_ms=NOW)
    text = str(exc.value)
    assert message in text, text
    assert "\n" not in text


def test_deep_nesting_rejected():
    body: dict = {"type": "app.deep"}
    cur = body
    for _ in range(40):
        cur["x"] = {}
        cur = cur["x"]
    with pytest.raises(ValueError, match="nests deeper"):
        validate_published(body, now_ms=NOW)
