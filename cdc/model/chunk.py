"""Chunks: the journal's unit of storage and of fan-out -- a run of consecutive events in one value.

Rule: pure (struct + msgspec, no I/O). The journal (``cdc.journal``) stores one chunk per LMDB
record; the hub sends an unfiltered (or wholly matching) chunk to a ``batch=1`` JSON subscriber as
one prebuilt frame, and materializes per-event :class:`~cdc.model.wire.Record` objects only for
filtered or non-JSON subscribers.

Layout of a chunk value (little-endian; key = ``>Q`` first id + ``>I`` count, see :func:`chunk_key`):

- head (:data:`_HEAD`, 28 bytes): magic ``b"CJ"``, version 1, flags, ``n`` (u32), ``ts`` (i64: the
  newest commit time in ms of its events), ``ev_len`` (u32), ``sum_len`` (u32), ``crc`` (u32:
  CRC32C of everything after the head -- LMDB checks its pages' structure, not the bytes of a
  large value, so garbage inside a chunk is caught by this checksum when it is read)
- ``ev_ends``: ``n`` u32, end (exclusive) of event ``i``'s wire JSON within the ev region
- ``ix_ends``: ``n`` u32, end of event ``i``'s ix record within the ix region
- summary (``sum_len`` bytes, msgpack ``[types, cfs, kmin, kmax]``): what the whole chunk holds, so
  that a filter can accept or reject it without looking at its events (see :meth:`Chunk.verdict`)
- ev region (``ev_len`` bytes): ``[wire0,wire1,...]`` -- each event's JSON with its id and without
  its value, comma-separated in brackets: the whole chunk's ``batch=1`` frame is one slice
  (``ev_ends`` count from the first wire, after the ``[``)
- ix region: each event's ix record: :data:`IX` header (commit ms, len(type), cf length field,
  len(key) or -1, len(end_key) or -1) + type + cf + key + end_key + the JSON fragment of its value

Invariant: ``Chunk.records()`` equals, event by event, what the journal was given (tests check it
against :func:`cdc.model.wire.encode_event`), and a verdict of ACCEPT/REJECT agrees with
``Filter.match`` on every event of the chunk.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

import msgspec
from crc32c import crc32c

from cdc.model.wire import Record, build_frames

__all__ = [
    "ACCEPT",
    "IX",
    "LONG_CF",
    "MAX_TYPE_BYTES",
    "MIXED",
    "NO_CF",
    "REJECT",
    "Chunk",
    "chunk_key",
    "ix_type_cf",
    "ix_type_cf_len",
    "pack_chunk",
    "pack_ix",
    "parse_key",
    "type_cf",
    "unpack_record",
]

IX = struct.Struct("<qHHii")
"""An ix record's header: commit time ms, len(type), len(cf) (see NO_CF/LONG_CF), len(key) (-1:
none), len(end_key) (-1: none)."""
NO_CF = 0xFFFF
LONG_CF = 0xFFFE
"""cf length field of a cf of >= 0xFFFE bytes: its real length follows the type bytes as a u32."""
MAX_TYPE_BYTES = 0xFFFF
_U32 = struct.Struct("<I")
_HEAD = struct.Struct("<2sBBIqIII")
_MAGIC = b"CJ"
_VERSION = 1
_KEY = struct.Struct(">QI")
_FIRST = struct.Struct(">Q")

F_RANGES = 1
"""Some event has an end key (a delete_range)."""
F_KEYLESS = 2
"""Some event has no key (control and ops events)."""
F_NO_CF = 4
"""Some event has no cf."""

ACCEPT, REJECT, MIXED = 1, 0, 2

_sum_enc = msgspec.msgpack.Encoder()
_sum_dec = msgspec.msgpack.Decoder(tuple[list[str], list[str], bytes | None, bytes | None])


def chunk_key(first: int, n: int) -> bytes:
    """The LMDB key of a chunk: its first id (big-endian, so keys sort by id) and its count (so a
    keys-only walk knows every id without reading a value)."""
    return _KEY.pack(first, n)


def parse_key(key: bytes) -> tuple[int, int]:
    """(first id, count) of a chunk key."""
    return _KEY.unpack(key)


def first_key(first: int) -> bytes:
    """The 8-byte prefix that ``set_range`` seeks to for the chunks starting at or after ``first``."""
    return _FIRST.pack(first)


_utf8_cache: dict[str, bytes] = {}


def _utf8(text: str) -> bytes:
    b = _utf8_cache.get(text)
    if b is None:
        b = text.encode()
        if len(_utf8_cache) < 4096:
            _utf8_cache[text] = b
    return b


_tc_cache: dict[tuple[str, str | None], tuple[bytes, int, int]] = {}


def type_cf(etype: str, cf: str | None) -> tuple[bytes, int, int]:
    """(type bytes + cf bytes, len(type), cf length field) for an ix header, cached.

    Raises:
        ValueError: a type longer than MAX_TYPE_BYTES.
    """
    tc = _tc_cache.get((etype, cf))
    if tc is None:
        t = _utf8(etype)
        if len(t) > MAX_TYPE_BYTES:
            raise ValueError(f"event type longer than {MAX_TYPE_BYTES} bytes")
        c = b"" if cf is None else _utf8(cf)
        if cf is None:
            tc = (t, len(t), NO_CF)
        elif len(c) >= LONG_CF:
            tc = (t + _U32.pack(len(c)) + c, len(t), LONG_CF)
        else:
            tc = (t + c, len(t), len(c))
        if len(_tc_cache) < 4096:
            _tc_cache[(etype, cf)] = tc
    return tc


def pack_ix(ts: int, etype: str, cf: str | None, key: bytes | None, end_key: bytes | None, value: bytes) -> bytes:
    """One event's ix record."""
    tc, tl, cl = type_cf(etype, cf)
    return b"".join((IX.pack(ts, tl, cl, -1 if key is None else len(key), -1 if end_key is None else len(end_key)), tc, key or b"", end_key or b"", value))


