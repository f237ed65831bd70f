"""cdc.model.wire: the one owner of the wire format (formats, states, client messages)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from cdc.model.wire import (
    MAX_ID,
    Auth,
    ClientMessageError,
    Ping,
    PreEncoded,
    Record,
    Subscribe,
    SubState,
    WireFormat,
    build_frames,
    decode_client_message,
    encode_event,
)
from cdc.model.events import SyncEvent


def test_wire_formats() -> None:
    assert [WireFormat.of(m, v) for m in (False, True) for v in (False, True)] == list(WireFormat)
    assert [f.values for f in WireFormat] == [False, True, False, True]
    assert [f.msgpack for f in WireFormat] == [False, False, True, True]
    assert list(SubState) == [SubState.REPLAY, SubState.LIVE, SubState.CLOSED]


def test_record_frames_per_format() -> None:
    pre = encode_event({"type": "app.x", "timestamp": 1, "value": "v"}, 0)
    assert isinstance(pre, PreEncoded) and pre.type == "app.x" and pre.value == b',"value":"v"'
    r = Record(1, pre.type, pre.cf, None, None, 1, b'{"id":1,' + pre.core[1:], pre.value)
    assert r.frame(WireFormat.JSON) is r.wire
    assert msgspec.json.decode(r.frame(WireFormat.JSON_VALUES))["value"] == "v"
    assert msgspec.msgpack.decode(r.frame(WireFormat.MSGPACK)) == {"id": 1, "type": "app.x", "timestamp": 1}
    assert msgspec.msgpack.decode(build_frames([r, r], WireFormat.MSGPACK_VALUES, True)[0])[1]["value"] == "v"
    assert encode_event(SyncEvent(timestamp=2, status="completed"), 0).cf is None


@pytest.mark.parametrize(
    ("msg", "want"),
    [
        ({"op": "ping"}, Ping()),
        ({"op": "ping", "ref": MAX_ID}, Ping(ref=MAX_ID)),
        ({"op": "ping", "ref": True, "extra": [1]}, Ping(ref=True)),
        ({"op": "subscribe", "types": "sync_event", "cf": None}, Subscribe(types="sync_event", cf=None)),
        ({"op": "subscribe", "values": False, "ref": "r"}, Subscribe(values=False, ref="r")),
        ({"op": "auth", "token": "t"}, Auth(token="t")),
    ],
)
def test_client_messages_decode(msg: dict[str, Any], want: Any) -> None:
    assert decode_client_message(msg) == want


def test_subscribe_tells_absent_from_null() -> None:
    m = decode_client_message({"op": "subscribe", "cf": None})
    assert isinstance(m, Subscribe) and m.types is msgspec.UNSET and m.cf is None


@pytest.mark.parametrize(
    ("msg", "error", "op"),
    [
        ([1, 2], 'message must be an object with an "op" string', None),
        ({"op": 5}, 'message must be an object with an "op" string', None),
        ({"ref": 1}, 'message must be an object with an "op" string', None),
        ({"op": "ping", "ref": MAX_ID + 1}, "ref must be an int64 or a string of at most 256 characters", "ping"),
        ({"op": "ping", "ref": "r" * 257}, "ref must be an int64 or a string of at most 256 characters", "ping"),
        ({"op": "ping", "ref": 1.5}, "ref must be an int64 or a string of at most 256 characters", "ping"),
        ({"op": "nope"}, "unknown op 'nope'", "nope"),
        ({"op": "subscribe", "types": 3}, "types must be a list of strings", "subscribe"),
        ({"op": "subscribe", "prefix": ["a", 1]}, "prefix must be a list of strings", "subscribe"),
        ({"op": "subscribe", "key": {}}, "key must be a list of strings", "subscribe"),
        ({"op": "subscribe", "values": 1}, "values must be a boolean", "subscribe"),
        ({"op": "auth"}, "auth needs a token string", "auth"),
        ({"op": "auth", "token": 7}, "auth needs a token string", "auth"),
    ],
)
def test_client_message_errors_are_the_frames_text(msg: Any, error: str, op: str | None) -> None:
    with pytest.raises(ClientMessageError) as ei:
        decode_client_message(msg)
    assert str(ei.value) == error and ei.value.op == op
