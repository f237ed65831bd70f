"""Filter semantics (pure): types, cf, prefix on raw key bytes, delete_range overlap."""

from __future__ import annotations

from cdc.delivery.hub import Filter, prefix_successor
from cdc.model.wire import Record, WireFormat, build_frames

import msgspec


def rec(type_="key_change", cf="default", key=b"k", end_key=None, id_=1) -> Record:
    return Record(id_, type_, cf, key, end_key, 0, b'{"id":%d,"type":"%s"}' % (id_, type_.encode()), b"")


def test_prefix_successor():
    assert prefix_successor(b"ab") == b"ac"
    assert prefix_successor(b"a\xff") == b"b"
    assert prefix_successor(b"\xff\xff") is None


def test_filter_rules():
    assert Filter().accept_all and Filter().match(rec())
    assert not Filter(types=["sync_event"]).match(rec())
    assert Filter(cfs=["meta"]).match(rec(type_="health_change", cf=None, key=None))  # no cf: passes
    assert not Filter(cfs=["meta"]).match(rec())
    f = Filter(prefixes=[b"user:"])
    assert f.match(rec(key=b"user:1")) and not f.match(rec(key=b"usr"))
    assert f.match(rec(type_="sync_event", cf=None, key=None))  # no key: passes
    assert f.match(rec(key=b"a", end_key=b"user:0"))  # range [a, user:0) overlaps user:
    assert not f.match(rec(key=b"a", end_key=b"user:"))  # [a, user:) ends before it
    assert not f.match(rec(key=b"user;", end_key=b"z"))  # starts after every user: key
    assert Filter(prefixes=[b"\xff"]).match(rec(key=b"\xfe", end_key=b"\xff\x01"))
    assert Filter(types=["a"], prefixes=[b"x", b"x"]).key == Filter(types=["a"], prefixes=[b"x"]).key


def test_batch_frames_json_and_msgpack():
    rs = [rec(id_=i) for i in range(1, 21)]
    (frame,) = build_frames(rs, WireFormat.JSON, True)
    assert [e["id"] for e in msgspec.json.decode(frame)] == list(range(1, 21))
    (frame,) = build_frames(rs, WireFormat.MSGPACK, True)
    assert [e["id"] for e in msgspec.msgpack.decode(frame)] == list(range(1, 21))
    assert len(build_frames(rs, WireFormat.JSON, False)) == 20