def ix_type_cf_len(ix: bytes) -> int:
    """Length of an ix record's type + cf bytes after its :data:`IX` header (a long cf's u32
    length included): ``ix[IX.size : IX.size + n]`` identifies the (type, cf) pair as bytes."""
    _ts, tl, cl, _kl, _el = IX.unpack_from(ix)
    if cl == NO_CF:
        return tl
    if cl == LONG_CF:
        return tl + 4 + _U32.unpack_from(ix, IX.size + tl)[0]
    return tl + cl


def ix_type_cf(ix: bytes) -> tuple[str, str | None]:
    """(type, cf) of an ix record, bytes or memoryview (without unpacking the rest)."""
    _ts, tl, cl, _kl, _el = IX.unpack_from(ix)
    p = IX.size
    etype = str(ix[p : p + tl], "utf-8")
    p += tl
    if cl == NO_CF:
        return etype, None
    if cl == LONG_CF:
        cl = _U32.unpack_from(ix, p)[0]
        p += 4
    return etype, str(ix[p : p + cl], "utf-8")


def unpack_record(id_: int, wire: bytes, ix: bytes) -> Record:
    """The Record of one stored event.

    Raises:
        struct.error / UnicodeDecodeError / IndexError: a damaged ix record.
    """
    ts, tl, cl, kl, el = IX.unpack_from(ix)
    p = IX.size
    etype = ix[p : p + tl].decode()
    p += tl
    cf: str | None = None
    if cl != NO_CF:
        if cl == LONG_CF:
            cl = _U32.unpack_from(ix, p)[0]
            p += 4
        cf = ix[p : p + cl].decode()
        p += cl
    key: bytes | None = None
    if kl >= 0:
        key = ix[p : p + kl]
        p += kl
    end_key: bytes | None = None
    if el >= 0:
        end_key = ix[p : p + el]
        p += el
    return Record(id_, etype, cf, key, end_key, ts, wire, ix[p:])


def pack_chunk(
    ts: int,
    wires: Sequence[bytes],
    ixs: Sequence[bytes],
    types: Any,
    cfs: Any,
    keys: list[bytes],
    flags: int,
) -> bytes:
    """A chunk value from its events' wires and ix records and its summary.

    Args:
        ts: newest commit time (ms) of the events.
        types / cfs: the distinct event types / cfs (None excluded; say F_NO_CF in ``flags``).
        keys: every event key (start keys of ranges included; may be empty).
        flags: F_RANGES | F_KEYLESS | F_NO_CF as they apply.
    """
    n = len(wires)
    ev_ends = accumulate(len(w) + 1 for w in wires)
    fmt = "<%dI" % n
    return assemble_chunk(
        ts, flags, n, b",".join(wires), b"".join(ixs), struct.pack(fmt, *(e - 1 for e in ev_ends)), struct.pack(fmt, *accumulate(map(len, ixs))), types, cfs, min(keys) if keys else None, max(keys) if keys else None
    )


