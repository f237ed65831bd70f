"""Event building: decoded WAL batches -> ``key_change`` / ``capture_gap`` events (the hot loop).

:func:`build_events` turns the batches one read produced into events, pre-encoding the common
case (a UTF-8 put in a known column family) straight into the journal's wire bytes, and returns
what the caller commits and reports (:class:`Decoded`: events, sequence gaps, unknown column
families, per-cf counters, ignored origin markers, a store going back in time).

Invariant: every data record becomes exactly one event, numbered as the store numbers it (per
key or per batch, see :class:`cdc.format.wal.SeqNumbering`), and a pre-encoded event is
byte-identical to encoding the same :class:`KeyChange`. The only records skipped are those
provably delivered already: in the checkpointed WAL before the checkpointed offset. A sequence
number at or below the last one seen is *not* a proof (WritePrepared stores give many records
one number, and deliver prepared records at their commit with their older numbers). Pure CPU:
no I/O, no clock (the caller passes the timestamp); may run in a worker thread.
"""

from __future__ import annotations

import base64
from typing import Any, NamedTuple, Protocol

import msgspec

from cdc.format.speedups import C as _C
from cdc.format.wal import SEQ_PER_BATCH, SEQ_PER_KEY, Batch, SeqNumbering
from cdc.model.events import CaptureGap, KeyChange
from cdc.model.wire import PUT_BODY, PUT_HEAD, VALUE_KEY, PreEncoded, marks_tail

__all__ = [
    "KEY_OPS",
    "ORIGIN_MARKER",
    "MAX_ORIGIN_BYTES",
    "STAT_OPS",
    "Decoded",
    "build_events",
    "cf_json_map",
    "origin_marks",
]

#: operation names emitted as key_change, by WAL op name
KEY_OPS: dict[str, str] = {
    "put": "put",
    "delete": "delete",
    "single_delete": "single_delete",
    "merge": "merge",
    "delete_range": "delete_range",
    "put_entity": "put_entity",
    "timed_put": "put",
    "blob_index": "put",
}
_NO_VALUE_OPS = frozenset({"delete", "single_delete", "delete_range", "blob_index"})
_b64 = base64.b64encode
_json_encode = msgspec.json.Encoder().encode

ORIGIN_MARKER = b"cdc-origin:"
"""A LogData blob starting with this names the writer of its WriteBatch (``origin``)."""
MAX_ORIGIN_BYTES = 256
STAT_OPS = ("put", "delete", "merge", "delete_range")
_STAT_SLOT = {"put": 0, "put_entity": 0, "delete": 2, "single_delete": 2, "merge": 4, "delete_range": 6}
"""key_change operation -> index of its (count, bytes) pair in a per-cf counter list of 8."""
UNKNOWN_CF = "\x00unknown"
"""Placeholder cf of an event whose cf id the MANIFEST did not name (see ``Decoded.unknown_cfs``)."""


class Decoded(NamedTuple):
    events: list[Any]
    batches: int
    unknown_cfs: list[tuple[int, int]]  # (index in events, cf id) of ids missing from cf_names
    gaps: list[tuple[int, int]]
    last_seq: int
    counts: dict[int, list[int]] | None = None  # cf id -> _STAT_SLOT counters (n, bytes per op kind)
    bad_origins: int = 0  # cdc-origin: LogData blobs ignored (not UTF-8 or too long)
    rewind: tuple[int, int, int] | None = None  # (WAL, offset, seq) of a batch behind last_seq in a newer WAL
    guesses: int = 0  # records numbered without evidence of the scheme


class TxnResolver(Protocol):
    """Resolves 2PC sections of one record (see :class:`cdc.capture.twophase.PreparedSections`)."""

    def resolve(self, b: Batch, scheme: str, ops: list[Any]) -> tuple[list[Any], int]: ...


def origin_marks(ops: list[Any]) -> tuple[list[tuple[int, str]], int]:
    """(marks, ignored) of one WAL record: each valid ``cdc-origin:`` LogData blob as (sequence
    number of the first data record after it, origin); ``ignored`` counts markers that are not
    UTF-8 or longer than MAX_ORIGIN_BYTES. Pure."""
    marks: list[tuple[int, str]] = []
    ignored = 0
    pending: list[str] = []
    for op in ops:
        if op[0] >= 0:
            if pending:
                marks.extend((op[0], o) for o in pending)
                pending = []
            continue
        if op[1] != "log_data":
            continue
        blob = op[3] or b""
        if not blob.startswith(ORIGIN_MARKER):
            continue
        rest = blob[len(ORIGIN_MARKER) :]
        if len(rest) > MAX_ORIGIN_BYTES:
            ignored += 1
            continue
        try:
            pending.append(rest.decode("utf-8"))
        except UnicodeDecodeError:
            ignored += 1
    marks.extend((1 << 63, o) for o in pending)  # a marker after the last data record
    return marks, ignored


