"""Filter.select (the fan-out's comprehension fast path) equals Filter.match on every record."""

from __future__ import annotations

import random

import pytest

from cdc.delivery.hub import Filter
from cdc.model.wire import Record


def _records(n: int = 2000) -> list[Record]:
    rnd = random.Random(7)
    out = []
    for i in range(n):
        key = rnd.choice([None, b"", b"a", b"ab", b"b", b"tp1", b"\xff"])
        end = rnd.choice([None, None, b"b", b"c", b"\xff\xff"]) if key is not None else None
        out.append(Record(i, rnd.choice(["key_change", "health_change", "x.y"]), rnd.choice([None, "default", "o"]), key, end, 0, b"{}", b""))
    return out


@pytest.mark.parametrize("types", [None, {"key_change"}, {"x.y", "health_change"}])
@pytest.mark.parametrize("cfs", [None, {"default"}])
@pytest.mark.parametrize("prefixes", [None, [b"a"], [b"tp", b"b"], [b""], [b"\xff"]])
def test_select_equals_match(types, cfs, prefixes):
    recs = _records()
    f = Filter(types, cfs, prefixes)
    assert f.select(recs) == [r for r in recs if f.match(r)]