def assemble_chunk(
    ts: int, flags: int, n: int, ev: bytes, ix: bytes, ev_ends: bytes, ix_ends: bytes, types: Any, cfs: Any, kmin: bytes | None, kmax: bytes | None
) -> bytes:
    """A chunk value from its parts (the ev and ix regions, their packed u32 end tables, the
    summary inputs): what :func:`pack_chunk` and the C packer's caller share."""
    summary = _sum_enc.encode((sorted(types), sorted(cfs), kmin, kmax))
    crc = 0
    for part in (ev_ends, ix_ends, summary, b"[", ev, b"]", ix):
        crc = crc32c(part, crc)
    return b"".join((_HEAD.pack(_MAGIC, _VERSION, flags, n, ts, len(ev) + 2, len(summary), crc), ev_ends, ix_ends, summary, b"[", ev, b"]", ix))


def summarize(items: Sequence[tuple[Any, ...]]) -> tuple[set[str], set[str], list[bytes], int]:
    """(types, cfs, keys, flags) of pre-encoded events ``(core, value, type, cf, key, end_key)``."""
    types = {it[2] for it in items}
    cfs = {it[3] for it in items}
    flags = 0
    if None in cfs:
        cfs.discard(None)
        flags |= F_NO_CF
    keys = [it[4] for it in items if it[4] is not None]
    if len(keys) != len(items):
        flags |= F_KEYLESS
    if any(it[5] is not None for it in items):
        flags |= F_RANGES
    return types, cfs, keys, flags  # type: ignore[return-value]