def _origin_at(marks: list[tuple[int, str]], seq: int) -> str:
    """Origin of the data record ``seq``: the nearest marker before it, else the record's first."""
    found = marks[0][1]
    for from_seq, o in marks:
        if from_seq > seq:
            break
        found = o
    return found


def _add_count(counts: dict[int, list[int]], cf_id: int, slot: int, n: int, nbytes: int) -> None:
    c = counts.get(cf_id)
    if c is None:
        c = counts[cf_id] = [0, 0, 0, 0, 0, 0, 0, 0]
    c[slot] += n
    c[slot + 1] += nbytes


def cf_json_map(names: dict[int, str]) -> dict[int, tuple[str, bytes]]:
    """cf id -> (name, JSON-encoded name): what the pre-encoded put path needs."""
    return {i: (n, _json_encode(n)) for i, n in names.items()}


_build_plain = None
_C_OPS = (b"put", b"delete", b"single_delete", b"merge", b"delete_range")
"""build_plain's operations, in the order of its ``heads`` argument (build.c)."""
if _C is not None and PreEncoded._fields == ("core", "value", "type", "cf", "key", "end_key"):  # build.c's layout
    _C.set_event_type(PreEncoded)
    _build_plain = _C.build_plain


def build_events(
    batches: list[Batch],
    *,
    names: dict[int, str],
    cf_json: dict[int, tuple[str, bytes]],
    ts: int,
    last_seq: int,
    last_wal: int,
    done: tuple[int, int],
    numbering: SeqNumbering,
    txns: TxnResolver,
) -> Decoded:
    """Batches -> events (gap events first where the sequence jumps). Pure CPU (see module doc).

    Args:
        names: cf id -> name (the MANIFEST's); ``cf_json``: :func:`cf_json_map` of it.
        ts: the capture timestamp (ms) every event of this read carries.
        last_seq: last sequence number delivered (-1: none yet); ``last_wal`` its WAL.
        done: (WAL, offset): records of that WAL before that offset were delivered.
        numbering: the store's sequence numbering so far (updated in place).
        txns: 2PC sections (updated in place).
    """
    events: list[Any] = []
    append = events.append
    gaps: list[tuple[int, int]] = []
    unknown: list[tuple[int, int]] = []
    done_wal, done_off = done
    guessed0 = numbering.guessed
    KC = KeyChange
    key_ops = KEY_OPS
    enc = _json_encode
    put_head = PUT_HEAD % ts
    new_pre = tuple.__new__  # PreEncoded built at C speed (hot loop)
    counts: dict[int, list[int]] = {}
    put_cf, put_n, put_b = -1, 0, 0
    bad_origins = 0
    rewind = None
    n_batches = n_all = len(batches)
    plain = _build_plain if type(batches) is list and type(cf_json) is dict else None
    if plain is not None:
        heads = tuple(PUT_HEAD.replace(b'"operation":"put"', b'"operation":"%b"' % o) % ts for o in _C_OPS)
    i = 0
    while i < n_all:
        if plain is not None:
            # runs of plain batches in C (cdc/format/_speedups/build.c: the same events --
            # PreEncoded for every data record, as encode_event gives them --, counters and
            # state as this loop); it stops before any other batch, handled below
            i, last_seq, last_wal, put_cf, put_n, put_b, per_key = plain(
                batches, i, events, counts, cf_json, heads, last_seq, last_wal, done_wal, done_off,
                numbering.scheme == SEQ_PER_BATCH, put_cf, put_n, put_b,
            )
            if per_key:
                numbering.scheme = SEQ_PER_KEY
            if i >= n_all:
                break
        b = batches[i]
        i += 1
        if b.log_number == done_wal and b.offset < done_off:
            continue  # at or before the checkpoint position of this WAL: delivered
        bseq = b.seq
        before = last_seq
        if b.count and 0 <= bseq <= last_seq and b.log_number != last_wal:
            # a newer WAL goes back to sequence numbers already delivered: the store went
            # back in time (stop here; the caller decides and re-reads from this batch)
            rewind = (b.log_number, b.offset, bseq)
            n_batches = i - 1
            break
        raw_ops = ops = b.ops
        if len(ops) == 1 and ops[0][0] >= 0:
            consumed = 1  # one data record: the same number in both schemes
        elif len(ops) == b.count and numbering.scheme != SEQ_PER_BATCH:
            # data records only, no marker (a plain write): per key (wal.seq_scheme_evidence)
            consumed = b.count
            numbering.scheme = SEQ_PER_KEY
        else:
            scheme, ops, consumed = numbering.number(b)
            if ops and (len(ops) != b.count or scheme == SEQ_PER_BATCH):
                ops, extra = txns.resolve(b, scheme, ops)  # markers: 2PC sections, log_data, noop
                consumed += extra
        nxt = last_seq + 1
        if last_seq >= 0 and bseq > nxt and (consumed or b.count):
            gaps.append((nxt, bseq - 1))
            append(
                CaptureGap(
                    timestamp=ts,
                    from_seq=nxt,
                    to_seq=bseq - 1,
                    reason=f"gap in sequence numbers {nxt}..{bseq - 1} before WAL {b.log_number:06d} @{b.offset}",
                )
            )
        # origin / batch marks: fields after "seq" (KeyChange field order), "}" when none
        if len(raw_ops) == 1 and ops is raw_ops:  # the common single change: no marks
            tail, many, origin, b_seq, b_count = b"}", False, None, None, None
        else:
            marks: list[tuple[int, str]] | None = None
            if len(raw_ops) != b.count:  # seq-less records (LogData, 2PC markers, Noop) present
                marks, ignored = origin_marks(raw_ops)
                bad_origins += ignored
                n_kc = sum(1 for op in ops if op[0] >= 0)
            else:
                n_kc = len(ops) if ops is raw_ops else sum(1 for op in ops if op[0] >= 0)
            origin = marks[0][1] if marks else None
            many = marks is not None and len(marks) > 1
            b_seq = bseq if n_kc > 1 else None
            b_count = n_kc if n_kc > 1 else None
            tail = marks_tail(origin, b_seq, b_count) if (origin is not None or b_seq is not None) else b"}"
        if consumed:
            last_seq = bseq + consumed - 1
        for op in ops:
            s = op[0]
            if s < 0:
                continue
            opname = op[1]
            if many:
                origin = _origin_at(marks, s)  # type: ignore[arg-type]
                tail = marks_tail(origin, b_seq, b_count)
            if opname == "put":
                cfj = cf_json.get(op[2])
                if cfj is not None:
                    k = op[3]
                    v = op[4]
                    if op[2] != put_cf:  # fast puts are counted in locals, per run of one cf
                        if put_n:
                            _add_count(counts, put_cf, 0, put_n, put_b)
                        put_cf, put_n, put_b = op[2], 0, 0
                    put_n += 1
                    put_b += len(k) + len(v)
                    try:
                        # inlined for speed: the journal's encode_event(KeyChange) for a UTF-8 put, byte-identical (tests check)
                        append(
                            new_pre(
                                PreEncoded,
                                (PUT_BODY % (put_head, enc(k.decode()), cfj[1], s, tail), VALUE_KEY + enc(v.decode()), "key_change", cfj[0], k, None),
                            )
                        )
                        continue
                    except UnicodeDecodeError:
                        put_n -= 1  # counted below
                        put_b -= len(k) + len(v)
            kind = key_ops.get(opname)
            if kind is None:
                continue
            cf_id = op[2]
            slot = _STAT_SLOT.get(kind)
            if slot is not None:
                _add_count(counts, cf_id, slot, 1, len(op[3] or b"") + len(op[5] if op[5] is not None else (op[4] or b"")))
            cf = names.get(cf_id)
            if cf is None:
                unknown.append((len(events), cf_id))
                cf = UNKNOWN_CF
            k = op[3] or b""
            try:
                key = k.decode()
                kenc = None
            except UnicodeDecodeError:
                key = _b64(k).decode()
                kenc = "base64"
            end_key = end_enc = value = venc = None
            ek = op[5]
            if ek is not None:
                try:
                    end_key = ek.decode()
                except UnicodeDecodeError:
                    end_key = _b64(ek).decode()
                    end_enc = "base64"
            v = op[4]
            if v is not None and opname not in _NO_VALUE_OPS:
                try:
                    value = v.decode()
                except UnicodeDecodeError:
                    value = _b64(v).decode()
                    venc = "base64"
            append(
                KC(
                    timestamp=ts,
                    operation=kind,
                    key=key,
                    key_encoding=kenc,
                    cf=cf,
                    seq=s,
                    origin=origin,
                    batch_seq=b_seq,
                    batch_count=b_count,
                    end_key=end_key,
                    end_key_encoding=end_enc,
                    value=value,
                    value_encoding=venc,
                )
            )
        if last_seq != before:
            last_wal = b.log_number  # the WAL of the last delivered record (not of an empty batch)
    if put_n:
        _add_count(counts, put_cf, 0, put_n, put_b)
    return Decoded(
        events, n_batches, unknown, gaps, last_seq, counts, bad_origins, rewind, numbering.guessed - guessed0
    )
