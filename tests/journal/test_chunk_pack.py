"""The chunk layout (cdc.model.chunk): packing, views, records, frames, the optional C packer.

Differential: the C packer (cdc.journal._chunk, when built) gives byte-identical chunks to the
Python reference on the same pre-encoded events, hypothesis-generated (types, cfs, keys, values,
ranges, long cfs, ids of every width, max_events/max_bytes cuts).
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.journal import lmdb_journal
from cdc.model.chunk import ACCEPT, MIXED, REJECT, Chunk, chunk_of_stored, encode_chunk
from cdc.model.events import KeyChange
from cdc.model.wire import PreEncoded, Record, encode_event

C = lmdb_journal._C_CHUNK

texts = st.text(min_size=0, max_size=12)
blobs = st.binary(min_size=0, max_size=24)


@st.composite
def pre_encoded(draw: st.DrawFn) -> PreEncoded:
    kind = draw(st.sampled_from(["put", "range", "app", "nocf", "longcf"]))
    if kind == "app":
        return encode_event({"type": "app." + draw(st.from_regex(r"[a-z]{1,8}", fullmatch=True)), "n": draw(st.integers())}, 5)
    key = draw(blobs)
    cf = draw(st.sampled_from(["default", "users", "ü"])) if kind != "longcf" else "c" * 0xFFFE
    value = draw(st.none() | texts)
    ev = KeyChange(timestamp=1, operation="put", key=key.hex(), cf=cf, seq=draw(st.integers(0, 1 << 60)), value=value)
    pe = encode_event(ev, 7)
    if kind == "range":
        pe = pe._replace(end_key=draw(blobs))
    if kind == "nocf":
        pe = pe._replace(cf=None, key=None)
    return pe


def _py(items: list, start: int, first: int, ts: int, me: int, mb: int) -> tuple[bytes, int]:
    return encode_chunk(items, start, first, ts, me, mb)


@settings(max_examples=300, deadline=None)
@given(st.lists(pre_encoded(), min_size=1, max_size=30), st.integers(1, (1 << 63) - 100), st.integers(-(1 << 40), 1 << 45), st.integers(1, 40), st.integers(1, 4000), st.data())
def test_chunk_round_trip_and_c_packer_identical(items, first, ts, max_events, max_bytes, data) -> None:
    start = data.draw(st.integers(0, len(items) - 1))
    blob, n = _py(items, start, first, ts, max_events, max_bytes)
    assert 1 <= n <= min(max_events, len(items) - start)
    if C is not None:
        assert lmdb_journal._encode_chunk_c(items, start, first, ts, max_events, max_bytes) == (blob, n)
    c = Chunk(first, blob)
    assert (c.first, c.last, len(c)) == (first, first + n - 1, n)
    recs = c.records()
    for i, (r, pe) in enumerate(zip(recs, items[start : start + n], strict=True)):
        assert r.id == first + i and r.ts == ts
        assert (r.type, r.cf, r.key, r.end_key, r.value) == (pe.type, pe.cf, pe.key, pe.end_key, pe.value)
        assert r.wire == b'{"id":%d,%b' % (first + i, pe.core[1:])
        assert msgspec.json.decode(r.wire)["id"] == first + i
    # the batch frame is the JSON array of the wires; views slice it
    assert msgspec.json.decode(c.frames(0, True)[0] if n > 1 else b"[" + c.frames(0, True)[0] + b"]") == [msgspec.json.decode(r.wire) for r in recs]
    lo = data.draw(st.integers(first, first + n - 1))
    hi = data.draw(st.integers(lo, first + n - 1))
    v = c.view(lo, hi)
    assert [r.id for r in v.records()] == list(range(lo, hi + 1))
    assert v.region() == b",".join(r.wire for r in recs[lo - first : hi - first + 1])
    # a chunk rebuilt from the stored events (the mirror path, retention trims) reads the same
    again = Chunk(lo, chunk_of_stored(lo, v.wires(), v.ixs()))
    assert again.records() == v.records()


def test_c_packer_falls_back_on_unusual_items() -> None:
    if C is None:
        pytest.skip("C packer not built")
    good = encode_event({"type": "app.x"}, 1)
    odd = good._replace(core=bytearray(good.core))  # not exactly bytes: the Python reference decides
    assert lmdb_journal._encode_chunk_c([good, odd], 0, 1, 1, 10, 1 << 20) == encode_chunk([good, odd], 0, 1, 1, 10, 1 << 20)
    with pytest.raises(TypeError):
        lmdb_journal._encode_chunk_c([good._replace(core=b"[]")], 0, 1, 1, 10, 1 << 20)
    with pytest.raises(ValueError):
        lmdb_journal._encode_chunk_c([good._replace(type="t" * 0x10000)], 0, 1, 1, 10, 1 << 20)


def test_damaged_chunk_values_raise_value_error() -> None:
    blob, _ = encode_chunk([encode_event({"type": "app.x"}, 1)] * 3, 0, 1, 1, 10, 1 << 20)
    for bad in (b"", blob[:10], b"XX" + blob[2:], blob[:-40]):
        with pytest.raises(ValueError):
            Chunk(1, bad)
    with pytest.raises(ValueError):
        Chunk(1, blob, 2, 5)
    for pos in range(28, len(blob), 7):  # any byte after the head changed: the checksum says so
        bad = bytearray(blob)
        bad[pos] ^= 0x20
        with pytest.raises(ValueError):
            Chunk(1, bytes(bad))
    assert Chunk(1, blob).records()


def _records_of(items: list) -> list[Record]:
    blob, n = encode_chunk(items, 0, 1, 1, len(items), 1 << 30)
    return Chunk(1, blob).records()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(pre_encoded(), min_size=1, max_size=12),
    st.none() | st.frozensets(st.sampled_from(["key_change", "app.a", "app.b"])),
    st.none() | st.frozensets(st.sampled_from(["default", "users", "ü"])),
    st.none() | st.lists(st.binary(max_size=3), max_size=3),
    st.none() | st.lists(st.binary(min_size=1, max_size=3), min_size=1, max_size=3),
)
def test_chunk_verdict_agrees_with_the_filter_on_every_event(items, types, cfs, prefixes, keys) -> None:
    from cdc.delivery.hub import Filter

    flt = Filter(types, cfs, prefixes, keys)
    blob, _ = encode_chunk(items, 0, 1, 1, len(items), 1 << 30)
    c = Chunk(1, blob)
    v = c.verdict(flt.types, flt.cfs, flt._ranges, flt.keys)
    matches = [flt.match(r) for r in c.records()]
    if v == ACCEPT:
        assert all(matches)
    elif v == REJECT:
        assert not any(matches)
    else:
        assert v == MIXED
    parts = flt.parts([c])
    got = [r.id for p in parts for r in (p.records() if isinstance(p, Chunk) else p)]
    assert got == [r.id for r, m in zip(c.records(), matches, strict=True) if m]


def test_unpack_record_of_a_long_cf() -> None:
    pe = encode_event({"type": "app.x", "cf": "c" * 70000}, 1)
    r = _records_of([pe, pe])[1]
    assert r.cf == "c" * 70000 and r.id == 2 and r.type == "app.x"