class Chunk:
    """A view ``[lo, hi)`` of the events of one stored chunk (``base`` = id of event 0).

    Frames and records are computed at most once per view and shared by every subscriber.
    ``verify`` (default) checks the CRC32C of a value read back; the journal skips it for the
    values it has just packed.

    Raises (constructor):
        ValueError: the value is not a chunk, its layout does not hold together or (``verify``)
            its checksum does not match.
    """

    __slots__ = ("_ends", "_ev_len", "_evo", "_frames", "_ixo", "_records", "_sum", "_summary", "base", "blob", "flags", "hi", "lo", "size", "ts")

    def __init__(self, base: int, blob: bytes, lo: int = 0, hi: int | None = None, *, verify: bool = True) -> None:
        try:
            magic, version, flags, n, ts, ev_len, sum_len, crc = _HEAD.unpack_from(blob)
        except struct.error:
            raise ValueError("chunk shorter than its header") from None
        if magic != _MAGIC or version != _VERSION:
            raise ValueError("not a chunk (bad magic or version)")
        sumo = _HEAD.size + 8 * n
        evo = sumo + sum_len
        ixo = evo + ev_len
        if n == 0 or ixo > len(blob):
            raise ValueError("chunk shorter than its layout")
        if (
            _U32.unpack_from(blob, _HEAD.size + 4 * (n - 1))[0] != ev_len - 2
            or ixo + _U32.unpack_from(blob, _HEAD.size + 8 * n - 4)[0] != len(blob)
            or blob[evo] != 0x5B  # [
            or blob[ixo - 1] != 0x5D  # ]
        ):
            raise ValueError("chunk regions do not match their offset tables")
        if verify and crc32c(memoryview(blob)[_HEAD.size :]) != crc:
            raise ValueError("chunk checksum mismatch")
        self.base = base
        self.lo = lo
        self.hi = n if hi is None else hi
        if not 0 <= self.lo < self.hi <= n:
            raise ValueError("chunk view out of range")
        self.size = n
        """Events stored in the whole chunk (not only this view)."""
        self.ts = ts
        self.flags = flags
        self.blob = blob
        self._evo = evo + 1  # the wires, inside the region's brackets
        self._ixo = ixo
        self._ev_len = ev_len - 2
        self._sum = (sumo, sum_len)
        self._ends: tuple[tuple[int, ...], tuple[int, ...]] | None = None
        self._records: list[Record] | None = None
        self._frames: dict[int, list[bytes]] | None = None
        self._summary: tuple[frozenset[str], frozenset[str], bytes | None, bytes | None] | None = None

    @property
    def first(self) -> int:
        return self.base + self.lo

    @property
    def last(self) -> int:
        return self.base + self.hi - 1

    def __len__(self) -> int:
        return self.hi - self.lo

    def __repr__(self) -> str:
        return f"Chunk({self.first}..{self.last})"

    def view(self, first: int, last: int) -> Chunk:
        """The events with ids in ``[first, last]`` (clamped to this view); self when unchanged."""
        lo = max(self.lo, first - self.base)
        hi = min(self.hi, last - self.base + 1)
        if lo == self.lo and hi == self.hi:
            return self
        return Chunk(self.base, self.blob, lo, hi, verify=False)

    def _offsets(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        ends = self._ends
        if ends is None:
            n = self.size
            fmt = "<%dI" % n
            ends = self._ends = (struct.unpack_from(fmt, self.blob, _HEAD.size), struct.unpack_from(fmt, self.blob, _HEAD.size + 4 * n))
        return ends

    def _cut(self, at: int, ends: tuple[int, ...], gap: int) -> list[bytes]:
        """The view's pieces of the region at offset ``at`` whose end offsets are ``ends``,
        ``gap`` bytes apart (1: the commas between wires, 0: the ix records)."""
        blob, lo = self.blob, self.lo
        start = at + (ends[lo - 1] + gap if lo else 0)
        out = []
        for e in ends[lo : self.hi]:
            end = at + e
            out.append(blob[start:end])
            start = end + gap
        return out

    def wires(self) -> list[bytes]:
        """Each event's wire JSON (with id, without value)."""
        return self._cut(self._evo, self._offsets()[0], 1)

    def ixs(self) -> list[bytes]:
        """Each event's ix record."""
        return self._cut(self._ixo, self._offsets()[1], 0)

    def region(self) -> bytes:
        """The view's wires, comma-separated (what goes between ``[`` and ``]``)."""
        if self.lo == 0 and self.hi == self.size:
            return self.blob[self._evo : self._evo + self._ev_len]
        ev_ends, _ = self._offsets()
        start = ev_ends[self.lo - 1] + 1 if self.lo else 0
        return self.blob[self._evo + start : self._evo + ev_ends[self.hi - 1]]

    def records(self) -> list[Record]:
        """The view's events as Records (cached)."""
        recs = self._records
        if recs is None:
            recs = self._records = list(map(unpack_record, range(self.base + self.lo, self.base + self.hi), self.wires(), self.ixs()))
        return recs

    def frames(self, fmt: int, batch: bool) -> list[bytes]:
        """The view's frames in a wire format (one array frame when ``batch``), cached. A whole
        chunk's JSON array is a memoryview of the stored value (bytes-like: compare, join, send)."""
        cache = self._frames
        if cache is None:
            cache = self._frames = {}
        ck = fmt * 2 + batch
        out = cache.get(ck)
        if out is None:
            if fmt == 0:
                if not batch or self.hi - self.lo == 1:
                    out = self.wires()
                elif self.lo == 0 and self.hi == self.size:
                    # stored with its brackets: a view of the value, no copy (bytes-like, read-only)
                    out = [memoryview(self.blob)[self._evo - 1 : self._evo + self._ev_len + 1]]  # type: ignore[list-item]
                else:
                    out = [b"[" + self.region() + b"]"]
            else:
                out = build_frames(self.records(), fmt, batch)
            cache[ck] = out
        return out

    def summary(self) -> tuple[frozenset[str], frozenset[str], bytes | None, bytes | None]:
        """(types, cfs without None, smallest key, largest key) of the WHOLE stored chunk."""
        s = self._summary
        if s is None:
            o, n = self._sum
            types, cfs, kmin, kmax = _sum_dec.decode(self.blob[o : o + n])
            s = self._summary = (frozenset(types), frozenset(cfs), kmin, kmax)
        return s

    def verdict(self, types: frozenset[str] | None, cfs: frozenset[str] | None, ranges: list[tuple[bytes, bytes | None]] | None, keys: Any) -> int:
        """ACCEPT when every event of the chunk passes the filter parts given (None = no such
        part), REJECT when none does, MIXED when only the events can tell (conservative: MIXED
        is always correct). Same rules as ``cdc.delivery.hub.Filter.match``: an event without cf
        passes a cf filter, an event without key passes the key and prefix filters."""
        c_types, c_cfs, kmin, kmax = self.summary()
        flags = self.flags
        verdict = ACCEPT
        if types is not None:
            if c_types <= types:
                pass
            elif c_types.isdisjoint(types):
                return REJECT
            else:
                verdict = MIXED
        if cfs is not None and c_cfs:
            if c_cfs <= cfs:
                pass
            elif c_cfs.isdisjoint(cfs) and not flags & F_NO_CF:
                return REJECT
            else:
                verdict = MIXED
        if kmin is None:  # no event has a key: key and prefix parts pass everything
            return verdict
        if keys is not None:
            return MIXED
        if ranges is not None:
            if flags & F_RANGES:
                return MIXED
            inside = False
            overlap = False
            for lo, hi in ranges:
                if kmin >= lo and (hi is None or kmax < hi):
                    inside = True
                    break
                if kmax >= lo and (hi is None or kmin < hi):
                    overlap = True
            if inside:
                return verdict
            if not overlap and not flags & F_KEYLESS:
                return REJECT
            return MIXED
        return verdict


_IX_HEAD = struct.Struct("<qHH")  # the first three fields of IX
_KL = struct.Struct("<ii")  # the last two
_NO_KEYS = _KL.pack(-1, -1)


def encode_chunk(items: Sequence[tuple[Any, ...]], start: int, first_id: int, ts: int, max_events: int, max_bytes: int) -> tuple[bytes, int]:
    """Pack pre-encoded events ``items[start:]`` (``(core, value, type, cf, key, end_key)``, see
    :class:`cdc.model.wire.PreEncoded`) into one chunk value, numbering them from ``first_id``:
    at most ``max_events``, stopping after the event that reaches ``max_bytes`` of stored bytes
    (always at least one). Returns (value, events taken). The reference of the journal's packer
    (the optional C one, ``cdc.format.speedups``, gives the same bytes).

    Raises:
        TypeError / ValueError: an item that cannot be laid out (the journal then finds and skips it).
    """
    end = min(len(items), start + max_events)
    wires: list[bytes] = []
    ixs: list[bytes] = []
    w_append, x_append = wires.append, ixs.append
    size = 0
    kl_pack = _KL.pack
    last_t: Any = None
    last_cf: Any = None
    head = tc = b""
    i = start
    id_ = first_id
    while i < end:
        core, value, etype, cf, key, end_key = items[i]
        if core[:1] != b"{":
            raise TypeError("bad pre-encoded event")
        wire = b'{"id":%d,%b' % (id_, core[1:])
        if etype is not last_t or cf is not last_cf:  # same objects in a run: no lookup
            tc, tl, cl = type_cf(etype, cf)
            head = _IX_HEAD.pack(ts, tl, cl)
            last_t, last_cf = etype, cf
        if end_key is None:
            if key is None:
                ix = b"%b%b%b%b" % (head, _NO_KEYS, tc, value)
            else:
                ix = b"%b%b%b%b%b" % (head, kl_pack(len(key), -1), tc, key, value)
        else:
            ix = b"".join((head, kl_pack(-1 if key is None else len(key), len(end_key)), tc, key or b"", end_key, value))
        w_append(wire)
        x_append(ix)
        size += len(wire) + len(ix)
        i += 1
        id_ += 1
        if size >= max_bytes:
            break
    types, cfs, keys, flags = summarize(items[start:i])
    return pack_chunk(ts, wires, ixs, types, cfs, keys, flags), i - start


def chunk_of_stored(first_id: int, wires: Sequence[bytes], ixs: Sequence[bytes]) -> bytes:
    """A chunk value from stored events (``(wire, ix)`` as another journal holds them: the edge's
    mirror path), numbered from ``first_id``; its summary is read from the ix records.

    Raises:
        struct.error / UnicodeDecodeError / IndexError: a damaged ix record.
    """
    recs = [unpack_record(first_id + i, w, x) for i, (w, x) in enumerate(zip(wires, ixs, strict=True))]
    items = [(b"", b"", r.type, r.cf, r.key, r.end_key) for r in recs]
    types, cfs, keys, flags = summarize(items)
    return pack_chunk(max(r.ts for r in recs), wires, ixs, types, cfs, keys, flags)


class Committed(Sequence[Record]):
    """What one journal commit (or read) holds: consecutive chunks, seen as a sequence of
    Records (materialized only when indexed or iterated: the fan-out works on the chunks)."""

    __slots__ = ("_n", "_recs", "chunks")

    def __init__(self, chunks: list[Chunk]) -> None:
        self.chunks = chunks
        self._n = sum(map(len, chunks))
        self._recs: list[Record] | None = None

    @property
    def first_id(self) -> int:
        return self.chunks[0].first

    @property
    def last_id(self) -> int:
        return self.chunks[-1].last

    def id_at(self, i: int) -> int:
        """Id of the ``i``-th event (ids in one commit are consecutive)."""
        return self.chunks[0].first + i

    def _all(self) -> list[Record]:
        recs = self._recs
        if recs is None:
            recs = self._recs = [r for c in self.chunks for r in c.records()]
        return recs

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        return self._all()[i]

    def __iter__(self) -> Any:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Committed):
            return self._all() == other._all()
        if isinstance(other, list):
            return self._all() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Committed({self.chunks!r})"
